"""Versions, provenance, stable map keys, and indexes for listing keys in order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Existing rows get version 1 and no ``updated_by``; no row is rewritten. On PostgreSQL
the key columns move to the "C" collation so keys list in code point order, as they
already do on MySQL (``utf8mb4_bin``) and SQLite (BINARY).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from statestore.metastore.types import ExactString, KeyString

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_STATE_TABLES = ("statestore_task_state", "statestore_asset_state")


def _nopad_collation(bind: sa.engine.Connection) -> str:
    mariadb = getattr(bind.dialect, "is_mariadb", False)  # set by the MySQL dialects
    return "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"


def upgrade() -> None:
    # Plain ADD COLUMN on every dialect (SQLite has it too): no table is rebuilt.
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    for table in _STATE_TABLES:
        op.add_column(
            table,
            sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("1")),
        )
        op.add_column(table, sa.Column("updated_by", ExactString(250), nullable=True))
        if postgresql:
            op.alter_column(table, "key", type_=KeyString(512), existing_nullable=False)
        elif bind.dialect.name in ("mysql", "mariadb"):
            # utf8mb4_bin pads with spaces when comparing ("k" = "k "), which breaks key
            # order; a NO PAD binary collation compares exactly, as lookups always did.
            op.execute(
                f"ALTER TABLE {table} MODIFY `key` VARCHAR(512) CHARACTER SET utf8mb4 "
                f"COLLATE {_nopad_collation(bind)} NOT NULL"
            )
    op.add_column("statestore_task_state", sa.Column("map_key", ExactString(250), nullable=True))
    op.drop_index(
        "ix_statestore_task_state_task_digest_map_index", table_name="statestore_task_state"
    )
    op.create_index(
        "ix_statestore_task_state_task_digest_map_index_key",
        "statestore_task_state",
        ["task_digest", "map_index", "key"],
    )
    op.create_index(
        "ix_statestore_asset_state_asset_id_key", "statestore_asset_state", ["asset_id", "key"]
    )


def downgrade() -> None:
    op.drop_index("ix_statestore_asset_state_asset_id_key", table_name="statestore_asset_state")
    op.drop_index(
        "ix_statestore_task_state_task_digest_map_index_key", table_name="statestore_task_state"
    )
    op.create_index(
        "ix_statestore_task_state_task_digest_map_index",
        "statestore_task_state",
        ["task_digest", "map_index"],
    )
    for table in _STATE_TABLES:
        with op.batch_alter_table(table) as batch:
            if op.get_bind().dialect.name == "postgresql" or op.get_bind().dialect.name in (
                "mysql",
                "mariadb",
            ):
                batch.alter_column("key", type_=ExactString(512), existing_nullable=False)
            if table == "statestore_task_state":
                batch.drop_column("map_key")
            batch.drop_column("updated_by")
            batch.drop_column("version")
