"""Indexes for the web UI: browsing, searching, and the overview's expiry histogram.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Indexes only; no column or row changes (a later revision builds on this one). Every
index stays within the key-size limits of the three databases for the longest ids the
library accepts: InnoDB 3072 bytes (utf8mb4: 4 bytes a character), so the widest one,
(dag_id, run_id, task_id, map_index), is 3 x 1000 + 4 bytes; PostgreSQL's B-tree entry
limit is ~2704 bytes *after* compression, which three ids of 250 random 4-byte characters
can pass: such a write raises ``InvalidScopeError`` (``metastore.errors``; see
docs/performance.md, "Web UI overview"). The asset name (1500 characters)
gets none: no database can index it whole, and the registry is small enough to scan.
"""

from __future__ import annotations

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    # dags -> runs -> task instances, listed in order with keyset pagination.
    (
        "ix_statestore_task_state_dag_id_run_id_task_id_map_index",
        "statestore_task_state",
        ["dag_id", "run_id", "task_id", "map_index"],
    ),
    # Search by run or task name across dags, and by key prefix across scopes.
    ("ix_statestore_task_state_run_id", "statestore_task_state", ["run_id"]),
    ("ix_statestore_task_state_task_id", "statestore_task_state", ["task_id"]),
    ("ix_statestore_task_state_key", "statestore_task_state", ["key"]),
    ("ix_statestore_asset_state_key", "statestore_asset_state", ["key"]),
    # The overview's expiry histogram of asset state (task state has had one since 0001).
    ("ix_statestore_asset_state_expires_at", "statestore_asset_state", ["expires_at"]),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
