"""Pure planning of each backend operation: which statement, with which parameters.

Shared by the sync and async execution paths of ``MetastoreStateBackend`` so that they
cannot drift apart; nothing here touches a connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Executable

from statestore.exceptions import (
    InactiveAssetError,
    InvalidScopeError,
    UnknownAssetError,
    UnsupportedOperationError,
    VersionConflictError,
)
from statestore.items import StoredItem, conflict, unread_conflict, unread_conflicts_allowed
from statestore.metastore import asset_ids
from statestore.metastore.digests import key_digest, ref_digest, task_digest, task_row_id
from statestore.metastore.hotpath import Fetch
from statestore.metastore.statements import AssetLookup, Statements
from statestore.scopes import AssetScope, StateScope, TaskScope

__all__ = [
    "CHECKED",
    "FETCH",
    "Plan",
    "check_host_cas",
    "check_writable",
    "clear",
    "delete",
    "find_asset",
    "get",
    "get_item",
    "get_writable_item",
    "list_",
    "lost",
    "raise_if_lost",
    "raise_unread",
    "register_asset",
    "result_of",
    "returned",
    "set_",
    "uri_taken",
]


@dataclass(slots=True)
class Plan:
    """One statement to execute and how to read its result.

    Not frozen, though never changed: a frozen dataclass sets each field through
    ``object.__setattr__``, ~8k instructions per plan and so per operation (callgrind),
    a quarter of what a SQLite get costs above the raw driver.
    """

    kind: Literal["read", "read_row", "read_rows", "write", "asset_write", "cas", "asset_cas"]
    statement: Executable
    params: dict[str, Any]
    scope: StateScope
    if_version: int | None = None
    key: str | None = None
    resolves: bool = False
    """A read that also returns the asset's registry id first (see ``asset_ids``)."""


def _task_ids(scope: TaskScope) -> dict[str, Any]:
    # What finds one task's rows: its digest, or on SQLite its ids (statements._task_is).
    return {"task_digest": task_digest(scope), "dag_id": scope.dag_id,
            "run_id": scope.run_id, "task_id": scope.task_id}  # fmt: skip


def _asset_lookup(scope: AssetScope) -> tuple[AssetLookup, dict[str, Any]]:
    # An asset is identified by name; a uri-only scope resolves through the registry.
    if scope.name is not None:
        return "name", {"asset_digest": ref_digest(scope.name)}
    if scope.uri is not None:
        return "uri", {"asset_digest": ref_digest(scope.uri)}
    return "id", {"asset_id": scope.asset_id}


def get(
    stmts: Statements, scope: StateScope, key: str, now: datetime,
    asset_id: int | None = None, *, resolve: bool = False,
) -> Plan:  # fmt: skip
    """Read one key; expired rows are filtered out by the statement itself.

    For an asset: ``asset_id`` (resolved before) reads the state table alone;
    ``resolve`` reads the asset's id along with the key (``asset_ids``)."""
    if isinstance(scope, TaskScope):
        return Plan("read", stmts.task_get, {"row_id": task_row_id(scope, key), "now": now}, scope)
    return _asset_read("read", stmts.asset_get, scope, key, now, asset_id, resolve)


def get_item(
    stmts: Statements, scope: StateScope, key: str, now: datetime,
    asset_id: int | None = None, *, resolve: bool = False,
) -> Plan:  # fmt: skip
    """Read one live row with its version and provenance (``asset_id``, ``resolve``:
    as :func:`get`)."""
    if isinstance(scope, TaskScope):
        params = {"row_id": task_row_id(scope, key), "now": now}
        return Plan("read_row", stmts.task_get_item, params, scope)
    return _asset_read("read_row", stmts.asset_get_item, scope, key, now, asset_id, resolve)


def _asset_read(
    kind: Literal["read", "read_row"], by_lookup: dict[AssetLookup, Any], scope: AssetScope,
    key: str, now: datetime, asset_id: int | None, resolve: bool,
) -> Plan:  # fmt: skip
    whole = kind == "read_row"
    if asset_id is not None:  # the registry is not consulted: one single-table lookup
        params = {"asset_id": asset_id, "key_digest": key_digest(key), "now": now}
        return Plan(kind, asset_ids.DIRECT_GET_ITEM if whole else asset_ids.DIRECT_GET,
                    params, scope)  # fmt: skip
    if resolve and asset_ids.lookup_of(scope) is not None:
        lookup, params = asset_ids.resolving_params(scope, key_digest(key))
        params["now"] = now
        statements = asset_ids.RESOLVE_GET_ITEM if whole else asset_ids.RESOLVE_GET
        return Plan(kind, statements[lookup], params, scope, resolves=True)
    lookup, params = _asset_lookup(scope)
    params.update(key_digest=key_digest(key), now=now)
    return Plan(kind, by_lookup[lookup], params, scope)


