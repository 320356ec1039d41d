"""The statements of a batch: one statement for ``n`` keys, built once per dialect and size.

A batch is one statement, so one round trip on PostgreSQL and MySQL and one implicit
transaction on SQLite: a multi-row upsert (``INSERT … VALUES (…), (…) ON CONFLICT`` /
``ON DUPLICATE KEY UPDATE``), a read or a delete with ``IN (…)``. Every key has bind
parameters of its own (``row_id_7``, ``value_7``), everything the keys share (scope,
``updated_at``, ``updated_by``, ``expires_at``) is bound once, so a write of ``n`` keys
binds ``3n`` values plus a few -- under the 65535 parameters of PostgreSQL and MySQL for
``max_batch_keys`` up to 5000.

An asset write folds the registry check in, as a single write does: the rows are
``SELECT asset.id, v.* FROM asset JOIN (the n keys) AS v WHERE <asset> AND active``, so
an unknown or inactive asset inserts no row (rowcount 0) and the caller's slow path
registers it (once, for the whole batch) or says why not. The ``n`` keys are a
``UNION ALL`` of one-row selects; SQLite allows at most 500 terms in one compound
select, so there they are nested in groups.

On PostgreSQL a batch is one statement whatever its size: the keys are bound as three
arrays (``unnest(%(row_ids)s::BYTEA[])``, ``row_id = ANY(…)``), because psycopg parses a
long query's placeholders again on every call and a prepared statement is per text.

Statements are cached per ``(dialect, kind, lookup, n)`` in a bounded cache: a program
that uses many different batch sizes compiles each size once, and at most
:data:`CACHED_SIZES` stay alive.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from sqlalchemy import (
    Executable,
    FromClause,
    LargeBinary,
    Select,
    Text,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql

from statestore.metastore.statements import (
    _WRITTEN,
    _asset_id_is,
    _asset_match,
    _insert_for,
    _item_columns,
    _not_expired,
    _upsert,
)
from statestore.metastore.tables import asset, asset_state, task_state

__all__ = ["ARRAYS", "CACHED_SIZES", "BatchKind", "batch_statement"]

ARRAYS = frozenset({"row_ids", "key_digests", "keys", "values"})
"""The array parameters of PostgreSQL's batches: lists of bytes and str, which psycopg
and asyncpg bind as they are (no per-element processing wanted)."""

BatchKind = Literal["get", "get_items", "set", "delete"]

CACHED_SIZES = 64
"""Batch statements kept alive at once (over every dialect, kind and size)."""

_SQLITE_COMPOUND = 400
"""Terms per compound select on SQLite (its limit is 500)."""

TASK_SHARED = ("task_digest", "dag_id", "run_id", "task_id", "map_index", "map_key")
"""The scope columns a task write binds once for every key."""

_STAMPS = ("updated_at", "updated_by", "expires_at")


def _bind(table: Any, column: str, name: str | None = None) -> Any:
    return bindparam(name or column, type_=table.c[column].type)


def _task_set(dialect: str, n: int) -> Executable:
    """``INSERT … SELECT`` from the ``n`` keys as a derived table: the scope and stamps
    are bound once (a multi-row ``VALUES`` would repeat them in every row, 13 positional
    parameters per key -- past SQLite's 32766 at 2521 keys)."""
    ts = task_state
    v = _key_rows(dialect, n, ts, "row_id")
    source = (
        select(
            v.c.row_id,
            *(_bind(ts, c) for c in TASK_SHARED),
            v.c.key,
            v.c.value,
            literal_column("1"),
            *(_bind(ts, c) for c in _STAMPS),
        )
        .select_from(v)
        .where(true())  # SQLite: a WHERE tells its parser ON CONFLICT is not a join's ON
    )
    columns = ["row_id", *TASK_SHARED, "key", "value", "version", *_STAMPS]
    return _upsert(dialect, _insert_for(dialect)(ts).from_select(columns, source), ts)


def _key_rows(
    dialect: str, n: int, table: Any = asset_state, id_column: str = "key_digest"
) -> FromClause:
    """The ``n`` keys of a write as a derived table ``v`` (id digest, key, value)."""

    def one(i: int) -> Select[Any]:
        # A cast: MySQL would otherwise type the derived column as text in the
        # connection's charset and mangle the digest's bytes.
        digest = cast(_bind(table, id_column, f"{id_column}_{i}"), table.c[id_column].type)
        return select(
            digest.label(id_column),
            _bind(table, "key", f"key_{i}").label("key"),
            _bind(table, "value", f"value_{i}").label("value"),
        )

    selects = [one(i) for i in range(n)]
    if n == 1:
        return selects[0].subquery("v")
    if dialect != "sqlite" or n <= _SQLITE_COMPOUND:
        return union_all(*selects).subquery("v")
    groups = [
        union_all(*selects[start : start + _SQLITE_COMPOUND]).subquery(f"g{start}")
        for start in range(0, n, _SQLITE_COMPOUND)
    ]
    return union_all(*(select(*group.c) for group in groups)).subquery("v")


def _asset_set(dialect: str, lookup: str, n: int) -> Executable:
    ast = asset_state
    v = _pg_rows() if dialect == "postgresql" else _key_rows(dialect, n)
    source = (
        select(
            asset.c.id,
            v.c.key_digest,
            v.c.key,
            literal_column("1"),
            v.c.value,
            *(_bind(ast, c) for c in _STAMPS),
        )
        .select_from(asset.join(v, true()))
        .where(_asset_match(lookup), asset.c.active == true())
    )
    columns = ["asset_id", "key_digest", "key", "version", "value", *_STAMPS]
    assert set(columns[4:]) == set(_WRITTEN)
    stmt = _insert_for(dialect)(ast).from_select(columns, source)
    # rowcount 0 is how the caller learns the asset is unknown or inactive.
    return _upsert(dialect, stmt, ast).execution_options(preserve_rowcount=True)


def _task_read(kind: BatchKind, n: int) -> Executable:
    ts = task_state
    columns = [ts.c.key, *(_item_columns(ts) if kind == "get_items" else [ts.c.value])]
    ids = ts.c.row_id.in_([_bind(ts, "row_id", f"row_id_{i}") for i in range(n)])
    return select(*columns).where(ids, _not_expired(ts.c.expires_at))


def _asset_read(kind: BatchKind, lookup: str, n: int) -> Executable:
    ast = asset_state
    columns = [ast.c.key, *(_item_columns(ast) if kind == "get_items" else [ast.c.value])]
    digests = ast.c.key_digest.in_([_bind(ast, "key_digest", f"key_digest_{i}") for i in range(n)])
    return (
        select(*columns)
        .select_from(ast.join(asset, asset.c.id == ast.c.asset_id))
        .where(_asset_match(lookup), digests, _not_expired(ast.c.expires_at))
    )


# -- PostgreSQL: one statement for every size, the keys bound as arrays ----------------------
#
# psycopg parses a query's placeholders on every call unless the query is short (its
# cache skips long ones), and a server-side prepared statement is per query text: so on
# PostgreSQL a batch binds three arrays instead of 3n values, and the text never changes.

_BYTES = postgresql.ARRAY(LargeBinary())
_TEXTS = postgresql.ARRAY(Text())


def _array(name: str, of: Any) -> Any:
    return bindparam(name, type_=of)


def _pg_task_set() -> Executable:
    ts = task_state
    source = select(
        func.unnest(_array("row_ids", _BYTES)),
        *(_bind(ts, c) for c in TASK_SHARED),
        func.unnest(_array("keys", _TEXTS)),
        func.unnest(_array("values", _TEXTS)),
        literal_column("1"),
        *(_bind(ts, c) for c in _STAMPS),
    )
    columns = ["row_id", *TASK_SHARED, "key", "value", "version", *_STAMPS]
    stmt = postgresql.insert(ts).from_select(columns, source)
    return _upsert("postgresql", stmt, ts)


def _pg_rows() -> FromClause:
    return (
        select(
            func.unnest(_array("key_digests", _BYTES)).label("key_digest"),
            func.unnest(_array("keys", _TEXTS)).label("key"),
            func.unnest(_array("values", _TEXTS)).label("value"),
        )
    ).subquery("v")


def _pg_statement(kind: BatchKind, lookup: str | None) -> Executable:
    if lookup is None:
        ts = task_state
        ids = ts.c.row_id == func.any(_array("row_ids", _BYTES))
        if kind == "set":
            return _pg_task_set()
        if kind == "delete":
            return delete(ts).where(ids)
        columns = [ts.c.key, *(_item_columns(ts) if kind == "get_items" else [ts.c.value])]
        return select(*columns).where(ids, _not_expired(ts.c.expires_at))
    ast = asset_state
    digests = ast.c.key_digest == func.any(_array("key_digests", _BYTES))
    if kind == "set":
        return _asset_set("postgresql", lookup, 0)
    if kind == "delete":
        return delete(ast).where(digests, _asset_id_is(lookup))
    columns = [ast.c.key, *(_item_columns(ast) if kind == "get_items" else [ast.c.value])]
    return (
        select(*columns)
        .select_from(ast.join(asset, asset.c.id == ast.c.asset_id))
        .where(_asset_match(lookup), digests, _not_expired(ast.c.expires_at))
    )


@functools.lru_cache(maxsize=CACHED_SIZES)
def batch_statement(  # noqa: PLR0911 - one flat dispatch
    dialect: str, kind: BatchKind, lookup: str | None, n: int
) -> Executable:
    """The statement of a batch of ``n`` keys (``lookup``: how an asset scope is found,
    ``None`` for task state). On PostgreSQL ``n`` is ignored: one statement fits all."""
    if dialect == "postgresql":
        return _pg_statement(kind, lookup)
    if lookup is None:
        if kind == "set":
            return _task_set(dialect, n)
        if kind == "delete":
            ts = task_state
            ids = [_bind(ts, "row_id", f"row_id_{i}") for i in range(n)]
            return delete(ts).where(ts.c.row_id.in_(ids))
        return _task_read(kind, n)
    if kind == "set":
        return _asset_set(dialect, lookup, n)
    if kind == "delete":
        ast = asset_state
        digests = [_bind(ast, "key_digest", f"key_digest_{i}") for i in range(n)]
        return delete(ast).where(ast.c.key_digest.in_(digests), _asset_id_is(lookup))
    return _asset_read(kind, lookup, n)
