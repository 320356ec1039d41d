"""``StateStoreConfig``: every setting, where it came from, and one error naming both.

Precedence, per key: explicit arguments > environment (``STATESTORE__SECTION__KEY``) >
an INI file (``$STATESTORE_CONFIG``, else ``./statestore.cfg``) > defaults. Everything is
read when the object is built, never at import time, and invalid settings fail right
there with one :class:`~statestore.exceptions.ConfigError` listing every problem as
``[section] key (source): why`` — the source being the variable, the file, or "argument".
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from statestore.exceptions import ConfigError

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "ClientSettings",
    "DatabaseSettings",
    "StateStoreConfig",
    "StateStoreSettings",
    "WorkersSettings",
    "is_server_url",
    "mask_url",
]

ENV_PREFIX = "STATESTORE__"
CONFIG_FILE_ENV = "STATESTORE_CONFIG"
DEFAULT_CONFIG_FILE = "statestore.cfg"
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
# Greedy up to the last '@' before any query: an unescaped '@' in a password must not
# leave its tail visible (SQLAlchemy itself splits at the first one).
_USERINFO_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^?#]*(@)")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#]*", re.IGNORECASE)
# Values that may carry credentials: never echoed back in an error message.
_SECRET_KEYS = frozenset({"database.url", "workers.object_store_url", "client.token"})
_WHOLLY_SECRET = frozenset({"client.token"})  # shown as *** when set, whatever it is

Layer = dict[str, dict[str, Any]]


def _parse_url(url: str) -> Any:
    """``url`` parsed by SQLAlchemy, or ``None`` if it is not a database URL.

    Imported here, not at module level: ``import statestore`` and a store over a given
    backend never load SQLAlchemy (docs/performance.md); only a URL that is read does.
    """
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - see the docstring
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print or log."""
    parsed = _parse_url(url)
    if parsed is None:
        masked = url
    else:
        masked = url if parsed.password is None else parsed.render_as_string(hide_password=True)
    masked = _USERINFO_PASSWORD.sub(r"\1***\2", masked)
    return _QUERY_PASSWORD.sub(r"\1***", masked)


def is_server_url(url: str) -> bool:
    """Whether ``url`` names a state server (``http://`` or ``https://``), not a database."""
    return url.lower().startswith(("http://", "https://"))


def _dotted_path(value: str) -> str:
    # Syntax only: importing here would make loading settings import user code.
    if value and not _DOTTED.match(value):
        raise ValueError("not a dotted path like 'package.module.Class'")
    return value


