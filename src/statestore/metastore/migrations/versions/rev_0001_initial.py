"""Initial schema: task state, asset registry, asset state.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from statestore.metastore.types import Digest, ExactString, JsonText, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_MYSQL_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    op.create_table(
        "statestore_task_state",
        sa.Column("row_id", Digest(), nullable=False),
        sa.Column("task_digest", Digest(), nullable=False),
        sa.Column("dag_id", ExactString(250), nullable=False),
        sa.Column("run_id", ExactString(250), nullable=False),
        sa.Column("task_id", ExactString(250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("key", ExactString(512), nullable=False),
        sa.Column("value", JsonText(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("row_id", name="pk_statestore_task_state"),
        **_MYSQL_OPTIONS,
    )
    op.create_index(
        "ix_statestore_task_state_task_digest_map_index",
        "statestore_task_state",
        ["task_digest", "map_index"],
    )
    op.create_index("ix_statestore_task_state_expires_at", "statestore_task_state", ["expires_at"])
    op.create_table(
        "statestore_asset",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", ExactString(1500), nullable=False),
        sa.Column("name_digest", Digest(), nullable=False),
        sa.Column("uri", ExactString(1500), nullable=True),
        sa.Column("uri_digest", Digest(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_statestore_asset"),
        sa.UniqueConstraint("name_digest", name="uq_statestore_asset_name_digest"),
        sa.UniqueConstraint("uri_digest", name="uq_statestore_asset_uri_digest"),
        **_MYSQL_OPTIONS,
    )
    op.create_table(
        "statestore_asset_state",
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("key_digest", Digest(), nullable=False),
        sa.Column("key", ExactString(512), nullable=False),
        sa.Column("value", JsonText(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["statestore_asset.id"],
            name="fk_statestore_asset_state_asset_id_statestore_asset",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("asset_id", "key_digest", name="pk_statestore_asset_state"),
        **_MYSQL_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("statestore_asset_state")
    op.drop_table("statestore_asset")
    op.drop_index("ix_statestore_task_state_expires_at", table_name="statestore_task_state")
    op.drop_index(
        "ix_statestore_task_state_task_digest_map_index", table_name="statestore_task_state"
    )
    op.drop_table("statestore_task_state")