def get_writable_item(stmts: Statements, plan: Plan) -> Plan:
    """Read the live row that a failed asset compare-and-set ``plan`` lost to, if its
    asset is active (else nothing: then the registry slow path says what is wrong)."""
    assert isinstance(plan.scope, AssetScope)
    assert plan.key is not None
    lookup, params = _asset_lookup(plan.scope)
    params.update(key_digest=key_digest(plan.key), now=plan.params["now"])
    return Plan("read_row", stmts.asset_get_writable[lookup], params, plan.scope)


def raise_unread(plan: Plan) -> None:
    """Inside ``update``, report a failed compare-and-set on an existing version at once:
    ``update`` reads the key after its pause, and asks for the exact reason when that
    read shows no other write. A create-only write still goes on: the asset may need
    registering."""
    if plan.if_version and unread_conflicts_allowed():
        assert plan.key is not None
        raise unread_conflict(plan.scope, plan.key, plan.if_version)


def raise_if_lost(plan: Plan, live: StoredItem | None) -> None:
    """Raise the conflict of a compare-and-set that matched no row, if ``live`` (the row
    of an active asset read just after) shows a plain lost race: another version.

    With no live row (absent key, inactive or unknown asset) or the expected version
    back again, the caller goes on to the registry slow path, which tells them apart.
    """
    if live is not None and live.version != plan.if_version:
        raise lost(plan, live)


def list_(
    stmts: Statements,
    scope: StateScope,
    *,
    prefix: str,
    after: str,
    limit: int,
    values: bool,
    now: datetime,
) -> Plan:
    """One page of live keys (and values) in key order."""
    page = {"prefix": prefix, "prefix_length": len(prefix), "after": after, "limit": limit,
            "now": now}  # fmt: skip
    if isinstance(scope, TaskScope):
        params = {**_task_ids(scope), **page}
        if scope.map_key is not None:
            params["map_key"] = scope.map_key
            return Plan("read_rows", stmts.task_list_key[values], params, scope)
        params["map_index"] = scope.map_index
        return Plan("read_rows", stmts.task_list[values], params, scope)
    lookup, params = _asset_lookup(scope)
    return Plan("read_rows", stmts.asset_list[lookup, values], {**params, **page}, scope)


def set_(
    stmts: Statements,
    scope: StateScope,
    key: str,
    value: str,
    expires_at: datetime | None,
    now: datetime,
    *,
    updated_by: str | None = None,
    if_version: int | None = None,
) -> Plan:
    """Upsert one key; with ``if_version``, a compare-and-set (0: create only)."""
    written = {"value": value, "updated_at": now, "updated_by": updated_by,
               "expires_at": expires_at}  # fmt: skip
    if isinstance(scope, TaskScope):
        if if_version:
            params = {"w_row_id": task_row_id(scope, key), "if_version": if_version, "now": now}
            return Plan("cas", stmts.task_replace, {**params, **written}, scope, if_version, key)
        params = {
            "row_id": task_row_id(scope, key),
            "task_digest": task_digest(scope),
            "dag_id": scope.dag_id,
            "run_id": scope.run_id,
            "task_id": scope.task_id,
            "map_index": scope.map_index,
            "map_key": scope.map_key,
            "key": key,
            "version": 1,
            **written,
        }
        if if_version == 0:
            return Plan("cas", stmts.task_create, {**params, "now": now}, scope, 0, key)
        return Plan("write", stmts.task_set, params, scope)
    lookup, params = _asset_lookup(scope)
    if if_version:  # an UPDATE: its WHERE parameters are named apart from its columns
        where = {f"w_{name}" if name == "asset_id" else name: v for name, v in params.items()}
        where.update(w_key_digest=key_digest(key), if_version=if_version, now=now, **written)
        return Plan("asset_cas", stmts.asset_replace[lookup], where, scope, if_version, key)
    params.update(key_digest=key_digest(key), key=key, version=1, **written)
    if if_version == 0:
        params["now"] = now
        return Plan("asset_cas", stmts.asset_create[lookup], params, scope, 0, key)
    return Plan("asset_write", stmts.asset_set[lookup], params, scope)


def delete(stmts: Statements, scope: StateScope, key: str) -> Plan:
    """Delete one key (no-op when absent)."""
    if isinstance(scope, TaskScope):
        return Plan("write", stmts.task_delete, {"row_id": task_row_id(scope, key)}, scope)
    lookup, params = _asset_lookup(scope)
    params["key_digest"] = key_digest(key)
    return Plan("write", stmts.asset_delete[lookup], params, scope)


