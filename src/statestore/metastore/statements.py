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
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from statestore.metastore.tables import (
    asset,
    asset_state,
    task_rows_by_ids,
    task_state,
    write_receipt,
)

__all__ = [
    "AssetLookup",
    "ReceiptedWrites",
    "Statements",
    "build_receipted_writes",
    "build_statements",
]

AssetLookup = str
"""Which registry column an ``AssetScope`` is resolved by: ``name``, ``uri`` or ``id``."""

_LOOKUPS: tuple[AssetLookup, ...] = ("name", "uri", "id")


def _not_expired(expires_at: Any) -> ColumnElement[bool]:
    # Expired means expires_at < now (retention.is_expired); "now" comes from Python so
    # every dialect and the in-memory backend agree to the microsecond.
    return or_(expires_at.is_(None), expires_at >= bindparam("now", type_=expires_at.type))


def _asset_match(lookup: AssetLookup, id_param: str = "asset_id") -> ColumnElement[bool]:
    match: ColumnElement[bool]
    if lookup == "name":
        match = asset.c.name_digest == bindparam("asset_digest", type_=asset.c.name_digest.type)
    elif lookup == "uri":
        match = asset.c.uri_digest == bindparam("asset_digest", type_=asset.c.uri_digest.type)
    else:
        match = asset.c.id == bindparam(id_param, type_=asset.c.id.type)
    return match


def _insert_for(dialect: str) -> Callable[..., Any]:
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect, mysql.insert)


_WRITTEN = ["value", "updated_at", "updated_by", "expires_at"]
"""Columns a write replaces; ``version`` goes up by one. ``expires_at`` comes last: on
MySQL, later assignments see earlier ones, and the create-only condition reads it."""


def _next_version(table: Table) -> ColumnElement[Any]:
    # A literal, not a bound 1: the hot path binds only the plan's own parameters.
    return table.c.version + literal_column("1")


def _upsert(
    dialect: str, stmt: Any, table: Table, *, only_if_expired: bool = False,
    guard: ColumnElement[bool] | None = None,
) -> Insert:  # fmt: skip
    """``stmt`` (an INSERT) that, on a key conflict, overwrites the row -- or, with
    ``only_if_expired``, only an expired row, leaving a live one untouched (rowcount 0:
    how a create-only write learns it lost). ``guard``: a further condition of the
    overwrite (PostgreSQL and SQLite; see :func:`build_receipted_writes`)."""
    conflict = list(table.primary_key.columns)
    now = bindparam("now", type_=table.c.expires_at.type)
    expired = and_(table.c.expires_at.is_not(None), table.c.expires_at < now)
    if guard is not None:
        expired = and_(expired, guard)
    if dialect == "mysql":
        new = stmt.inserted
        if not only_if_expired:
            pairs = [("version", _next_version(table)), *((c, new[c]) for c in _WRITTEN)]
        else:  # no conditional upsert: every column keeps its value unless expired
            pairs = [("version", case((expired, _next_version(table)), else_=table.c.version))]
            pairs += [(c, case((expired, new[c]), else_=table.c[c])) for c in _WRITTEN]
        return stmt.on_duplicate_key_update(pairs)  # type: ignore[no-any-return]
    set_ = {"version": _next_version(table), **{c: stmt.excluded[c] for c in _WRITTEN}}
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=conflict, set_=set_, where=expired if only_if_expired else None
    )


def _replace(table: Table, match: ColumnElement[bool]) -> Update:
    """Overwrite the live row at version ``if_version``; rowcount 0 when it is not."""
    values = {c: bindparam(c, type_=table.c[c].type) for c in _WRITTEN}
    return (
        update(table)
        .where(match, table.c.version == bindparam("if_version"), _not_expired(table.c.expires_at))
        .values(version=_next_version(table), **values)
    )


def _asset_insert(
    dialect: str, lookup: AssetLookup, *, only_if_expired: bool = False,
    guard: ColumnElement[bool] | None = None,
) -> Insert:  # fmt: skip
    """An asset write: ``INSERT … SELECT`` from the registry row of an active asset."""
    columns = ["key_digest", "key", "version", *_WRITTEN]
    source = select(
        asset.c.id, *(bindparam(c, type_=asset_state.c[c].type) for c in columns)
    ).where(_asset_match(lookup), asset.c.active == true())
    if guard is not None:
        source = source.where(guard)
    stmt = _insert_for(dialect)(asset_state).from_select(["asset_id", *columns], source)
    upsert = _upsert(dialect, stmt, asset_state, only_if_expired=only_if_expired, guard=guard)
    # rowcount 0 is how the caller learns the asset is unknown or inactive.
    return upsert.execution_options(preserve_rowcount=True)


