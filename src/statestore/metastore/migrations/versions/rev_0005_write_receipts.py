"""Receipts of conditional writes, so a resent compare-and-set is answered, not redone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A new table only; no existing row or index changes. A state server records one row per
compare-and-set or create-only write that a client named with an ``Idempotency-Key``,
in the write's own transaction; a copy of the request that arrives again (a load
balancer resending a PUT to another replica after the first died mid-request, or the
client resending after a broken connection) finds it and is answered "applied" instead
of 412. Receipts older than 15 minutes are removed by the server and by ``cleanup``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from statestore.metastore.types import Digest, UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "statestore_write_receipt"
_MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("receipt_id", Digest(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("receipt_id", name="pk_statestore_write_receipt"),
        **_MYSQL,
    )
    op.create_index("ix_statestore_write_receipt_created_at", _TABLE, ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_statestore_write_receipt_created_at", table_name=_TABLE)
    op.drop_table(_TABLE)
