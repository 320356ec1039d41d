"""Airflow 3.3 integration: statestore as Airflow's state-store backend, and task helpers.

Two independent pieces:

* :class:`StatestoreBackend` -- name it in Airflow's ``[state_store] backend``
  (``AIRFLOW__STATE_STORE__BACKEND=statestore.integrations.airflow.StatestoreBackend``)
  and every ``task_state_store`` / ``asset_state_store`` call of every task goes, through
  Airflow's Execution API, into statestore's metastore on the database you choose,
  instead of Airflow's metadata database.
* :func:`task_scope`, :func:`task_state` and :func:`asset_states` -- for task code that
  uses statestore's own accessors (versions, listing, async, ...) inside an Airflow task.
* :func:`server_store` -- a store on a state server with a token for this task instance
  only: its task state, its inlets to read, its outlets to write (:func:`task_grant`).

This module imports Airflow when it is imported; ``import statestore`` never does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.state import AssetScope as AirflowAssetScope
from airflow.state import BaseStoreBackend
from airflow.state import TaskScope as AirflowTaskScope
from sqlalchemy import select

from statestore.accessors import AssetStateAccessors, TaskStateAccessor
from statestore.cleanup import CleanupReport, cleanup_task_states, sweep_asset_states
from statestore.config import StateStoreConfig
from statestore.exceptions import (
    ConfigError,
    InactiveAssetError,
    InvalidTypeError,
    ValueTooLargeError,
)
from statestore.integrations import _server_tokens, _shared_stores
from statestore.integrations._airflow_assets import (
    AirflowAsset,
    NameHeld,
    airflow_asset_query,
    as_airflow_asset,
    reconcile,
    writable,
)
from statestore.metastore import MetastoreStateBackend
from statestore.metastore.errors import translate_errors
from statestore.scopes import AssetScope, StateScope, TaskScope
from statestore.store import StateStore, default_store

if TYPE_CHECKING:
    from datetime import timedelta

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from statestore.wire import Grant

__all__ = [
    "SERVER_URL_OPTION",
    "URL_OPTION",
    "StatestoreBackend",
    "asset_states",
    "mint_task_token",
    "server_store",
    "store_from_airflow_config",
    "task_grant",
    "task_scope",
    "task_state",
]

log = logging.getLogger(__name__)

URL_OPTION = ("statestore", "url")
"""The Airflow option (``[statestore] url``, ``AIRFLOW__STATESTORE__URL``) that, when set,
overrides statestore's own ``[database] url`` for the backend."""

SERVER_URL_OPTION = ("statestore", "server_url")  # AIRFLOW__STATESTORE__SERVER_URL
_DEFAULT_MAX_BYTES = 65535
_TTL = _server_tokens.DEFAULT_TOKEN_TTL


def _airflow_conf() -> Any:
    from airflow.configuration import conf  # noqa: PLC0415 - only where Airflow runs

    return conf


def _airflow_store_config() -> StateStoreConfig:
    url = _airflow_conf().get(*URL_OPTION, fallback=None) or None
    config = StateStoreConfig()
    return config.with_database_url(url) if url else config


def store_from_airflow_config() -> StateStore:
    """A new store on the backend's settings: statestore's own (``STATESTORE__...``
    variables, ``$STATESTORE_CONFIG`` or ``./statestore.cfg``), with the database URL
    taken from Airflow's ``[statestore] url`` when that is set. The caller owns it.

    Why both: the URL usually belongs next to the rest of the Airflow deployment's
    settings (and its secrets backend), while the statestore-only knobs
    (``auto_migrate_sqlite``, ``timeout_seconds``...) keep their usual home. The backend
    itself does not build one per instance: it shares one store per process and
    configuration (Airflow never closes a backend).
    """
    return StateStore(config=_airflow_store_config())


def _shared_airflow_store() -> StateStore:
    return _shared_stores.shared_store(_airflow_store_config())


