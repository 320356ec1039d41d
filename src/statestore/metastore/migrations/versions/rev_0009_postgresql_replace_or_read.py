"""PostgreSQL: ``update()``'s compare-and-set answers the row it lost to.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

On PostgreSQL only (SQLite and MariaDB are unchanged). With many processes on one key,
most of ``update()``'s statements are lost races, and a lost race cost two statements:
the conditional write that matched nothing, then a read of what the key holds now.
``statestore_asset_replace_or_read`` and ``statestore_task_replace_or_read`` make the
same conditional write as 0007's and 0008's replace functions and, when it matches no
row, read the live row in the same call -- a volatile function's statements each see
what has been committed when they start, so that read is as fresh as a separate one.
They answer no row when they wrote; one row, the live key's text and version, when they
did not; one row with a ``NULL`` value and version 0 when no live key is there
(docs/performance.md, "One hot key"). Functions only; no table or row changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_ASSET = """
CREATE FUNCTION statestore_asset_replace_or_read(
    p_asset_id integer, p_key_digest bytea, p_if_version bigint, p_value text,
    p_expires_at timestamptz, p_updated_at timestamptz, p_updated_by varchar,
    p_now timestamptz
) RETURNS TABLE (live_value text, live_version bigint) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE statestore_asset_state AS s
    SET value = p_value, expires_at = p_expires_at, updated_at = p_updated_at,
        version = s.version + 1, updated_by = p_updated_by
    WHERE s.asset_id = (
            SELECT a.id FROM statestore_asset AS a WHERE a.id = p_asset_id AND a.active
        )
      AND s.key_digest = p_key_digest AND s.version = p_if_version
      AND (s.expires_at IS NULL OR s.expires_at >= p_now);
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT s.value, s.version FROM statestore_asset_state AS s
    WHERE s.asset_id = p_asset_id AND s.key_digest = p_key_digest
      AND (s.expires_at IS NULL OR s.expires_at >= p_now);
    IF NOT FOUND THEN
        live_value := NULL;
        live_version := 0;
        RETURN NEXT;
    END IF;
END
$$
"""

_TASK = """
CREATE FUNCTION statestore_task_replace_or_read(
    p_row_id bytea, p_if_version bigint, p_value text, p_expires_at timestamptz,
    p_updated_at timestamptz, p_updated_by varchar, p_now timestamptz
) RETURNS TABLE (live_value text, live_version bigint) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE statestore_task_state AS s
    SET value = p_value, expires_at = p_expires_at, updated_at = p_updated_at,
        version = s.version + 1, updated_by = p_updated_by
    WHERE s.row_id = p_row_id AND s.version = p_if_version
      AND (s.expires_at IS NULL OR s.expires_at >= p_now);
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT s.value, s.version FROM statestore_task_state AS s
    WHERE s.row_id = p_row_id AND (s.expires_at IS NULL OR s.expires_at >= p_now);
    IF NOT FOUND THEN
        live_value := NULL;
        live_version := 0;
        RETURN NEXT;
    END IF;
END
$$
"""

_DROPS = (
    "DROP FUNCTION statestore_task_replace_or_read"
    "(bytea, bigint, text, timestamptz, timestamptz, varchar, timestamptz)",
    "DROP FUNCTION statestore_asset_replace_or_read"
    "(integer, bytea, bigint, text, timestamptz, timestamptz, varchar, timestamptz)",
)


def _on_postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    if not _on_postgresql():
        return
    op.execute(_ASSET)
    op.execute(_TASK)


def downgrade() -> None:
    if not _on_postgresql():
        return
    for drop in _DROPS:
        op.execute(drop)