def _asset_replace(lookup: AssetLookup) -> Update:
    """An asset compare-and-set, by the registry row of an active asset."""
    # An UPDATE reserves its table's column names for SET: "w_" names for WHERE.
    match = _asset_match(lookup, id_param="w_asset_id")
    active = select(asset.c.id).where(match, asset.c.active == true())
    key = asset_state.c.key_digest == bindparam("w_key_digest")
    # "= (scalar subquery)", not "IN (subquery)": MariaDB runs the latter as a
    # dependent subquery over a scan of the whole index, locking every row it
    # scans -- every compare-and-set of every asset then queues behind one another.
    # The registry's lookups are unique, so the subquery yields at most one id.
    return _replace(asset_state, and_(asset_state.c.asset_id == active.scalar_subquery(), key))


def _task_create(dialect: str, guard: ColumnElement[bool] | None = None) -> Insert:
    """A create-only task write: insert, or overwrite an expired row only."""
    stmt: Any = _insert_for(dialect)(task_state)
    if guard is not None:  # INSERT … SELECT, so that the guard can stop the insert too
        columns = [c.name for c in task_state.columns]
        source = select(*(bindparam(c, type_=task_state.c[c].type) for c in columns))
        stmt = stmt.from_select(columns, source.where(guard))
    # rowcount 0 is how a create-only write learns it lost; through SQLAlchemy (a host's
    # engine or session) an INSERT reports it only when asked to keep it (else -1).
    return _upsert(dialect, stmt, task_state, only_if_expired=True, guard=guard).execution_options(
        preserve_rowcount=True
    )


def _listing(table: Table, values: bool) -> Select[Any]:
    """Keys (and values) after ``after`` with ``prefix``, in key order, ``limit`` of them.

    ``substr(key, 1, len(prefix)) = prefix`` is exact on every dialect (SQLite's LIKE
    folds case); ``key >= prefix`` lets the index start at the prefix.
    """
    key = table.c.key
    prefix = bindparam("prefix", type_=key.type)
    columns = [key, table.c.value] if values else [key]
    return (
        select(*columns)
        .where(
            key > bindparam("after", type_=key.type),
            key >= prefix,
            func.substr(key, literal_column("1"), bindparam("prefix_length", type_=Integer()))
            == prefix,
            _not_expired(table.c.expires_at),
        )
        .order_by(key)
        .limit(bindparam("limit", type_=Integer()))
        .offset(literal_column("0"))  # else SQLite binds an OFFSET of its own
    )


def _item_columns(table: Table) -> list[Any]:
    return [table.c.value, table.c.version, table.c.updated_at, table.c.updated_by,
            table.c.expires_at]  # fmt: skip


@dataclass(frozen=True)
class Statements:
    """The compiled-once statements of one dialect."""

    task_get: Select[Any]
    task_get_item: Select[Any]
    task_set: Insert
    task_create: Insert
    task_replace: Update
    task_delete: Delete
    task_clear_one: Delete
    task_clear_all: Delete
    task_clear_key: Delete
    asset_get: dict[AssetLookup, Select[Any]]
    asset_get_item: dict[AssetLookup, Select[Any]]
    asset_get_writable: dict[AssetLookup, Select[Any]]
    asset_set: dict[AssetLookup, Insert]
    asset_create: dict[AssetLookup, Insert]
    asset_replace: dict[AssetLookup, Update]
    asset_delete: dict[AssetLookup, Delete]
    asset_clear: dict[AssetLookup, Delete]
    asset_find: dict[AssetLookup, Select[Any]]
    asset_register: Insert
    task_list: dict[bool, Select[Any]]
    task_list_key: dict[bool, Select[Any]]
    asset_list: dict[tuple[AssetLookup, bool], Select[Any]]


def _task_is(dialect: str) -> ColumnElement[bool]:
    """Every row of one task (all its map indices): by its digest, or on SQLite by its
    ids, which lead the one task-instance index there (migration 0006)."""
    if task_rows_by_ids(dialect):
        return and_(
            task_state.c.dag_id == bindparam("dag_id"),
            task_state.c.run_id == bindparam("run_id"),
            task_state.c.task_id == bindparam("task_id"),
        )
    return task_state.c.task_digest == bindparam("task_digest")


def _asset_id_is(lookup: AssetLookup) -> ColumnElement[bool]:
    """``asset_id = (SELECT id …)``: the registry's lookups are unique, so at most one
    id. Not ``IN (SELECT …)``, which MariaDB runs as a dependent subquery over a scan
    of the whole table, locking every row it scans (``EXPLAIN``: type ALL)."""
    return (
        asset_state.c.asset_id == select(asset.c.id).where(_asset_match(lookup)).scalar_subquery()
    )