def _aware(expires_at: datetime | None) -> datetime | None:
    # The Execution API parses ISO text; a naive value can only have meant UTC.
    if expires_at is not None and expires_at.tzinfo is None:
        return expires_at.replace(tzinfo=timezone.utc)
    return expires_at


class StatestoreBackend(BaseStoreBackend):
    """Airflow's ``[state_store] backend``, storing through a statestore :class:`StateStore`.

    Airflow's API server builds it once (no arguments) and calls it for every state
    call of every task; values arrive as JSON text and are stored verbatim. Task scopes
    map one to one. Asset scopes arrive with Airflow's integer asset id only: the
    backend looks the asset's name and uri up in Airflow's ``asset`` table (through the
    session Airflow passes) and uses the name as statestore's identity, checking once
    per asset and process that statestore's registry knows that name with the same uri,
    so two Airflow assets can never share state.

    ``session`` is Airflow's metadata-database session: used for that lookup only.
    statestore writes on its own connections and commits at once (one statement, one
    round trip); they do not join Airflow's transaction.

    Without ``store``, every instance in a process uses the same store for the same
    settings (Airflow has no hook to close a backend, so none holds connections of its
    own); a forked child gets its own store on first use.
    """

    def __init__(self, store: StateStore | None = None) -> None:
        self._given = store  # a caller's store: used as is, the caller closes it
        self._store = store if store is not None else _shared_airflow_store()
        self._generation = _shared_stores.generation()
        self._checked: dict[int, AssetScope] = {}
        self._lock = threading.Lock()
        self._max_bytes: int | None = None  # read from Airflow's config on first write

    @property
    def store(self) -> StateStore:
        """The statestore :class:`StateStore` holding Airflow's state."""
        if self._given is None and self._generation != _shared_stores.generation():
            # A forked child (Airflow keeps one backend per process, inherited by forks):
            # the parent's store and its connections are not this process's.
            self._store = _shared_airflow_store()
            self._generation = _shared_stores.generation()
        return self._store

    def __repr__(self) -> str:
        return f"StatestoreBackend({self.store.backend!r})"

    # -- scopes and checks -----------------------------------------------------------------

    def _limit(self) -> int:
        # Airflow's own knob, so one setting governs the REST API and this backend.
        if self._max_bytes is None:
            self._max_bytes = _airflow_conf().getint(
                "state_store", "max_value_storage_bytes", fallback=_DEFAULT_MAX_BYTES
            )
        return self._max_bytes

    def _check_size(self, key: str, value: str) -> None:
        limit = self._limit()
        if limit > 0 and len(value) * 4 > limit:  # cheap bound first: 4 bytes per char max
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > limit:
                error = ValueTooLargeError(size, limit)
                error.args = (  # name the setting an Airflow user knows
                    f"value of {key!r} is {size} bytes of JSON, over Airflow's [state_store] "
                    f"max_value_storage_bytes = {limit}; nothing was written. Store large "
                    "values elsewhere ([workers] state_store_backend) or raise the limit",
                )
                raise error

    @staticmethod
    def _task(scope: AirflowTaskScope) -> TaskScope:
        return TaskScope(scope.dag_id, scope.run_id, scope.task_id, scope.map_index)

    def _scope(self, scope: object, session: Session | None) -> StateScope | NameHeld:
        if isinstance(scope, AirflowTaskScope):
            return self._task(scope)
        if not isinstance(scope, AirflowAssetScope):
            raise InvalidTypeError(f"expected an Airflow TaskScope or AssetScope, not {scope!r}")
        if scope.asset_id is None:  # a direct caller naming the asset: statestore's rules
            return AssetScope(name=scope.name, uri=scope.uri)
        found = self._checked.get(scope.asset_id)
        if found is not None:
            return found
        if session is None:
            from airflow.utils.session import create_session  # noqa: PLC0415

            with create_session() as own:
                row = own.execute(airflow_asset_query(scope.asset_id)).first()
        else:
            row = session.execute(airflow_asset_query(scope.asset_id)).first()
        return self._checked_scope(scope.asset_id, as_airflow_asset(row, scope.asset_id))

    async def _ascope(self, scope: object, session: AsyncSession | None) -> StateScope | NameHeld:
        if not isinstance(scope, AirflowAssetScope) or scope.asset_id is None:
            return self._scope(scope, None)
        found = self._checked.get(scope.asset_id)
        if found is not None:
            return found
        if session is None:
            from airflow.utils.session import create_session_async  # noqa: PLC0415

            async with create_session_async() as own:
                row = (await own.execute(airflow_asset_query(scope.asset_id))).first()
        else:
            row = (await session.execute(airflow_asset_query(scope.asset_id))).first()
        # The registry check is a couple of indexed statements, once per asset and process.
        return self._checked_scope(scope.asset_id, as_airflow_asset(row, scope.asset_id))

    def _checked_scope(self, asset_id: int, found: AirflowAsset) -> AssetScope | NameHeld:
        """Map an Airflow asset to statestore's, checking statestore's registry once."""
        scope = AssetScope(name=found.name, uri=found.uri)
        backend = self.store.primary_backend
        if isinstance(backend, MetastoreStateBackend):
            backend.ensure_schema()
            with translate_errors(backend.url), backend.engine.connect() as conn:
                held_uri = reconcile(conn, scope, found.active)
            if held_uri is not None:  # not cached: cleanup may free the name any time
                return NameHeld(found.name, found.uri, held_uri)
        if found.active:  # an inactive one is re-checked next time: it may come back
            with self._lock:
                self._checked[asset_id] = scope
        return scope

    def _forget(self, scope: object) -> None:
        if isinstance(scope, AirflowAssetScope) and scope.asset_id is not None:
            with self._lock:
                self._checked.pop(scope.asset_id, None)

    # -- the contract, sync ------------------------------------------------------------------

    def get(self, scope: Any, key: str, *, session: Session | None = None) -> str | None:
        target = self._scope(scope, session)
        if isinstance(target, NameHeld):
            return None  # nothing is stored under Airflow's new id, as in Airflow
        return self.store.backend.get(target, key)

    def set(
        self,
        scope: Any,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        self._check_size(key, value)
        target = writable(self._scope(scope, session))
        try:
            self._write(target, key, value, _aware(expires_at))
        except InactiveAssetError:
            # Deactivated by a cleanup since this process checked it; Airflow resolved
            # it as active just now, so check again (which re-activates it) and retry.
            self._forget(scope)
            target = writable(self._scope(scope, session))
            self._write(target, key, value, _aware(expires_at))

    def _write(self, target: StateScope, key: str, value: str, expires_at: datetime | None) -> None:
        if isinstance(target, TaskScope):
            self.store.backend.set(target, key, value, expires_at=expires_at)
        else:  # asset state never expires
            self.store.backend.set_item(target, key, value, updated_by="airflow")

    def delete(self, scope: Any, key: str, *, session: Session | None = None) -> None:
        target = self._scope(scope, session)
        if not isinstance(target, NameHeld):  # else nothing is stored for it: a no-op
            self.store.backend.delete(target, key)

    def clear(
        self, scope: Any, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        target = self._scope(scope, session)
        if isinstance(target, TaskScope):
            self.store.backend.clear(target, all_map_indices=all_map_indices)
        elif not isinstance(target, NameHeld):  # else nothing is stored for it: a no-op
            self.store.backend.clear(target)

    # -- the contract, async -------------------------------------------------------------------

    async def aget(
        self, scope: Any, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        target = await self._ascope(scope, session)
        if isinstance(target, NameHeld):
            return None  # as get
        return await self.store.backend.aget(target, key)

    async def aset(
        self,
        scope: Any,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        self._check_size(key, value)
        target = writable(await self._ascope(scope, session))
        try:
            await self._awrite(target, key, value, _aware(expires_at))
        except InactiveAssetError:
            self._forget(scope)
            target = writable(await self._ascope(scope, session))
            await self._awrite(target, key, value, _aware(expires_at))

    async def _awrite(
        self, target: StateScope, key: str, value: str, expires_at: datetime | None
    ) -> None:
        if isinstance(target, TaskScope):
            await self.store.backend.aset(target, key, value, expires_at=expires_at)
        else:
            await self.store.backend.aset_item(target, key, value, updated_by="airflow")

    async def adelete(self, scope: Any, key: str, *, session: AsyncSession | None = None) -> None:
        target = await self._ascope(scope, session)
        if not isinstance(target, NameHeld):  # as delete
            await self.store.backend.adelete(target, key)

    async def aclear(
        self, scope: Any, *, all_map_indices: bool = False, session: AsyncSession | None = None
    ) -> None:
        target = await self._ascope(scope, session)
        if isinstance(target, TaskScope):
            await self.store.backend.aclear(target, all_map_indices=all_map_indices)
        elif not isinstance(target, NameHeld):  # as clear
            await self.store.backend.aclear(target)

    # -- maintenance ---------------------------------------------------------------------------

    def cleanup(self, *, dry_run: bool = False, now: datetime | None = None) -> CleanupReport:
        """Expired task state, then the state of assets Airflow no longer has.

        Honours Airflow's ``[state_store]`` settings: ``default_retention_days = 0``
        turns the time-based part off (expired keys still read as absent), and
        ``state_cleanup_batch_size`` sizes the batches. Asset state is deleted only for
        assets Airflow knows and reports inactive: they are deactivated in statestore's
        registry and swept. Needs Airflow's metadata database (run it where the
        scheduler runs, not from a task). Airflow's ``airflow state-store cleanup``
        skips backends other than its own, so schedule this instead.
        """
        conf = _airflow_conf()
        days = conf.getint("state_store", "default_retention_days", fallback=30)
        if days < 0:
            raise ConfigError(f"[state_store] default_retention_days must be >= 0, not {days}")
        batch = conf.getint("state_store", "state_cleanup_batch_size", fallback=0)
        report = CleanupReport(dry_run=dry_run)
        if days > 0:
            report += cleanup_task_states(self.store, dry_run=dry_run, batch_size=batch, now=now)
        retired = self._retire_assets(dry_run)
        if dry_run:
            report += CleanupReport(would_delete=retired, dry_run=True)
        report += sweep_asset_states(self.store, dry_run=dry_run)
        log.info("statestore cleanup for Airflow: %s", report)
        return report

    def _retire_assets(self, dry_run: bool) -> int:
        """Deactivate statestore assets whose Airflow asset is inactive; return their keys.

        An asset Airflow never heard of (written by code outside Airflow) is left alone.
        """
        if not isinstance(self.store.primary_backend, MetastoreStateBackend):
            return 0
        from airflow.models.asset import AssetModel  # noqa: PLC0415
        from airflow.utils.session import create_session  # noqa: PLC0415

        with create_session() as session:
            rows = session.execute(
                select(AssetModel.name, AssetModel.uri, AssetModel.active.has())
            ).all()
        known = {name for name, _, _ in rows}
        active = {(name, uri) for name, uri, is_active in rows if is_active}
        active_names = {name for name, _ in active}
        retire = [
            info
            for info in self.store.list_assets(active=True)
            if info.name in known
            and (info.name, info.uri) not in active
            and not (info.uri is None and info.name in active_names)
        ]
        if retire and not dry_run:
            self.store.deactivate_assets(*(AssetScope(name=info.name) for info in retire))
            with self._lock:
                self._checked.clear()
        return sum(info.keys for info in retire)


# -- helpers for task code that uses statestore directly ------------------------------------


def _task_instance(context_or_ti: object) -> object:
    if isinstance(context_or_ti, Mapping):
        try:
            return context_or_ti["ti"]
        except KeyError:
            raise InvalidTypeError(
                "an Airflow context has a 'ti' entry; this one has none"
            ) from None
    return context_or_ti


def task_scope(context_or_ti: object) -> TaskScope:
    """The statestore :class:`TaskScope` of the running Airflow task instance.

    Pass the task's context (``**context`` or ``get_current_context()``) or its task
    instance (``context["ti"]``). The scope is the one Airflow's own ``task_state_store``
    uses -- dag, run, task and map index (``-1`` when the task is not mapped) -- so a
    retry of the same task instance finds what an earlier try wrote.
    """
    ti = _task_instance(context_or_ti)
    try:
        dag_id, run_id, task_id = ti.dag_id, ti.run_id, ti.task_id  # type: ignore[attr-defined]
    except AttributeError:
        raise InvalidTypeError(
            f"expected an Airflow context or task instance, not {type(ti).__name__}"
        ) from None
    map_index = getattr(ti, "map_index", None)
    return TaskScope(dag_id, run_id, task_id, -1 if map_index is None else map_index)


def _helper_store(store: StateStore | None) -> StateStore:
    """The store the helpers use: ``store``, else the database the backend uses.

    With Airflow's ``[statestore] url`` set, that is the backend's own store on that URL
    (one per process and settings), so task code and Airflow's own accessors never split between two
    databases; without it, the process's default store from statestore's configuration
    -- which is where the backend looks too.
    """
    if store is not None:
        return store
    url = _airflow_conf().get(*URL_OPTION, fallback=None) or None
    return default_store() if url is None else _shared_airflow_store()


def task_state(context_or_ti: object, *, store: StateStore | None = None) -> TaskStateAccessor:
    """statestore's task-state accessor for the running task instance, on ``store`` or
    on the database the backend uses (Airflow's ``[statestore] url``, else statestore's
    configuration)."""
    scope = task_scope(context_or_ti)
    return TaskStateAccessor(scope, store=_helper_store(store), updated_by=scope)


def asset_states(
    context: Mapping[str, Any], *, store: StateStore | None = None
) -> AssetStateAccessors:
    """statestore's accessors for the running task's declared inlets and outlets.

    Airflow ``Asset`` objects work as keys (``asset_states(context)[orders]``); an asset
    declared only as an outlet works too. Writes are recorded as made by this task.
    """
    return AssetStateAccessors(
        context.get("inlets") or (),
        context.get("outlets") or (),
        store=_helper_store(store),
        updated_by=task_scope(context),
    )


def task_grant(context: Mapping[str, Any], *, all_map_indices: bool = False) -> Grant:
    """A token's grant for the running task instance: its task state, inlets, outlets."""
    return _server_tokens.task_grant(task_scope(context), inlets=context.get("inlets"),
        outlets=context.get("outlets"), all_map_indices=all_map_indices)  # fmt: skip


def mint_task_token(
    context: Mapping[str, Any], *, private_key: object = None, ttl: timedelta = _TTL,
    issuer: str | None = None, all_map_indices: bool = False,
) -> str:  # fmt: skip
    """A token for :func:`task_grant`: ``private_key``, or $STATESTORE_TOKEN_PRIVATE_KEY_FILE."""
    grant = task_grant(context, all_map_indices=all_map_indices)
    return _server_tokens.mint_task_token(grant, private_key=private_key, ttl=ttl, issuer=issuer)


def server_store(
    context: Mapping[str, Any], *, url: str | None = None, private_key: object = None,
    ttl: timedelta = _TTL, issuer: str | None = None, all_map_indices: bool = False,
) -> StateStore:  # fmt: skip
    """A new store on the state server at ``url`` (default: Airflow's ``[statestore]
    server_url``, else ``[client] url``) with the token of :func:`mint_task_token`; pass it
    to :func:`task_state` / :func:`asset_states` as ``store=``, and close it."""
    grant = task_grant(context, all_map_indices=all_map_indices)
    url = url or _airflow_conf().get(*SERVER_URL_OPTION, fallback=None) or None
    return _server_tokens.server_store(grant, url=url, private_key=private_key, ttl=ttl,
                                       issuer=issuer)  # fmt: skip