def _whole_number(value: object) -> object:
    # bool is an int subclass and 1.5 is "numeric": neither is a count. Text ("7" from
    # the environment or the INI file) goes on to pydantic's own parsing.
    if isinstance(value, (bool, float)):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(_Section):
    """``[database]``: where the metastore lives."""

    url: str = Field(
        default="sqlite:///statestore.db",
        description="Any SQLAlchemy URL, sync or async driver (the other is derived). "
        "The default is a SQLite file in the working directory.",
    )
    auto_migrate_sqlite: bool = Field(
        default=True, description="Create/migrate a SQLite schema automatically on first use."
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for the database (connecting, a free pooled connection, "
        "the schema check, the migration lock, a server or pooler that stopped answering, "
        "a locked SQLite file); then BackendUnavailableError.",
    )
    pool_size: int = Field(
        default=5,
        ge=1,
        description="Connections one store keeps open per engine (sync, and each event "
        "loop's async engine); also the most the hot path keeps idle.",
    )
    max_overflow: int = Field(
        default=10,
        ge=0,
        description="Extra connections beyond pool_size under concurrency, closed when "
        "returned; a store opens at most pool_size + max_overflow per engine.",
    )
    prepare_threshold: int | None = Field(
        default=None,
        ge=0,
        description="psycopg: prepare a statement on the server after this many runs "
        "(0: at once); none (the default) never prepares, which a transaction-mode "
        "pooler such as PgBouncer requires. Also ?prepare_threshold=N in the URL.",
    )

    _db_ints = field_validator("pool_size", "max_overflow", mode="before")(_whole_number)

    @field_validator("prepare_threshold", mode="before")
    @classmethod
    def _threshold(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
            return None
        return _whole_number(value)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if _parse_url(value) is None:
            raise ValueError("not a database URL (expected dialect+driver://...)")
        return value


class StateStoreSettings(_Section):
    """``[state_store]``: behaviour of the store."""

    backend: str = Field(
        default="statestore.metastore.MetastoreStateBackend",
        description="Dotted path to a BaseStateBackend subclass.",
    )
    default_retention_days: int = Field(
        default=30, ge=0, description="Retention of task-state keys set without one; 0 = never."
    )
    clear_on_success: bool = Field(
        default=False, description="on_task_success() clears the task instance's task state."
    )
    state_cleanup_batch_size: int = Field(
        default=0, ge=0, description="Rows per cleanup batch; 0 = one statement."
    )
    max_value_bytes: int = Field(
        default=65535, ge=0, description="Largest serialized value in UTF-8 bytes; 0 = unlimited."
    )
    auto_register_assets: bool = Field(
        default=True, description="Register unknown assets on first write (off: UnknownAssetError)."
    )
    # At most 5000: a batch is one statement, and PostgreSQL and MySQL take at most
    # 65535 parameters in one (a batched write binds up to 3 per key plus a few shared).
    max_batch_keys: int = Field(
        default=1000,
        ge=1,
        le=5000,
        description="Most distinct keys in one get_many/get_items/set_many/delete_many "
        "call; more raise BatchTooLargeError before any I/O.",
    )
    max_batch_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="Most UTF-8 bytes of keys plus serialized values in one set_many; "
        "0 = unlimited. More raise BatchTooLargeError before any I/O.",
    )

    _ints = field_validator(
        "default_retention_days", "state_cleanup_batch_size", "max_value_bytes",
        "max_batch_keys", "max_batch_bytes", mode="before",
    )(_whole_number)  # fmt: skip

    @field_validator("backend")
    @classmethod
    def _backend_path(cls, value: str) -> str:
        if not value:
            raise ValueError("must name a backend class")
        return _dotted_path(value)


class WorkersSettings(_Section):
    """``[workers]``: where values live when they do not live in the database."""

    state_backend: str = Field(
        default="", description="Dotted path to a worker-side backend; empty = values inline."
    )
    object_store_url: str = Field(
        default="", description="Base URL of ObjectStoreStateBackend (file://, memory://, s3://)."
    )
    max_object_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Largest value stored through a worker-side backend; 0 = unlimited.",
    )

    _path = field_validator("state_backend")(_dotted_path)
    _ints = field_validator("max_object_bytes", mode="before")(_whole_number)


class ClientSettings(_Section):
    """``[client]``: a state server to use instead of a database (``statestore serve``)."""

    url: str = Field(
        default="",
        description="http(s):// URL of a state server; set, it selects the HTTP backend "
        "(workers then need no database credentials). Empty: use [database].",
    )
    token: str = Field(
        default="", description="Bearer token for the server (prefer token_file: tokens expire)."
    )
    token_file: str = Field(
        default="",
        description="File holding the bearer token, re-read whenever it changes.",
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest one operation may take, retries after connection errors "
        "included; then BackendUnavailableError naming the server.",
    )

    @field_validator("url")
    @classmethod
    def _server_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if not is_server_url(value) or not parts.hostname:
                raise ValueError("not a state server URL (expected http(s)://host[:port][/path])")
        return value

    @model_validator(mode="after")
    def _one_token(self) -> ClientSettings:
        if self.token and self.token_file:
            raise ValueError("give token or token_file, not both")
        return self


