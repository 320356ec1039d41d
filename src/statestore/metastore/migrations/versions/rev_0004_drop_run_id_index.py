"""Drop the task-state ``run_id`` index, which no query uses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Revision 0003 indexed ``run_id`` alone for the web UI's run search, but that search
seeks one dag at a time through the ``(dag_id, run_id, task_id, map_index)`` index, and
so does every other query that names a run: ``EXPLAIN`` of every browse and search
query on SQLite, PostgreSQL and MariaDB (5,000 analyzed rows, with
``scripts/ui_query_plans.py``) never chose it. Every new key still paid for it: raw
SQLite inserts of new keys run 17 % faster without it (docs/performance.md). Indexes
only; no row changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_NAME = "ix_statestore_task_state_run_id"
_TABLE = "statestore_task_state"


def upgrade() -> None:
    op.drop_index(_NAME, table_name=_TABLE)


def downgrade() -> None:
    op.create_index(_NAME, _TABLE, ["run_id"])
