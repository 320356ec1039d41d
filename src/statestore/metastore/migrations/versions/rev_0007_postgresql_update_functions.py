"""PostgreSQL: ``update()``'s read and compare-and-set of an asset key as two functions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

On PostgreSQL only (SQLite and MariaDB are unchanged). statestore sends no named
prepared statements by default (they collide behind a transaction pooler), so the server
parses and plans every statement again; an asset's compare-and-set, whose active-asset
check reads a second table, spent about a third of its server time on that. A PL/pgSQL
function keeps its statements' plans for the life of its server connection, whoever the
client on it is, so behind PgBouncer as well: ``statestore_asset_read`` and
``statestore_asset_replace`` run the same read and the same conditional write as the
plain statements (docs/performance.md, "One hot key"). Functions only; no table or row
changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_READ = """
CREATE FUNCTION statestore_asset_read(
    p_asset_id integer, p_key_digest bytea, p_now timestamptz
) RETURNS TABLE (value text, version bigint) LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT s.value, s.version FROM statestore_asset_state AS s
    WHERE s.asset_id = p_asset_id AND s.key_digest = p_key_digest
      AND (s.expires_at IS NULL OR s.expires_at >= p_now);
END
$$
"""

_REPLACE = """
CREATE FUNCTION statestore_asset_replace(
    p_asset_id integer, p_key_digest bytea, p_if_version bigint, p_value text,
    p_expires_at timestamptz, p_updated_at timestamptz, p_updated_by varchar,
    p_now timestamptz
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    replaced integer;
BEGIN
    UPDATE statestore_asset_state AS s
    SET value = p_value, expires_at = p_expires_at, updated_at = p_updated_at,
        version = s.version + 1, updated_by = p_updated_by
    WHERE s.asset_id = (
            SELECT a.id FROM statestore_asset AS a WHERE a.id = p_asset_id AND a.active
        )
      AND s.key_digest = p_key_digest AND s.version = p_if_version
      AND (s.expires_at IS NULL OR s.expires_at >= p_now);
    GET DIAGNOSTICS replaced = ROW_COUNT;
    RETURN replaced;
END
$$
"""

_DROPS = (
    "DROP FUNCTION statestore_asset_replace"
    "(integer, bytea, bigint, text, timestamptz, timestamptz, varchar, timestamptz)",
    "DROP FUNCTION statestore_asset_read(integer, bytea, timestamptz)",
)


def _on_postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    if not _on_postgresql():
        return
    op.execute(_READ)
    op.execute(_REPLACE)


def downgrade() -> None:
    if not _on_postgresql():
        return
    for drop in _DROPS:
        op.execute(drop)