SECTIONS: dict[str, type[_Section]] = {
    "database": DatabaseSettings,
    "state_store": StateStoreSettings,
    "workers": WorkersSettings,
    "client": ClientSettings,
}


def _read_args(kwargs: Mapping[str, object], problems: list[str]) -> Layer:
    args: Layer = {}
    for section, given in kwargs.items():
        # A section model counts only for the keys set on it, so it cannot reset others.
        values = given.model_dump(exclude_unset=True) if isinstance(given, BaseModel) else given
        if not isinstance(values, Mapping):
            problems.append(f"[{section}] (argument): expected a mapping of settings")
            continue
        args[section] = {str(key): value for key, value in values.items()}
    return args


def _read_env(problems: list[str]) -> tuple[Layer, dict[str, str]]:
    values: Layer = {}
    origins: dict[str, str] = {}
    for name, value in sorted(os.environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not section or not key:
            problems.append(f"{name}: expected a name like {ENV_PREFIX}<SECTION>__<KEY>")
            continue
        values.setdefault(section, {})[key] = value
        origins[f"{section}.{key}"] = f"env {name}"
        origins.setdefault(section, f"env {name}")  # for a section nobody knows
    return values, origins


def _find_file(problems: list[str]) -> Path | None:
    named = os.environ.get(CONFIG_FILE_ENV)
    if named:
        if not Path(named).is_file():
            problems.append(f"{CONFIG_FILE_ENV}={named}: no such file")
            return None
        return Path(os.path.abspath(named))
    default = Path(os.path.abspath(DEFAULT_CONFIG_FILE))
    return default if default.is_file() else None


def _read_file(path: Path | None, problems: list[str]) -> tuple[Layer, dict[str, str]]:
    if path is None:
        return {}, {}
    # No interpolation: '%' is common in URL-escaped passwords. No DEFAULT section
    # ('' can never be a header): its keys would leak into every section.
    parser = configparser.ConfigParser(interpolation=None, default_section="")
    try:
        with path.open(encoding="utf-8") as file:
            parser.read_file(file)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        problems.append(f"file {path}: cannot read it as an INI file: {exc}")
        return {}, {}
    values: Layer = {}
    for section in parser.sections():
        values.setdefault(section.lower(), {}).update(parser.items(section))
    origins = {f"{s}.{k}": f"file {path}" for s, keys in values.items() for k in keys}
    origins.update(dict.fromkeys(values, f"file {path}"))  # for a section nobody knows
    return values, origins


class StateStoreConfig(BaseModel):
    """All settings, one nested model per section: ``cfg.state_store.max_value_bytes``.

    Pass settings explicitly as one mapping (or section model) per section::

        StateStoreConfig(state_store={"default_retention_days": 7}, database={"url": url})
    """

    # A plain pydantic model, not pydantic-settings' BaseSettings: __init__ reads every
    # source itself (per key, with provenance), so BaseSettings would only add the
    # import of pydantic-settings (tens of milliseconds) to building every store.
    model_config = ConfigDict(frozen=True, extra="forbid")

    database: DatabaseSettings = DatabaseSettings()
    state_store: StateStoreSettings = StateStoreSettings()
    workers: WorkersSettings = WorkersSettings()
    client: ClientSettings = ClientSettings()

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        # Each layer is read exactly once, here, so provenance and error messages
        # describe the very values that were validated.
        problems: list[str] = []
        args = _read_args(kwargs, problems)
        env, env_origins = _read_env(problems)
        ini, file_origins = _read_file(_find_file(problems), problems)
        origins = {**file_origins, **env_origins}
        origins.update({f"{s}.{k}": "argument" for s, keys in args.items() for k in keys})
        origins.update(dict.fromkeys(args, "argument"))
        merged: dict[str, Any] = {}
        for layer in (ini, env, args):  # lowest precedence first, merged per key
            for section, keys in layer.items():
                merged.setdefault(section, {}).update(keys)
        for section in sorted(set(merged) - set(SECTIONS)):
            del merged[section]
            source = origins.get(section, "argument")
            problems.append(
                f"[{section}] ({source}): unknown section; known: {', '.join(SECTIONS)}"
            )
        try:
            super().__init__(**merged)
        except ValidationError as exc:
            problems.extend(_describe(exc, origins))
        if problems:
            raise ConfigError(_summarise(problems))
        self._origins = origins

    def describe_sources(self) -> dict[str, str]:
        """Where each effective value came from, by ``"section.key"``.

        One of ``"default"``, ``"argument"``, ``"env STATESTORE__..."`` or ``"file <path>"``.
        """
        return {
            f"{section}.{key}": self._origins.get(f"{section}.{key}", "default")
            for section, model in SECTIONS.items()
            for key in model.model_fields
        }

    def as_dict(self, *, mask_secrets: bool = True) -> dict[str, dict[str, object]]:
        """Every setting by section; URL passwords masked unless told otherwise."""
        data: dict[str, dict[str, object]] = self.model_dump()
        if mask_secrets:
            for name in _SECRET_KEYS:
                section, key = name.split(".")
                value = str(data[section][key])
                data[section][key] = (
                    ("***" if value else "") if name in _WHOLLY_SECRET else mask_url(value)
                )
        return data

    def with_database_url(self, url: str) -> StateStoreConfig:
        """A copy with ``[database] url`` replaced (validated, source "argument")."""
        try:
            database = DatabaseSettings(**{**self.database.model_dump(), "url": url})
        except ValidationError as exc:
            raise ConfigError(_summarise(_describe(exc, {}, section="database"))) from None
        copy = self.model_copy(update={"database": database})
        copy._origins = {**self._origins, "database.url": "argument"}
        return copy

    def with_client(
        self, url: str | None = None, *, token: str | None = None, token_file: str | None = None
    ) -> StateStoreConfig:
        """A copy with ``[client]`` settings replaced (validated, source "argument"); a
        token given replaces the configured token or token file."""
        changes = {
            name: value
            for name, value in (("url", url), ("token", token), ("token_file", token_file))
            if value is not None
        }
        return _with_client(self, changes) if changes else self


def _with_client(config: StateStoreConfig, changes: dict[str, str]) -> StateStoreConfig:
    """A copy with ``[client]`` keys replaced (validated, source "argument")."""
    settings = {**config.client.model_dump(), **changes}
    if "token" in changes:
        settings["token_file"] = changes.get("token_file", "")
    elif "token_file" in changes:
        settings["token"] = ""  # a token given now replaces the configured one
    try:
        client = ClientSettings(**settings)
    except ValidationError as exc:
        raise ConfigError(_summarise(_describe(exc, {}, section="client"))) from None
    copy = config.model_copy(update={"client": client})
    copy._origins = {**config._origins, **{f"client.{k}": "argument" for k in changes}}
    return copy


def _describe(exc: ValidationError, origins: dict[str, str], section: str = "") -> list[str]:
    """One ``[section] key (source): why`` line per pydantic error."""
    lines = []
    for error in exc.errors():
        loc = ([section] if section else []) + [str(part) for part in error["loc"]]
        name, key = [*loc, "", ""][:2]
        source = origins.get(f"{name}.{key}", "argument")
        if error["type"] == "extra_forbidden":
            model = SECTIONS.get(name)
            why = f"unknown setting; known: {', '.join(model.model_fields) if model else '-'}"
        else:
            why = str(error["msg"]).removeprefix("Value error, ")
            if f"{name}.{key}" not in _SECRET_KEYS and isinstance(error["input"], str):
                why += f" (got {error['input']!r})"
        lines.append(f"[{name}] {key} ({source}): {why}")
    return lines


def _summarise(problems: list[str]) -> str:
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return f"invalid configuration ({count}):\n" + "\n".join(f"  {p}" for p in problems)
