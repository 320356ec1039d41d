"""A task's token and its store on a state server, for every orchestrator adapter.

The adapters (``statestore.integrations.airflow``, ``.dagster``, ``.prefect``) turn their
orchestrator's task context into a :class:`~statestore.TaskScope` and two lists of asset
references -- what the task reads (its inlets) and what it writes (its outlets). This
module, which imports no orchestrator, does the rest the same way for all three:

- the :class:`~statestore.wire.Grant`: that one task instance, the inlets as readable
  assets, the outlets as writable ones (writing implies reading), nothing else;
- the signed token, with the private key given or named by the environment
  (:data:`PRIVATE_KEY_FILE_ENV`, or :data:`SHARED_SECRET_FILE_ENV` for HS256);
- a :class:`~statestore.StateStore` over the server's URL (given, or ``[client] url``)
  that presents the token on every request.

So a task holds a short-lived token for itself instead of database credentials, and
the server refuses (403) its reads of another task's state or of an asset it did not
declare. The key is read here and never logged, repeated in an error, or kept after
the token is signed; errors name the variable or the file, never the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from statestore.exceptions import ConfigError, InvalidTypeError
from statestore.scopes import TaskScope, to_asset_scope
from statestore.wire import Grant

if TYPE_CHECKING:
    from statestore.store import StateStore

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "ISSUER_ENV",
    "PRIVATE_KEY_FILE_ENV",
    "SHARED_SECRET_FILE_ENV",
    "asset_names",
    "mint_task_token",
    "server_store",
    "task_grant",
    "task_subject",
]

PRIVATE_KEY_FILE_ENV = "STATESTORE_TOKEN_PRIVATE_KEY_FILE"
"""The environment variable naming the Ed25519 private key (PEM file) that signs tokens."""

SHARED_SECRET_FILE_ENV = "STATESTORE_TOKEN_SHARED_SECRET_FILE"  # noqa: S105 - a variable name
"""Instead of a private key: a file holding the HS256 secret the server shares."""

ISSUER_ENV = "STATESTORE_TOKEN_ISSUER"
"""The ``iss`` claim to put in tokens, for a server started with ``--issuer``."""

DEFAULT_TOKEN_TTL = timedelta(hours=1)
"""A task's token lives one hour unless told otherwise: longer than most task runs, short
enough that a leaked token is soon worthless. A longer task passes ``ttl=``."""

AssetNamer = Callable[[object], str]


def task_subject(scope: TaskScope) -> str:
    """The token's ``sub``: ``task:dag/run/task``, with ``[index]`` or ``[key]`` when mapped
    (the form ``statestore token mint`` derives, so the server's logs read the same)."""
    text = f"task:{scope.dag_id}/{scope.run_id}/{scope.task_id}"
    if scope.map_key is not None:
        return f"{text}[{scope.map_key}]"
    return text if scope.map_index == -1 else f"{text}[{scope.map_index}]"


def _default_name(asset: object) -> str:
    scope = to_asset_scope(asset)
    name = scope.name if scope.name is not None else scope.uri
    if name is None:  # an asset id only: a server grants assets by name
        raise InvalidTypeError(f"{asset!r} has no name or uri to grant it by")
    return name


def asset_names(
    assets: Iterable[object] | None, name_of: AssetNamer | None = None
) -> frozenset[str]:
    """The names a grant lists for ``assets`` (asset objects, scopes or names).

    ``name_of`` turns one reference into its statestore name (an adapter's own rule, e.g.
    Dagster's ``"raw/orders"`` for an ``AssetKey``); by default the reference's ``name``,
    else its ``uri`` -- the name a scope with only a uri is stored under.
    """
    namer = name_of or _default_name
    return frozenset(namer(asset) for asset in assets or ())


def task_grant(
    scope: TaskScope,
    *,
    inlets: Iterable[object] | None = (),
    outlets: Iterable[object] | None = (),
    all_map_indices: bool = False,
    subject: str | None = None,
    name_of: AssetNamer | None = None,
) -> Grant:
    """What one task instance's token allows: its own task state, its inlets to read and
    its outlets to read and write. ``all_map_indices``: every map index of the task (for
    ``clear(all_map_indices=True)``)."""
    if not isinstance(scope, TaskScope):
        raise InvalidTypeError(f"scope must be a TaskScope, not {type(scope).__name__}")
    writes = asset_names(outlets, name_of)
    return Grant(
        subject or task_subject(scope),
        task=scope,
        all_map_indices=all_map_indices,
        read_assets=asset_names(inlets, name_of) - writes,  # writing implies reading
        write_assets=writes,
    )


def _signing_key(private_key: object) -> Any:
    """The key that signs: ``private_key`` as given, else the one the environment names."""
    try:
        from statestore.server.auth import SharedSecret, load_private_key  # noqa: PLC0415
    except ImportError as exc:  # the orchestrator's process lacks PyJWT/cryptography
        raise ConfigError(
            f"minting a token needs the server extra ({exc.name} is missing): "
            "pip install 'statestore[server]'"
        ) from None
    if private_key is not None:
        return (
            private_key
            if isinstance(private_key, SharedSecret)
            else load_private_key(
                private_key  # type: ignore[arg-type]
            )
        )
    key_file = os.environ.get(PRIVATE_KEY_FILE_ENV)
    secret_file = os.environ.get(SHARED_SECRET_FILE_ENV)
    if key_file and secret_file:
        raise ConfigError(f"set {PRIVATE_KEY_FILE_ENV} or {SHARED_SECRET_FILE_ENV}, not both")
    try:
        if key_file:
            return load_private_key(key_file)
        if secret_file:
            return SharedSecret.from_file(secret_file)
    except ConfigError as exc:  # say which variable named the file (never the key)
        named = PRIVATE_KEY_FILE_ENV if key_file else SHARED_SECRET_FILE_ENV
        raise ConfigError(f"${named} ({key_file or secret_file}): {exc}") from None
    raise ConfigError(
        f"no key to sign the task's token: pass private_key=, or set {PRIVATE_KEY_FILE_ENV} "
        f"(an Ed25519 private key, PEM; `statestore token keygen` makes one) or "
        f"{SHARED_SECRET_FILE_ENV}"
    )


def mint_task_token(
    grant: Grant,
    *,
    private_key: object = None,
    ttl: timedelta = DEFAULT_TOKEN_TTL,
    issuer: str | None = None,
) -> str:
    """The signed token for ``grant``.

    ``private_key``: an Ed25519 private key (object, PEM text or a PEM file's path) or a
    ``SharedSecret``; by default the file :data:`PRIVATE_KEY_FILE_ENV` (or
    :data:`SHARED_SECRET_FILE_ENV`) names. ``issuer``: by default :data:`ISSUER_ENV`.
    """
    from statestore.server.auth import mint_token  # noqa: PLC0415 - after _signing_key's check

    key = _signing_key(private_key)
    return mint_token(grant, key, ttl=ttl, issuer=issuer or os.environ.get(ISSUER_ENV) or None)


def _server_url(url: str | None) -> str:
    from statestore.config import StateStoreConfig, is_server_url  # noqa: PLC0415 - pydantic

    found = url or StateStoreConfig().client.url
    if not found:
        raise ConfigError(
            "no state server URL for the task's store: pass url=, or set [client] url "
            "(STATESTORE__CLIENT__URL)"
        )
    if not is_server_url(found):
        raise ConfigError(f"a state server's URL is http:// or https://, not {found!r}")
    return found


def server_store(
    grant: Grant,
    *,
    url: str | None = None,
    private_key: object = None,
    ttl: timedelta = DEFAULT_TOKEN_TTL,
    issuer: str | None = None,
    updated_by: str | None = None,
) -> StateStore:
    """A new store on the state server at ``url`` (default ``[client] url``) that sends a
    token for ``grant``; the caller closes it (``with ... as store:``)."""
    from statestore.store import StateStore  # noqa: PLC0415 - the caller may only mint

    where = _server_url(url)
    token = mint_task_token(grant, private_key=private_key, ttl=ttl, issuer=issuer)
    return StateStore(where, token=token, updated_by=updated_by)
