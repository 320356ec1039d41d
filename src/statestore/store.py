"""The facade a host builds once: configuration, a backend, and accessor factories.

``StateStore()`` with no arguments reads :class:`StateStoreConfig` (arguments, env, INI,
defaults) and opens the configured backend — the metastore on a local SQLite file
unless told otherwise. Hosts that already have a database pass a URL or their own
SQLAlchemy engines; tests pass ``backend=InMemoryStateBackend()``.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, cast

from statestore.accessors import AssetStateAccessor, AssetStateAccessors, TaskStateAccessor
from statestore.backends.base import BaseStateBackend, load_backend
from statestore.backends.offload import WorkerBackedStateBackend
from statestore.exceptions import (
    ConfigError,
    InvalidTypeError,
    StoreClosedError,
    UnsupportedOperationError,
)
from statestore.scopes import (
    AssetScope,
    TaskScope,
    to_asset_scope,
    to_task_scope,
    writer_name,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from statestore.config import StateStoreConfig
    from statestore.metastore import MetastoreStateBackend
    from statestore.metastore.maintenance import AssetInfo

__all__ = ["StateStore", "default_store", "set_default_store"]


def _config_with_url(config: StateStoreConfig | None, url: str | None) -> StateStoreConfig:
    # Imported on first use: pydantic costs more than the rest of `import statestore`.
    from statestore.config import StateStoreConfig  # noqa: PLC0415

    if config is None:
        return StateStoreConfig(database={"url": url}) if url else StateStoreConfig()
    if not isinstance(config, StateStoreConfig):
        raise InvalidTypeError(f"config must be a StateStoreConfig, not {type(config).__name__}")
    return config if url is None else config.with_database_url(url)


def _configured(
    config: StateStoreConfig | None,
    url: str | None,
    token: str | None,
    token_file: str | None,
) -> StateStoreConfig:
    """The settings a store is built from: an ``http(s)://`` url names a state server
    (``[client] url``), any other a database (``[database] url``)."""
    from statestore.config import is_server_url  # noqa: PLC0415 - pydantic, see above

    server = url is not None and is_server_url(url)
    merged = _config_with_url(config, None if server else url)
    if server or token is not None or token_file is not None:
        merged = merged.with_client(url if server else None, token=token, token_file=token_file)
        if not merged.client.url:
            raise ConfigError(
                "token= and token_file= are for a state server: give an http(s):// url "
                "or set [client] url"
            )
    return merged


def _build_worker(config: StateStoreConfig) -> BaseStateBackend | None:
    path = config.workers.state_backend
    if not path:
        return None
    worker_cls = load_backend(path, setting="[workers] state_backend")
    from_config = getattr(worker_cls, "from_config", None)
    worker = from_config(config) if callable(from_config) else worker_cls()
    if not isinstance(worker, BaseStateBackend):
        raise ConfigError(f"[workers] state_backend = {path!r}: from_config() built no backend")
    return worker


def _build_backend(
    config: StateStoreConfig,
    *,
    url_given: bool,
    engine: Engine | None,
    async_engine: AsyncEngine | None,
) -> BaseStateBackend:
    if config.client.url:
        return _build_http_backend(config, engine=engine, async_engine=async_engine)
    backend_cls = load_backend(config.state_store.backend)
    from statestore.metastore import MetastoreStateBackend  # noqa: PLC0415 - heavy import

    if issubclass(backend_cls, MetastoreStateBackend):
        return backend_cls.from_config(config, engine=engine, async_engine=async_engine)
    if backend_cls.__module__ == _HTTP_MODULE:  # needs [client] url, which is not set
        return _build_http_backend(config, engine=engine, async_engine=async_engine)
    if url_given or engine is not None or async_engine is not None:
        raise ConfigError(
            f"[state_store] backend = {config.state_store.backend!r} is not the metastore "
            "backend, so a database url or engine cannot be used with it"
        )
    return backend_cls()


_HTTP_MODULE = "statestore.backends.http"
_HTTP_BACKEND = f"{_HTTP_MODULE}.HttpStateBackend"


def _build_http_backend(
    config: StateStoreConfig, *, engine: Engine | None, async_engine: AsyncEngine | None
) -> BaseStateBackend:
    """The HTTP backend ``[client]`` describes; the metastore is never imported."""
    from statestore.config import StateStoreSettings  # noqa: PLC0415

    chosen = config.state_store.backend
    if chosen not in (StateStoreSettings().backend, _HTTP_BACKEND):
        raise ConfigError(
            f"[client] url selects the HTTP backend, but [state_store] backend = {chosen!r}: "
            "unset one of them"
        )
    if engine is not None or async_engine is not None:
        raise ConfigError("a state server URL and a database engine cannot be used together")
    try:
        from statestore.backends.http import HttpStateBackend  # noqa: PLC0415 - needs httpx
    except ModuleNotFoundError as exc:  # httpx comes with the client extra
        raise ConfigError(
            f"a state server URL needs httpx ({exc}): pip install 'statestore[client]'"
        ) from exc
    return HttpStateBackend.from_config(config)


class _AssetRegistry(Protocol):
    """What keeps the asset registry: the metastore, or HttpStateBackend over a server."""

    def list_assets(self, active: bool | None = None) -> list[AssetInfo]: ...
    async def alist_assets(self, active: bool | None = None) -> list[AssetInfo]: ...
    def set_assets_active(self, assets: list[AssetScope], active: bool) -> int: ...
    async def aset_assets_active(self, assets: list[AssetScope], active: bool) -> int: ...


_REGISTRY_METHODS = ("list_assets", "alist_assets", "set_assets_active", "aset_assets_active")


class StateStore:
    """Configuration + backend + accessor factories + maintenance + lifecycle.

    Build one per process (or use :func:`default_store`), share it between threads and
    tasks, and close it on shutdown — or use it as a (async) context manager.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
        config: StateStoreConfig | None = None,
        backend: BaseStateBackend | None = None,
        token: str | None = None,
        token_file: str | None = None,
        updated_by: str | None = None,
    ) -> None:
        """Build a store from a URL, a host's engine(s), or a ready ``backend``.

        An ``http://`` or ``https://`` url names a state server (``statestore serve``):
        the store then uses :class:`~statestore.backends.http.HttpStateBackend` with
        ``token`` (the bearer token) or ``token_file`` (a file holding it, re-read when
        it changes), like ``[client] url`` / ``token`` / ``token_file`` in the settings.

        Settings come from ``config`` or, without one, from the usual sources
        (``STATESTORE_*`` variables, ``statestore.cfg``). That holds with ``backend=``
        too: the backend replaces only the ``[state_store] backend`` and ``[database]``
        choices, while retention defaults, size limits and ``[workers] state_backend``
        still apply, so a store behaves the same whichever way its backend was named.
        """
        self._closed = False
        # What a task accessor resolves from this store's (frozen) settings, once: the
        # inline style store.task_state(scope).get(k) then builds one cheaply per call.
        # Plain values, not an accessor: one would reference the store (a cycle that
        # keeps a dropped store and its connections alive until the garbage collector).
        self._task_settings: tuple[int, int, str | None] | None = None
        self._updated_by = writer_name(updated_by)
        if url is not None and not isinstance(url, str):
            # A sqlalchemy URL object: str() would mask the password as "***".
            render = getattr(url, "render_as_string", None)
            url = render(hide_password=False) if callable(render) else str(url)
        self._config = _configured(config, url, token, token_file)
        if backend is not None:
            if not isinstance(backend, BaseStateBackend):
                raise InvalidTypeError(
                    f"backend must be a BaseStateBackend, not {type(backend).__name__}"
                )
            if url is not None or engine is not None or async_engine is not None:
                raise ConfigError("pass either backend= or a url/engine, not both")
            self._backend = backend
        else:
            self._backend = _build_backend(
                self._config, url_given=url is not None, engine=engine, async_engine=async_engine
            )
        self._worker = _build_worker(self._config)
        if self._worker is not None:
            # Rows keep references, the worker-side backend keeps the values.
            self._backend = WorkerBackedStateBackend(self._backend, self._worker)
        _unclosed.add(self)

    # -- what it holds -----------------------------------------------------------------

    @property
    def config(self) -> StateStoreConfig:
        """The effective settings."""
        return self._config

    @property
    def backend(self) -> BaseStateBackend:
        """The backend every accessor of this store writes through.

        Raises :class:`~statestore.exceptions.StoreClosedError` once the store is
        closed, and so does every accessor built from it.
        """
        if self._closed:
            raise StoreClosedError(
                f"{self!r} is closed: build a new StateStore (or keep this one open until "
                "the process ends) instead of using it after close()/aclose()"
            )
        return self._backend

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`aclose` has been called."""
        return self._closed

    @property
    def updated_by(self) -> str | None:
        """Who this store's writes are recorded as (``updated_by``), unless an accessor
        names its own writer."""
        return self._updated_by

    @property
    def worker_backend(self) -> BaseStateBackend | None:
        """The worker-side backend holding values (``[workers] state_backend``), if any."""
        return self._worker

    @property
    def primary_backend(self) -> BaseStateBackend:
        """The backend holding the rows: :attr:`backend` unless a worker-side one wraps it."""
        backend = self.backend
        return backend.primary if isinstance(backend, WorkerBackedStateBackend) else backend

    def __repr__(self) -> str:
        # The backend's own repr names its database or server, password hidden.
        closed = ", closed" if self._closed else ""
        return f"StateStore({self._backend!r}{closed})"

    # -- accessor factories ----------------------------------------------------------------

    def task_state(
        self,
        scope: TaskScope | str,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int = -1,
        *,
        map_key: str | None = None,
        updated_by: object = None,
    ) -> TaskStateAccessor:
        """The task state of one task instance: a ``TaskScope``, or its fields
        ``(dag_id, run_id, task_id, map_index=-1, map_key=None)`` -- the same arguments
        as :func:`statestore.task_state`. ``updated_by``: a name recorded with each
        write (default: the store's)."""
        task = to_task_scope(scope, run_id, task_id, map_index, map_key)
        settings = self._task_settings
        if settings is not None and updated_by is None and not self._closed:
            return TaskStateAccessor._of(task, self, settings)
        accessor = TaskStateAccessor(task, store=self, updated_by=updated_by)
        if updated_by is None:
            self._task_settings = accessor._settings()
        return accessor

    def asset_state(self, asset: object, *, updated_by: object = None) -> AssetStateAccessor:
        """The state of one asset (an ``AssetScope``, a name, or an object with .name/.uri).

        ``updated_by``: who writes -- a name, or the writing task's ``TaskScope`` --
        recorded with each write (default: the store's ``updated_by``).
        """
        return AssetStateAccessor(asset, store=self, updated_by=updated_by)

    def asset_states(
        self,
        inlets: Iterable[object] = (),
        outlets: Iterable[object] = (),
        *,
        updated_by: object = None,
    ) -> AssetStateAccessors:
        """The asset state of a task's declared inlets and outlets (``updated_by``: the
        writing task's ``TaskScope`` or a name)."""
        return AssetStateAccessors(inlets, outlets, store=self, updated_by=updated_by)

    # -- host hooks -------------------------------------------------------------------------

    def on_task_success(self, scope: TaskScope) -> None:
        """Call when a task instance succeeds; clears its task state if configured.

        Only with ``[state_store] clear_on_success`` on, and only that map index's task
        state: asset state is never touched.
        """
        if not isinstance(scope, TaskScope):
            raise InvalidTypeError(f"scope must be a TaskScope, not {type(scope).__name__}")
        backend = self.backend  # a closed store refuses, whatever the setting
        if self._config.state_store.clear_on_success:
            backend.clear(scope)

    async def aon_task_success(self, scope: TaskScope) -> None:
        """Async twin of :meth:`on_task_success`."""
        if not isinstance(scope, TaskScope):
            raise InvalidTypeError(f"scope must be a TaskScope, not {type(scope).__name__}")
        backend = self.backend
        if self._config.state_store.clear_on_success:
            await backend.aclear(scope)

    def _metastore(self, operation: str) -> MetastoreStateBackend:
        from statestore.metastore import MetastoreStateBackend  # noqa: PLC0415

        backend = self.primary_backend
        if not isinstance(backend, MetastoreStateBackend):
            raise UnsupportedOperationError(
                f"{operation} needs the metastore backend; this store uses {type(backend).__name__}"
            )
        return backend

    def upgrade(self) -> None:
        """Create or migrate the metastore schema to this release (Alembic)."""
        self._metastore("upgrade").upgrade()

    async def aupgrade(self) -> None:
        """Async twin of :meth:`upgrade`."""
        await self._metastore("aupgrade").aupgrade()

    # -- the asset registry (the metastore, or a state server with an admin token) ----------

    def _registry(self, operation: str) -> _AssetRegistry:
        backend = self.primary_backend
        if all(callable(getattr(backend, name, None)) for name in _REGISTRY_METHODS):
            return cast("_AssetRegistry", backend)
        raise UnsupportedOperationError(
            f"{operation} needs the metastore backend or a state server; this store uses "
            f"{type(backend).__name__}"
        )

    def list_assets(self, active: bool | None = None) -> list[AssetInfo]:
        """Registered assets, by name; ``active`` filters on the flag."""
        return self._registry("list_assets").list_assets(active)

    async def alist_assets(self, active: bool | None = None) -> list[AssetInfo]:
        """Async twin of :meth:`list_assets`."""
        return await self._registry("alist_assets").alist_assets(active)

    def deactivate_assets(self, *assets: object) -> int:
        """Mark assets inactive: their state can be read and cleared, not written, and the
        next :func:`~statestore.cleanup.sweep_asset_states` deletes it. Returns how many
        assets changed; unknown assets are ignored."""
        scopes = [to_asset_scope(a) for a in assets]
        return self._registry("deactivate_assets").set_assets_active(scopes, active=False)

    async def adeactivate_assets(self, *assets: object) -> int:
        """Async twin of :meth:`deactivate_assets`."""
        scopes = [to_asset_scope(a) for a in assets]
        return await self._registry("adeactivate_assets").aset_assets_active(scopes, active=False)

    def activate_assets(self, *assets: object) -> int:
        """Re-activate assets (their swept state does not come back)."""
        scopes = [to_asset_scope(a) for a in assets]
        return self._registry("activate_assets").set_assets_active(scopes, active=True)

    async def aactivate_assets(self, *assets: object) -> int:
        """Async twin of :meth:`activate_assets`."""
        scopes = [to_asset_scope(a) for a in assets]
        return await self._registry("aactivate_assets").aset_assets_active(scopes, active=True)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the backend's connections; closing twice is fine.

        Afterwards the store and every accessor built from it raise
        :class:`~statestore.exceptions.StoreClosedError` instead of reconnecting.
        Async connections belong to their event loop: :meth:`aclose` on a loop
        releases that loop's, and a loop that ends (``asyncio.run`` returning)
        releases its own, so ``close()`` after the loops are done releases the rest.
        """
        self._closed = True
        self._backend.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: releases the running loop's connections, then
        everything :meth:`close` does. Call it (or use ``async with``) in code that owns
        the loop; an ``asyncio.run`` that ends releases its loop's connections anyway."""
        self._closed = True
        await self._backend.aclose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> StateStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# Stores nobody closed: their connections are returned at interpreter exit, before
# teardown would collect them with a "never checked in" or ResourceWarning. The stores
# stay usable (this is a release, not close()), so an atexit hook that runs later, or
# a daemon thread, still works: the backend reopens what it needs.
_unclosed: weakref.WeakSet[StateStore] = weakref.WeakSet()


def _release_unclosed() -> None:
    for store in list(_unclosed):
        if not store.closed:
            with contextlib.suppress(Exception):  # exiting: a store that cannot release is gone
                store._backend.close()


atexit.register(_release_unclosed)

_default_lock = threading.Lock()
_default: StateStore | None = None


def default_store() -> StateStore:
    """The process-wide store, built on first use from :class:`StateStoreConfig`.

    Accessors created with ``store=None`` use it. A host that builds its own store can
    install it with :func:`set_default_store`.
    """
    global _default  # noqa: PLW0603 - one store per process is the point
    with _default_lock:
        if _default is None:
            _default = StateStore()
        return _default


def set_default_store(store: StateStore | None) -> StateStore | None:
    """Install ``store`` as the process-wide default (``None`` forgets it); returns the old one.

    The old store is not closed: whoever built it owns it.
    """
    global _default
    if store is not None and not isinstance(store, StateStore):
        raise InvalidTypeError(f"store must be a StateStore, not {type(store).__name__}")
    with _default_lock:
        previous, _default = _default, store
    return previous
