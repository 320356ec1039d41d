"""``StateStoreConfig``: every setting, where it came from, and one error naming both.

Precedence, per key: explicit arguments > environment (``STATESTORE__SECTION__KEY``) >
an INI file (``$STATESTORE_CONFIG``, else ``./statestore.cfg``) > defaults. Everything is
read when the object is built, never at import time, and an invalid value fails right
there with a :class:`~statestore.exceptions.ConfigError` naming ``[section] key`` and its
source (the variable, the file, or "argument").
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from statestore.exceptions import ConfigError

__all__ = [
    "ENV_PREFIX",
    "DatabaseSettings",
    "StateStoreConfig",
    "StateStoreSettings",
    "WorkersSettings",
    "mask_url",
]

ENV_PREFIX = "STATESTORE__"
CONFIG_FILE_ENV = "STATESTORE_CONFIG"
DEFAULT_CONFIG_FILE = "statestore.cfg"
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]*)(@)")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print or log)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(r"\1***\3", url)
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def _dotted_path(value: str) -> str:
    if value and not _DOTTED.match(value):
        raise ValueError(f"{value!r} is not a dotted path like 'package.module.Class'")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class DatabaseSettings(_Section):
    """``[database]``: where the metastore lives."""

    url: str = Field(
        default="sqlite:///statestore.db",
        description="Any SQLAlchemy URL; sync or async driver, the other is derived. "
        "The default is a SQLite file in the working directory.",
    )
    auto_migrate_sqlite: bool = Field(
        default=True, description="Create/migrate a SQLite schema automatically on first use."
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        try:
            make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL (expected dialect+driver://...)") from None
        return value


def _non_negative_int(value: object) -> object:
    # bool is an int subclass and 1.5 is "numeric": neither is a count.
    if isinstance(value, (bool, float)):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


class StateStoreSettings(_Section):
    """``[state_store]``: behaviour of the store."""

    backend: str = Field(
        default="statestore.metastore.MetastoreStateBackend",
        description="Dotted path to a BaseStateBackend subclass.",
    )
    default_retention_days: int = Field(
        default=30,
        ge=0,
        description="Retention of task-state keys set without one; 0 = never expire.",
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

    _ints = field_validator(
        "default_retention_days", "state_cleanup_batch_size", "max_value_bytes", mode="before"
    )(_non_negative_int)

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
        default="",
        description="Base URL of ObjectStoreStateBackend (file://, memory://, s3://, ...).",
    )
    max_object_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Largest value stored through a worker-side backend; 0 = unlimited.",
    )

    _path = field_validator("state_backend")(_dotted_path)
    _ints = field_validator("max_object_bytes", mode="before")(_non_negative_int)


SECTIONS: dict[str, type[_Section]] = {
    "database": DatabaseSettings,
    "state_store": StateStoreSettings,
    "workers": WorkersSettings,
}


def _config_file() -> Path | None:
    named = os.environ.get(CONFIG_FILE_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_FILE_ENV}={named}: no such file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_env() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    values: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for name, value in os.environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not key:
            raise ConfigError(f"{name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        values.setdefault(section, {})[key] = value
        origins[f"{section}.{key}"] = f"env {name}"
    return values, origins


def _read_file(path: Path | None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    if path is None:
        return {}, {}
    parser = configparser.ConfigParser(interpolation=None)  # '%' in URLs must survive
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid INI file: {exc}") from None
    values = {s: dict(parser.items(s)) for s in parser.sections()}
    origins = {f"{s}.{k}": f"file {path}" for s, keys in values.items() for k in keys}
    return values, origins


def _normalise_args(kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    args: dict[str, dict[str, Any]] = {}
    for section, given in kwargs.items():
        values = given.model_dump(exclude_unset=True) if isinstance(given, BaseModel) else given
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] (argument): expected a mapping of settings")
        args[section] = dict(values)
    return args


class StateStoreConfig(BaseSettings):
    """All settings, one nested model per section: ``cfg.state_store.max_value_bytes``.

    Pass settings explicitly as one mapping per section::

        StateStoreConfig(state_store={"default_retention_days": 7}, database={"url": url})
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    database: DatabaseSettings = DatabaseSettings()
    state_store: StateStoreSettings = StateStoreSettings()
    workers: WorkersSettings = WorkersSettings()

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **kwargs: Any) -> None:
        args = _normalise_args(kwargs)
        env, env_origins = _read_env()
        file_path = _config_file()
        ini, file_origins = _read_file(file_path)
        origins = {**file_origins, **env_origins}
        origins.update({f"{s}.{k}": "argument" for s, keys in args.items() for k in keys})
        merged: dict[str, dict[str, Any]] = {}
        for layer in (ini, env, args):  # lowest precedence first, merged per key
            for section, keys in layer.items():
                merged.setdefault(section, {}).update(keys)
        for section in sorted(set(merged) - set(SECTIONS)):
            first_key = next(iter(merged[section]), "")
            source = origins.get(f"{section}.{first_key}", "argument")
            raise ConfigError(
                f"unknown configuration section [{section}] ({source}); "
                f"known sections: {', '.join(SECTIONS)}"
            )
        try:
            super().__init__(**cast(dict[str, Any], merged))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, origins)) from None
        self._origins = origins

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # __init__ has already merged arguments, env and the INI file per key.
        return (init_settings,)

    def describe_sources(self) -> dict[str, str]:
        """Where each effective value came from: ``{"state_store.max_value_bytes": ...}``."""
        return {
            f"{section}.{key}": self._origins.get(f"{section}.{key}", "default")
            for section, model in SECTIONS.items()
            for key in model.model_fields
        }

    def as_dict(self, *, mask_secrets: bool = True) -> dict[str, dict[str, object]]:
        """Every setting by section; the database password masked unless told otherwise."""
        data = self.model_dump()
        if mask_secrets:
            data["database"]["url"] = mask_url(self.database.url)
        return data

    def with_database_url(self, url: str) -> StateStoreConfig:
        """A copy with ``[database] url`` replaced (validated, source "argument")."""
        try:
            database = DatabaseSettings(**{**self.database.model_dump(), "url": url})
        except ValidationError as exc:
            raise ConfigError(_describe(exc, {"database.url": "argument"})) from None
        copy = self.model_copy(update={"database": database})
        copy._origins = {**self._origins, "database.url": "argument"}
        return copy


def _describe(exc: ValidationError, origins: dict[str, str]) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        section = loc[0] if loc else "?"
        key = loc[1] if len(loc) > 1 else ""
        source = origins.get(f"{section}.{key}", "argument")
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"[{section}] {key} ({source}): {mask_url(str(message))}")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return f"{len(lines)} invalid settings:\n" + "\n".join(lines)
