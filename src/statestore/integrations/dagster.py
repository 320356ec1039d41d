"""Dagster integration: a resource that hands ops and assets their state accessors.

Give a job or ``Definitions`` a :class:`StateStoreResource` and ask it, inside an op or
asset, for ``task_state(context)`` or ``asset_state(context)``; the scope comes from the
execution context, so op code names nothing::

    @op
    def submit(context: OpExecutionContext, statestore: StateStoreResource) -> str:
        state = statestore.task_state(context)
        job_id = state.get("job_id") or cluster.submit()
        state.set("job_id", job_id)
        ...

How a Dagster execution maps onto a :class:`~statestore.TaskScope`, and why:

- ``dag_id`` is the job name: ops of different jobs never share state.
- ``run_id`` is the **root** run id. Dagster gives a re-execution of a failed run a new
  run id, and records the run it re-executes as its parent and the first run of the
  chain as its root. The whole point of task state is that the attempt after a crash
  finds what the crashed one left (an external job id, a checkpoint), so every run of
  one re-execution chain shares one ``run_id``: the root's. Op retries (``RetryPolicy``)
  keep their run id anyway. ``resume_across_reexecutions=False`` uses each run's own id.
- ``task_id`` is the op's node handle (``graph.op`` inside graphs): unique in the job,
  even when one op definition is used twice under aliases.
- a dynamic-output mapping key becomes the stable ``map_key``: Dagster identifies mapped
  steps by their (user-chosen) key, not by a position, which is exactly what ``map_key``
  is for. A key longer than a ``map_key`` may be is replaced by its digest.

Asset state is keyed by the asset key's user string, ``"/".join(asset_key.path)``, the
form Dagster itself shows (``AssetKey(["raw", "orders"])`` -> ``"raw/orders"``).

Each write records who made it (``updated_by``): the actual Dagster run id and step
key, so the history shows which attempt of a re-execution chain wrote a value.

With a state server (``statestore serve``), :func:`server_store` gives a step a store
that holds no database credentials, only a token for this step: its own task state,
the assets it materializes to write and their upstream dependencies to read.

Import this module explicitly; ``import statestore`` never imports Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dagster import AssetExecutionContext, AssetKey, ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from statestore.accessors import AssetStateAccessor, TaskStateAccessor
from statestore.exceptions import InvalidTypeError, InvalidValueError
from statestore.integrations import _server_tokens
from statestore.scopes import MAX_ID_LENGTH, TaskScope, map_key_for
from statestore.store import StateStore, default_store

if TYPE_CHECKING:
    from statestore.wire import Grant

__all__ = [
    "StateStoreResource",
    "asset_name_for",
    "mint_task_token",
    "run_id_for_context",
    "server_store",
    "task_grant",
    "task_scope_for",
    "writer_for",
]

_DIGEST_PREFIX = "sha256:"


def _op_context(context: Any) -> Any:
    # An asset's context wraps an op context and deprecates the op-level properties
    # (run_id, op_handle, get_mapping_key) on itself; read them from the op context.
    if isinstance(context, AssetExecutionContext):
        return context.op_execution_context
    return context


def run_id_for_context(context: Any, *, resume_across_reexecutions: bool = True) -> str:
    """The ``run_id`` task state lives under: the root run of a re-execution chain.

    A first run is its own root. Re-executing it (from failure, or all steps) creates a
    run whose ``root_run_id`` names the first one, so the re-execution resumes the task
    state that the failed run wrote. With ``resume_across_reexecutions=False``, each run
    keeps its own id (and starts from empty task state).
    """
    context = _op_context(context)
    run_id = str(context.run_id)
    if not resume_across_reexecutions:
        return run_id
    root = getattr(context.run, "root_run_id", None)
    return str(root) if root else run_id


def _map_key(mapping_key: str | None) -> str | None:
    # Dagster mapping keys are [A-Za-z0-9_]+ with no length limit; keep them readable
    # when they fit the column, else use a stable digest of the key.
    if mapping_key is None or len(mapping_key) <= MAX_ID_LENGTH:
        return mapping_key
    return _DIGEST_PREFIX + map_key_for(mapping_key)


def task_scope_for(context: Any, *, resume_across_reexecutions: bool = True) -> TaskScope:
    """The :class:`~statestore.TaskScope` of an op or asset execution context.

    Job name, (root) run id, the op's node handle, and the dynamic mapping key if the
    step is mapped; ``map_index`` stays ``-1`` since Dagster has no positions.
    """
    context = _op_context(context)
    return TaskScope(
        dag_id=str(context.job_name),
        run_id=run_id_for_context(context, resume_across_reexecutions=resume_across_reexecutions),
        task_id=str(context.op_handle),
        map_key=_map_key(context.get_mapping_key()),
    )


def writer_for(context: Any) -> str:
    """``updated_by`` for writes from this step: the actual run id and the step key."""
    context = _op_context(context)
    name = f"dagster:{context.run_id}:{context.get_step_execution_context().step.key}"
    return name[:MAX_ID_LENGTH]


def asset_name_for(asset: Any) -> str:
    """The statestore asset name of a Dagster asset reference: ``"/".join(key.path)``.

    Accepts an ``AssetKey``, anything with a ``.key`` that is one (``AssetsDefinition``,
    ``AssetSpec``, ``AssetOut``...), a path as a list/tuple of str, or a str, which is
    taken as the name itself (so ``"raw/orders"`` and ``AssetKey(["raw", "orders"])`` are
    the same asset).
    """
    if isinstance(asset, str):
        return asset
    key = getattr(asset, "key", asset)
    if isinstance(key, AssetKey):
        return str(key.to_user_string())
    if isinstance(asset, Sequence) and asset and all(isinstance(p, str) for p in asset):
        return str(AssetKey(list(asset)).to_user_string())
    raise InvalidTypeError(
        "an asset must be an AssetKey, an object with an AssetKey .key, a path of str, "
        f"or a name str, not {type(asset).__name__}"
    )


class StateStoreResource(ConfigurableResource):
    """A statestore for ops and assets; scopes are derived from the execution context.

    ``url``: the database (any SQLAlchemy URL). Without it the resource uses the
    process's :func:`~statestore.default_store`, configured like any statestore
    (``STATESTORE__DATABASE__URL``, ``statestore.cfg``), and leaves it open. With it,
    the resource opens its own store when a run (or, under the multiprocess executor,
    a step process) initializes it and closes it on teardown, so no connection outlives
    the run.
    """

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state database; default: statestore's configuration.",
    )
    resume_across_reexecutions: bool = Field(
        default=True,
        description=(
            "Re-executions of a run share its task state (run_id = the root run id); "
            "False gives each run its own."
        ),
    )

    _store: StateStore | None = PrivateAttr(default=None)
    _owned: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Open the store once per run (per step process under multiprocessing)."""
        if self.url is not None:
            self._store, self._owned = StateStore(self.url), True

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close the store this resource opened; the default store stays the process's.

        Dagster runs every ``async def`` op of a run (or step process) on one event loop
        that it closes after teardown; async connections belong to that loop, so they are
        closed on it while it still runs, not left for the garbage collector.
        """
        store, self._store = self._store, None
        if not self._owned or store is None:
            return
        self._owned = False
        loop = getattr(context, "event_loop", None)
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(store.aclose())  # this loop's engine, then the rest
        else:
            store.close()

    @property
    def store(self) -> StateStore:
        """The :class:`~statestore.StateStore` behind the accessors (for maintenance,
        ``on_task_success``, ...)."""
        if self._store is None:
            if self.url is not None:
                # Used outside a Dagster run (a unit test calling the op directly, say):
                # open lazily, owned, closed by teardown if one ever comes.
                self._store, self._owned = StateStore(self.url), True
            else:
                self._store = default_store()
        return self._store

    def task_scope(self, context: Any) -> TaskScope:
        """The :class:`~statestore.TaskScope` of this op or asset execution."""
        return task_scope_for(context, resume_across_reexecutions=self.resume_across_reexecutions)

    def task_state(self, context: Any) -> TaskStateAccessor:
        """This step's task state: survives op retries and re-executions of the run.

        The accessor has sync and async methods (``get``/``aget``, ...), so it serves
        ``async def`` ops too.
        """
        return self.store.task_state(self.task_scope(context), updated_by=writer_for(context))

    def asset_state(self, context: Any, asset: Any = None) -> AssetStateAccessor:
        """The state of an asset, kept across runs (watermarks, cursors).

        ``asset`` defaults to the asset this step materializes; a step of several assets
        (or an op) names one: an ``AssetKey``, an ``AssetsDefinition``/``AssetSpec``, a
        path or a name.
        """
        if asset is None:
            keys = list(getattr(context, "selected_asset_keys", None) or ())
            if len(keys) != 1:
                raise InvalidValueError(
                    f"step {_op_context(context).op_handle} materializes {len(keys)} "
                    "assets; name one: statestore.asset_state(context, AssetKey([...]))"
                )
            asset = keys[0]
        return self.store.asset_state(asset_name_for(asset), updated_by=writer_for(context))


def _upstream_keys(context: Any, materialized: Sequence[Any]) -> list[Any]:
    """The asset keys the materialized assets depend on (their inputs and ``deps``)."""
    op_context = _op_context(context)
    if not materialized or not getattr(op_context, "has_assets_def", False):
        return []
    asset_deps = op_context.assets_def.asset_deps
    return [dep for key in materialized for dep in asset_deps.get(key, ())]


def task_grant(
    context: Any,
    *,
    reads: Iterable[Any] = (),
    writes: Iterable[Any] = (),
    resume_across_reexecutions: bool = True,
) -> Grant:
    """What a token for this step allows: the task state :func:`task_scope_for` names,
    the assets the step materializes to write, their upstream assets to read, and
    ``reads`` / ``writes`` (any :func:`asset_name_for` reference) besides."""
    materialized = list(getattr(context, "selected_asset_keys", None) or ())
    return _server_tokens.task_grant(
        task_scope_for(context, resume_across_reexecutions=resume_across_reexecutions),
        inlets=[*_upstream_keys(context, materialized), *reads],
        outlets=[*materialized, *writes],
        name_of=asset_name_for,
    )


def mint_task_token(
    context: Any,
    *,
    private_key: object = None,
    ttl: timedelta = _server_tokens.DEFAULT_TOKEN_TTL,
    issuer: str | None = None,
    **grant: Any,
) -> str:
    """A signed token for :func:`task_grant` (``grant``: its keyword arguments), with
    ``private_key`` or the key the file ``$STATESTORE_TOKEN_PRIVATE_KEY_FILE`` holds
    (never logged)."""
    return _server_tokens.mint_task_token(
        task_grant(context, **grant), private_key=private_key, ttl=ttl, issuer=issuer
    )


def server_store(
    context: Any,
    *,
    url: str | None = None,
    private_key: object = None,
    ttl: timedelta = _server_tokens.DEFAULT_TOKEN_TTL,
    issuer: str | None = None,
    **grant: Any,
) -> StateStore:
    """A new store on the state server at ``url`` (default ``[client] url``) with the
    token of :func:`mint_task_token`; the caller closes it. Its accessors are the
    resource's: ``store.task_state(task_scope_for(context))``,
    ``store.asset_state(asset_name_for(key))``. Anything outside the grant is 403.
    """
    return _server_tokens.server_store(
        task_grant(context, **grant),
        url=url,
        private_key=private_key,
        ttl=ttl,
        issuer=issuer,
        updated_by=writer_for(context),
    )