def clear(stmts: Statements, scope: StateScope, all_map_indices: bool) -> Plan:
    """Delete every key of a scope (of every map index with ``all_map_indices``)."""
    if isinstance(scope, TaskScope):
        params = _task_ids(scope)
        if all_map_indices:
            return Plan("write", stmts.task_clear_all, params, scope)
        if scope.map_key is not None:
            params["map_key"] = scope.map_key
            return Plan("write", stmts.task_clear_key, params, scope)
        params["map_index"] = scope.map_index
        return Plan("write", stmts.task_clear_one, params, scope)
    lookup, params = _asset_lookup(scope)
    return Plan("write", stmts.asset_clear[lookup], params, scope)


def find_asset(stmts: Statements, scope: StateScope) -> tuple[Executable, dict[str, Any]]:
    """The registry row (id, active) of an asset scope."""
    assert isinstance(scope, AssetScope)
    lookup, params = _asset_lookup(scope)
    return stmts.asset_find[lookup], params


def register_asset(
    stmts: Statements, scope: StateScope, auto_register: bool, now: datetime
) -> Plan:
    """Register an unknown asset, or refuse with ``UnknownAssetError``."""
    assert isinstance(scope, AssetScope)
    name = scope.name if scope.name is not None else scope.uri
    if not auto_register or name is None:
        raise UnknownAssetError(
            f"{scope.describe()} is not registered"
            + ("" if name is None else " and [state_store] auto_register_assets is off")
        )
    params = {
        "name": name,
        "name_digest": ref_digest(name),
        "uri": scope.uri,
        "uri_digest": None if scope.uri is None else ref_digest(scope.uri),
        "active": True,
        "created_at": now,
        "updated_at": now,
    }
    return Plan("write", stmts.asset_register, params, scope)


def check_writable(scope: StateScope, found: Any) -> None:
    """Raise the right error for an asset write that matched no active asset."""
    assert isinstance(scope, AssetScope)
    if found is None:
        raise (
            uri_taken(scope)
            if scope.uri is not None
            else UnknownAssetError(f"{scope.describe()} is not registered")
        )
    if not found.active:
        raise InactiveAssetError(
            f"{scope.describe()} is inactive; its state can be read and cleared, not written"
        )


def uri_taken(scope: StateScope) -> InvalidScopeError:
    """The error for registering an asset whose uri already belongs to another name."""
    assert isinstance(scope, AssetScope)
    return InvalidScopeError(
        f"cannot register {scope.describe()}: its uri {scope.uri!r} already belongs to "
        "another asset"
    )


def result_of(plan: Plan, result: Any) -> Any:
    """A SQLAlchemy result as the hot path returns it: scalar, row tuple or rowcount."""
    if plan.kind == "read":
        return result.scalar()
    if plan.kind == "read_row":
        row = result.first()
        return None if row is None else tuple(row)
    if plan.kind == "read_rows":
        return [tuple(row) for row in result]
    return result.rowcount


def returned(plan: Plan, result: Any) -> Any:
    """What the backend method returns for a successful ``result`` of ``plan``."""
    if plan.kind == "read":
        return result
    if plan.kind == "read_row":
        return None if result is None else StoredItem(*result)
    if plan.kind == "read_rows":
        return [row if len(row) == 2 else (row[0], None) for row in result]
    return None


def lost(plan: Plan, current: StoredItem | None) -> VersionConflictError:
    """The error for a versioned write whose statement matched no row."""
    assert plan.key is not None
    assert plan.if_version is not None
    version = 0 if current is None else current.version
    return conflict(plan.scope, plan.key, plan.if_version, version, current)


CHECKED = frozenset({"asset_write", "cas", "asset_cas"})
"""Plans whose rowcount 0 means something went wrong (see the backend's ``_finish``)."""

FETCH: dict[str, Fetch] = {"read": "scalar", "read_row": "row", "read_rows": "rows"}
"""What the hot path fetches for each kind of plan (``rowcount`` otherwise)."""


def check_host_cas(plan: Plan, family: str) -> None:
    """Refuse a create-only write through a host's MySQL engine, which cannot tell it lost.

    MySQL reports a conditional upsert that changed nothing as one "found" row under
    SQLAlchemy's CLIENT_FOUND_ROWS; statestore's own engines ask for changed rows.
    """
    if plan.if_version == 0 and family == "mysql":
        raise UnsupportedOperationError(
            "set(..., if_version=0) needs statestore's own engine on MySQL/MariaDB, "
            "not a host engine (MetastoreStateBackend(url) instead of engine=...)"
        )
