"""PostgreSQL: a task key's get, set and compare-and-set, and an asset key's set, as functions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

On PostgreSQL only (SQLite and MariaDB are unchanged). As in revision 0007: statestore
sends no named prepared statements by default (they collide behind a transaction
pooler), so the server parses and plans every statement again, and for an upsert that
planning (the conflict target's inference over the table's indexes) cost about a third
of the statement: 299 µs unprepared against 192 µs prepared, 236 µs through a PL/pgSQL
function, whose plans live as long as its server connection, whoever the client
(docs/performance.md). ``statestore_task_read``, ``statestore_task_write``,
``statestore_task_replace`` and ``statestore_asset_write`` run exactly the plain
statements' read and writes, and answer the value read or the rows written. Functions
only; no table or row changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_TASK_READ = """
CREATE FUNCTION statestore_task_read(p_row_id bytea, p_now timestamptz)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    found text;
BEGIN
    SELECT s.value INTO found FROM statestore_task_state AS s
    WHERE s.row_id = p_row_id AND (s.expires_at IS NULL OR s.expires_at >= p_now);
    RETURN found;
END
$$
"""

_TASK_WRITE = """
CREATE FUNCTION statestore_task_write(
    p_row_id bytea, p_task_digest bytea, p_dag_id varchar, p_run_id varchar,
    p_task_id varchar, p_map_index integer, p_map_key varchar, p_key varchar,
    p_value text, p_expires_at timestamptz, p_updated_at timestamptz, p_version bigint,
    p_updated_by varchar
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
    INSERT INTO statestore_task_state AS s (
        row_id, task_digest, dag_id, run_id, task_id, map_index, map_key, key, value,
        expires_at, updated_at, version, updated_by
    ) VALUES (
        p_row_id, p_task_digest, p_dag_id, p_run_id, p_task_id, p_map_index, p_map_key,
        p_key, p_value, p_expires_at, p_updated_at, p_version, p_updated_by
    ) ON CONFLICT (row_id) DO UPDATE SET
        value = excluded.value, expires_at = excluded.expires_at,
        updated_at = excluded.updated_at, version = s.version + 1,
        updated_by = excluded.updated_by;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$
"""

_TASK_REPLACE = """
CREATE FUNCTION statestore_task_replace(
    p_row_id bytea, p_if_version bigint, p_value text, p_expires_at timestamptz,
    p_updated_at timestamptz, p_updated_by varchar, p_now timestamptz
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    replaced integer;
BEGIN
    UPDATE statestore_task_state AS s
    SET value = p_value, expires_at = p_expires_at, updated_at = p_updated_at,
        version = s.version + 1, updated_by = p_updated_by
    WHERE s.row_id = p_row_id AND s.version = p_if_version
      AND (s.expires_at IS NULL OR s.expires_at >= p_now);
    GET DIAGNOSTICS replaced = ROW_COUNT;
    RETURN replaced;
END
$$
"""

_ASSET_WRITE = """
CREATE FUNCTION statestore_asset_write(
    p_asset_digest bytea, p_key_digest bytea, p_key varchar, p_version bigint,
    p_value text, p_updated_at timestamptz, p_updated_by varchar, p_expires_at timestamptz
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
    INSERT INTO statestore_asset_state AS s (
        asset_id, key_digest, key, version, value, updated_at, updated_by, expires_at
    ) SELECT a.id, p_key_digest, p_key, p_version, p_value, p_updated_at, p_updated_by,
             p_expires_at
      FROM statestore_asset AS a WHERE a.name_digest = p_asset_digest AND a.active
    ON CONFLICT (asset_id, key_digest) DO UPDATE SET
        value = excluded.value, expires_at = excluded.expires_at,
        updated_at = excluded.updated_at, version = s.version + 1,
        updated_by = excluded.updated_by;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$
"""

_DROPS = (
    "DROP FUNCTION statestore_asset_write"
    "(bytea, bytea, varchar, bigint, text, timestamptz, varchar, timestamptz)",
    "DROP FUNCTION statestore_task_replace"
    "(bytea, bigint, text, timestamptz, timestamptz, varchar, timestamptz)",
    "DROP FUNCTION statestore_task_write(bytea, bytea, varchar, varchar, varchar, integer,"
    " varchar, varchar, text, timestamptz, timestamptz, bigint, varchar)",
    "DROP FUNCTION statestore_task_read(bytea, timestamptz)",
)


def _on_postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    if not _on_postgresql():
        return
    for create in (_TASK_READ, _TASK_WRITE, _TASK_REPLACE, _ASSET_WRITE):
        op.execute(create)


def downgrade() -> None:
    if not _on_postgresql():
        return
    for drop in _DROPS:
        op.execute(drop)