def build_statements(dialect: str) -> Statements:
    """Build the statement set for ``sqlite``, ``postgresql`` or ``mysql``."""
    insert = _insert_for(dialect)
    ts = task_state.c
    key_match = asset_state.c.key_digest == bindparam("key_digest")
    task_set = _upsert(dialect, insert(task_state), task_state)
    task_is = _task_is(dialect)

    def task_read(columns: list[Any]) -> Select[Any]:
        """The live row of one key: its value, or its value with metadata."""
        return select(*columns).where(ts.row_id == bindparam("row_id"), _not_expired(ts.expires_at))

    def asset_read(columns: list[Any], lookup: AssetLookup) -> Select[Any]:
        return (
            select(*columns)
            .select_from(asset_state.join(asset, asset.c.id == asset_state.c.asset_id))
            .where(_asset_match(lookup), key_match, _not_expired(asset_state.c.expires_at))
        )

    register = insert(asset)
    register = (
        register.prefix_with("IGNORE")
        if dialect == "mysql"
        else register.on_conflict_do_nothing(index_elements=[asset.c.name_digest])
    )
    return Statements(
        task_get=task_read([ts.value]),
        task_get_item=task_read(_item_columns(task_state)),
        task_set=task_set,
        task_create=_task_create(dialect),
        task_replace=_replace(task_state, ts.row_id == bindparam("w_row_id")),
        task_delete=delete(task_state).where(ts.row_id == bindparam("row_id")),
        task_clear_one=delete(task_state).where(
            task_is,
            ts.map_index == bindparam("map_index"),
            ts.map_key.is_(None),
        ),
        task_clear_key=delete(task_state).where(task_is, ts.map_key == bindparam("map_key")),
        task_clear_all=delete(task_state).where(task_is),
        asset_get={lookup: asset_read([asset_state.c.value], lookup) for lookup in _LOOKUPS},
        asset_get_item={
            lookup: asset_read(_item_columns(asset_state), lookup) for lookup in _LOOKUPS
        },
        # The live row only while its asset is active: found after a compare-and-set
        # that matched nothing, it proves a plain lost race (no registry work to do).
        asset_get_writable={
            lookup: asset_read(_item_columns(asset_state), lookup).where(asset.c.active == true())
            for lookup in _LOOKUPS
        },
        asset_set={lookup: _asset_insert(dialect, lookup) for lookup in _LOOKUPS},
        asset_create={
            lookup: _asset_insert(dialect, lookup, only_if_expired=True) for lookup in _LOOKUPS
        },
        asset_replace={lookup: _asset_replace(lookup) for lookup in _LOOKUPS},
        asset_delete={
            lookup: delete(asset_state).where(key_match, _asset_id_is(lookup))
            for lookup in _LOOKUPS
        },
        asset_clear={
            lookup: delete(asset_state).where(_asset_id_is(lookup)) for lookup in _LOOKUPS
        },
        asset_find={
            lookup: select(asset.c.id, asset.c.active).where(_asset_match(lookup))
            for lookup in _LOOKUPS
        },
        asset_register=register,
        task_list={
            values: _listing(task_state, values).where(
                task_is,
                ts.map_index == bindparam("map_index"),
                ts.map_key.is_(None),
            )
            for values in (True, False)
        },
        task_list_key={
            values: _listing(task_state, values).where(task_is, ts.map_key == bindparam("map_key"))
            for values in (True, False)
        },
        asset_list={
            (lookup, values): _listing(asset_state, values).where(_asset_id_is(lookup))
            for lookup in _LOOKUPS
            for values in (True, False)
        },
    )


@dataclass(frozen=True)
class ReceiptedWrites:
    """PostgreSQL's conditional writes that commit their receipt in the same statement.

    ``WITH written AS (<the write> AND no receipt yet RETURNING 1) INSERT INTO
    statestore_write_receipt SELECT … FROM written``: rowcount 1 when the write was
    applied now, with its receipt; 0 when it matched nothing or its receipt was
    already there (a copy; the caller looks the receipt up to tell them apart). A copy
    that arrives while the original is in flight waits on the row (or key) the original
    holds, then finds the version moved. One round trip, as a plain compare-and-set.
    """

    task_replace: Insert
    task_create: Insert
    asset_replace: dict[AssetLookup, Insert]
    asset_create: dict[AssetLookup, Insert]
    receipt_found: Select[Any]


def build_receipted_writes() -> ReceiptedWrites:
    """The PostgreSQL statements of :class:`ReceiptedWrites`."""
    receipt_id = bindparam("receipt_id", type_=write_receipt.c.receipt_id.type)
    guard = ~exists().where(write_receipt.c.receipt_id == receipt_id)

    def receipted(write: Any) -> Insert:
        written = write.returning(literal_column("1")).cte("written")
        created_at = bindparam("created_at", type_=write_receipt.c.created_at.type)
        source = select(receipt_id, created_at).select_from(written)
        stmt = postgresql.insert(write_receipt).from_select(["receipt_id", "created_at"], source)
        return stmt.on_conflict_do_nothing().execution_options(preserve_rowcount=True)

    task_match = task_state.c.row_id == bindparam("w_row_id")
    return ReceiptedWrites(
        task_replace=receipted(_replace(task_state, task_match).where(guard)),
        task_create=receipted(_task_create("postgresql", guard)),
        asset_replace={
            lookup: receipted(_asset_replace(lookup).where(guard)) for lookup in _LOOKUPS
        },
        asset_create={
            lookup: receipted(
                _asset_insert("postgresql", lookup, only_if_expired=True, guard=guard)
            )
            for lookup in _LOOKUPS
        },
        receipt_found=select(literal_column("1")).where(write_receipt.c.receipt_id == receipt_id),
    )
