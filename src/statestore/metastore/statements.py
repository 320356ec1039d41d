"""Every SQL statement the backend runs, built once per dialect.

Writes are the dialect's native single-statement upsert (``ON CONFLICT DO UPDATE`` on
PostgreSQL and SQLite, ``ON DUPLICATE KEY UPDATE`` on MySQL): never insert-then-update,
which races. Asset writes fold the registry check into the same statement with
``INSERT … SELECT … WHERE active``, so a steady-state write is still one round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Insert,
    Select,
    and_,
    bindparam,
    delete,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from statestore.metastore.tables import asset, asset_state, task_state

__all__ = ["AssetLookup", "Statements", "build_statements"]

AssetLookup = str
"""Which registry column an ``AssetScope`` is resolved by: ``name``, ``uri`` or ``id``."""

_LOOKUPS: tuple[AssetLookup, ...] = ("name", "uri", "id")


def _not_expired(expires_at: Any) -> ColumnElement[bool]:
    # Expired means expires_at < now (retention.is_expired); "now" comes from Python so
    # every dialect and the in-memory backend agree to the microsecond.
    return or_(expires_at.is_(None), expires_at >= bindparam("now", type_=expires_at.type))


def _asset_match(lookup: AssetLookup) -> ColumnElement[bool]:
    match: ColumnElement[bool]
    if lookup == "name":
        match = asset.c.name_digest == bindparam("asset_digest", type_=asset.c.name_digest.type)
    elif lookup == "uri":
        match = asset.c.uri_digest == bindparam("asset_digest", type_=asset.c.uri_digest.type)
    else:
        match = asset.c.id == bindparam("asset_id", type_=asset.c.id.type)
    return match


def _insert_for(dialect: str) -> Callable[..., Any]:
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect, mysql.insert)


def _upsert(dialect: str, stmt: Any, conflict: list[Any], columns: list[str]) -> Insert:
    if dialect == "mysql":
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns})  # type: ignore[no-any-return]
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=conflict, set_={c: stmt.excluded[c] for c in columns}
    )


@dataclass(frozen=True)
class Statements:
    """The compiled-once statements of one dialect."""

    task_get: Select[Any]
    task_set: Insert
    task_delete: Delete
    task_clear_one: Delete
    task_clear_all: Delete
    asset_get: dict[AssetLookup, Select[Any]]
    asset_set: dict[AssetLookup, Insert]
    asset_delete: dict[AssetLookup, Delete]
    asset_clear: dict[AssetLookup, Delete]
    asset_find: dict[AssetLookup, Select[Any]]
    asset_register: Insert


def _asset_ids(lookup: AssetLookup) -> Select[Any]:
    return select(asset.c.id).where(_asset_match(lookup))


def build_statements(dialect: str) -> Statements:
    """Build the statement set for ``sqlite``, ``postgresql`` or ``mysql``."""
    insert = _insert_for(dialect)
    ts = task_state.c
    task_set = _upsert(
        dialect,
        insert(task_state),
        [ts.row_id],
        ["value", "expires_at", "updated_at"],
    )

    def asset_set_for(lookup: AssetLookup) -> Insert:
        source = select(
            asset.c.id,
            bindparam("key_digest", type_=asset_state.c.key_digest.type),
            bindparam("key", type_=asset_state.c.key.type),
            bindparam("value", type_=asset_state.c.value.type),
            bindparam("expires_at", type_=asset_state.c.expires_at.type),
            bindparam("updated_at", type_=asset_state.c.updated_at.type),
        ).where(_asset_match(lookup), asset.c.active == true())
        stmt = insert(asset_state).from_select(
            ["asset_id", "key_digest", "key", "value", "expires_at", "updated_at"], source
        )
        upsert = _upsert(
            dialect,
            stmt,
            [asset_state.c.asset_id, asset_state.c.key_digest],
            ["value", "expires_at", "updated_at"],
        )
        # rowcount 0 is how the caller learns the asset is unknown or inactive.
        return upsert.execution_options(preserve_rowcount=True)

    key_match = asset_state.c.key_digest == bindparam("key_digest")
    register = insert(asset)
    register = (
        register.prefix_with("IGNORE")
        if dialect == "mysql"
        else register.on_conflict_do_nothing(index_elements=[asset.c.name_digest])
    )
    return Statements(
        task_get=select(ts.value).where(
            ts.row_id == bindparam("row_id"), _not_expired(ts.expires_at)
        ),
        task_set=task_set,
        task_delete=delete(task_state).where(ts.row_id == bindparam("row_id")),
        task_clear_one=delete(task_state).where(
            and_(ts.task_digest == bindparam("task_digest"), ts.map_index == bindparam("map_index"))
        ),
        task_clear_all=delete(task_state).where(ts.task_digest == bindparam("task_digest")),
        asset_get={
            lookup: select(asset_state.c.value)
            .select_from(asset_state.join(asset, asset.c.id == asset_state.c.asset_id))
            .where(_asset_match(lookup), key_match, _not_expired(asset_state.c.expires_at))
            for lookup in _LOOKUPS
        },
        asset_set={lookup: asset_set_for(lookup) for lookup in _LOOKUPS},
        asset_delete={
            lookup: delete(asset_state).where(
                key_match, asset_state.c.asset_id.in_(_asset_ids(lookup))
            )
            for lookup in _LOOKUPS
        },
        asset_clear={
            lookup: delete(asset_state).where(asset_state.c.asset_id.in_(_asset_ids(lookup)))
            for lookup in _LOOKUPS
        },
        asset_find={
            lookup: select(asset.c.id, asset.c.active).where(_asset_match(lookup))
            for lookup in _LOOKUPS
        },
        asset_register=register,
    )
