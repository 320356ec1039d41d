"""Prefect 3: task state and asset state for code running inside Prefect flows and tasks.

Inside a task, :func:`task_state` derives the statestore scope from ``prefect.runtime``,
so task code never builds a :class:`~statestore.TaskScope` itself::

    from prefect import task
    from statestore.integrations.prefect import task_state

    @task(retries=3)
    def run_job() -> None:
        state = task_state()
        job_id = state.get("job_id")  # set by an earlier, failed attempt?

The scope is ``TaskScope(flow name, flow run id, task name)``: what Prefect keeps
*stable* across retries. Observed with Prefect 3.9: a task retry (``@task(retries=N)``)
keeps the task run id and counts ``task_run.run_count`` up; a flow retry
(``@flow(retries=N)``) keeps the flow run id but re-runs the flow function, which
creates *new* task runs with new ids and random run names. A task run id in the scope
would lose the state at every flow retry; the task name within the flow run does not.

Prefect has no map index at runtime (its dynamic keys are random per call), so the
instances of a mapped task -- or of a task called several times in one flow run -- are
told apart by their input: ``task_state(map_over="partition")`` sets ``map_key`` to
:func:`~statestore.map_key_for` of that parameter's value, which a re-expansion in any
order finds again. ``map_key=`` takes a key of your own instead.

With a state server (``statestore serve``), :func:`server_store` gives the task run a
store with a token for itself only: its task state, the assets it materializes
(``@materialize``) to write, its ``asset_deps`` and upstream assets to read.

Importing this module imports Prefect; ``import statestore`` never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from prefect.runtime import flow_run, task_run

from statestore.exceptions import InvalidScopeError, InvalidTypeError
from statestore.integrations import _server_tokens
from statestore.scopes import MAX_ID_LENGTH, AssetScope, TaskScope, map_key_for, to_asset_scope
from statestore.store import default_store

if TYPE_CHECKING:
    from statestore.accessors import AssetStateAccessor, TaskStateAccessor
    from statestore.store import StateStore
    from statestore.wire import Grant

__all__ = [
    "asset_scope",
    "asset_state",
    "mint_task_token",
    "server_store",
    "task_assets",
    "task_grant",
    "task_scope",
    "task_state",
    "writer",
]


def _required(value: object, what: str) -> str:
    if not value:
        raise InvalidScopeError(
            f"no Prefect {what}: task_state() must be called inside a Prefect task run "
            "(outside one, build a TaskScope and use StateStore.task_state)"
        )
    return str(value)


def _key_from_parameters(names: str | Sequence[str]) -> str:
    parameters: dict[str, Any] = dict(task_run.parameters)
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted or not all(isinstance(name, str) for name in wanted):
        raise InvalidTypeError("map_over must be a parameter name or a non-empty list of them")
    missing = [name for name in wanted if name not in parameters]
    if missing:
        raise InvalidScopeError(
            f"map_over names {missing}, not parameters of this task run "
            f"(it has {sorted(parameters)})"
        )
    # One name: the key of the value alone, so it equals map_key_for(item) computed
    # anywhere else (the CLI, a cleanup script); several: of a name -> value mapping.
    if isinstance(names, str):
        return map_key_for(parameters[names])
    return map_key_for({name: parameters[name] for name in wanted})


def task_scope(
    *,
    map_over: str | Sequence[str] | None = None,
    map_key: str | None = None,
    task_id: str | None = None,
) -> TaskScope:
    """The :class:`~statestore.TaskScope` of the Prefect task run this code runs in.

    ``TaskScope(flow name, flow run id, task_id or the task's name, map_key=...)``.

    - ``map_over``: the parameter (or parameters) whose value tells this call apart from
      the task's other calls in the same flow run -- the mapped argument of ``.map``;
      the key is :func:`~statestore.map_key_for` of its value, stable across retries and
      independent of the order of the mapped input.
    - ``map_key``: a key of your own instead (at most 250 characters).
    - ``task_id``: instead of the task's name, for two tasks that share a name.

    Raises ``InvalidScopeError`` outside a Prefect task run.
    """
    if map_over is not None and map_key is not None:
        raise InvalidTypeError("pass map_over or map_key, not both")
    dag_id = _required(flow_run.flow_name, "flow run")
    run_id = _required(flow_run.id, "flow run")
    name = task_id if task_id is not None else _required(task_run.task_name, "task run")
    _required(task_run.id, "task run")
    if map_over is not None:
        map_key = _key_from_parameters(map_over)
    return TaskScope(dag_id, run_id, name, map_key=map_key)


def writer() -> str | None:
    """Who writes, for ``updated_by``: the flow run and task run names and the attempt.

    E.g. ``"prefect:nightly/bouncing-fox/run_job-3a1#2"``. Names, not ids, so the CLI's
    listings read like the Prefect UI; ``None`` outside a flow run.
    """
    flow_run_name = flow_run.name
    if not flow_run_name:
        return None
    text = f"prefect:{flow_run.flow_name}/{flow_run_name}"
    if task_run.id:
        text += f"/{task_run.name}#{task_run.run_count}"
    return text[:MAX_ID_LENGTH]


def task_state(
    *,
    map_over: str | Sequence[str] | None = None,
    map_key: str | None = None,
    task_id: str | None = None,
    store: StateStore | None = None,
) -> TaskStateAccessor:
    """The task state of the current Prefect task run, on ``store`` or the default store.

    The accessor has sync and async methods (``get``/``aget``, ``set``/``aset``, ...);
    building it does no I/O, so async tasks call it directly and ``await`` the ``a*``
    methods. Arguments as for :func:`task_scope`.
    """
    scope = task_scope(map_over=map_over, map_key=map_key, task_id=task_id)
    return (store or default_store()).task_state(scope, updated_by=writer())


def asset_scope(asset: object) -> AssetScope:
    """An asset reference as an :class:`~statestore.AssetScope`.

    A Prefect ``Asset`` is named by its ``key`` (``"s3://bucket/orders"``): the key is
    what identifies an asset in Prefect, so it is the statestore asset name too. A
    name ``str``, an ``AssetScope`` or an object with ``.name``/``.uri`` pass through.
    """
    if isinstance(asset, (str, AssetScope)):
        return asset if isinstance(asset, AssetScope) else AssetScope(name=asset)
    key = getattr(asset, "key", None)
    if isinstance(key, str) and getattr(asset, "name", None) is None:
        return AssetScope(name=key)
    return to_asset_scope(asset)


def asset_state(asset: object, *, store: StateStore | None = None) -> AssetStateAccessor:
    """The state of one asset (a name, a Prefect ``Asset``, ...), e.g. a watermark that
    carries over from one flow run to the next; writes record :func:`writer`.

    Usable in a task or in the flow function itself.
    """
    return (store or default_store()).asset_state(asset_scope(asset), updated_by=writer())


def task_assets() -> tuple[list[Any], list[Any]]:
    """``(inlets, outlets)`` of the running task: its ``asset_deps`` and the assets its
    upstream tasks materialized, and the assets it materializes (``@materialize``)."""
    from prefect.context import AssetContext, TaskRunContext  # noqa: PLC0415 - in a task run

    context = TaskRunContext.get()
    if context is None:
        return [], []
    inlets = list(getattr(context.task, "asset_deps", None) or ())
    outlets = list(getattr(context.task, "assets", None) or ())
    assets = AssetContext.get()
    if assets is not None:
        inlets.extend(assets.upstream_assets)
    return inlets, outlets


def task_grant(
    *,
    reads: Iterable[object] = (),
    writes: Iterable[object] = (),
    map_over: str | Sequence[str] | None = None,
    map_key: str | None = None,
    task_id: str | None = None,
) -> Grant:
    """What a token for the running task run allows: the task state :func:`task_scope`
    names (same arguments), the assets :func:`task_assets` finds, and ``reads`` /
    ``writes`` (names or ``Asset`` objects) besides."""
    scope = task_scope(map_over=map_over, map_key=map_key, task_id=task_id)
    inlets, outlets = task_assets()
    return _server_tokens.task_grant(
        scope,
        inlets=[*inlets, *reads],
        outlets=[*outlets, *writes],
        name_of=lambda asset: str(asset_scope(asset).name),
    )


def mint_task_token(
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
        task_grant(**grant), private_key=private_key, ttl=ttl, issuer=issuer
    )


def server_store(
    *,
    url: str | None = None,
    private_key: object = None,
    ttl: timedelta = _server_tokens.DEFAULT_TOKEN_TTL,
    issuer: str | None = None,
    **grant: Any,
) -> StateStore:
    """A new store on the state server at ``url`` (default ``[client] url``) with the
    token of :func:`mint_task_token`; pass it as ``store=`` to :func:`task_state` (the
    same ``map_over``/``map_key``) and :func:`asset_state`, and close it. Anything
    outside the grant is refused (403)."""
    return _server_tokens.server_store(
        task_grant(**grant),
        url=url,
        private_key=private_key,
        ttl=ttl,
        issuer=issuer,
        updated_by=writer(),
    )
