"""SQLite: one task-instance index instead of four, so a new key writes fewer B-trees.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

On SQLite only (PostgreSQL and MariaDB are unchanged): the ``(task_digest, map_index,
key)`` and ``(dag_id, run_id, task_id, map_index)`` indexes become one ``(dag_id,
run_id, task_id, map_index, key)`` index, which serves clear(), an instance's key
listing in order and the web UI's browsing alike; the ``task_id`` and ``key`` search
indexes go, and the web UI's search by task id or key reads the table in one pass
there. A new key wrote seven B-trees and now writes four, as many as diskcache's
(docs/performance.md, "SQLite new-key writes"). InnoDB cannot index those text columns
together (its 3,072-byte key limit), which is why the other dialects keep the digest.
Indexes only; no row changes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "statestore_task_state"
_MERGED = ("ix_statestore_task_state_dag_id_run_id_task_id_map_index_key",
           ["dag_id", "run_id", "task_id", "map_index", "key"])  # fmt: skip
_REPLACED = (
    ("ix_statestore_task_state_task_digest_map_index_key", ["task_digest", "map_index", "key"]),
    (
        "ix_statestore_task_state_dag_id_run_id_task_id_map_index",
        ["dag_id", "run_id", "task_id", "map_index"],
    ),
    ("ix_statestore_task_state_task_id", ["task_id"]),
    ("ix_statestore_task_state_key", ["key"]),
)


def _on_sqlite() -> bool:
    return bool(op.get_context().dialect.name == "sqlite")


def upgrade() -> None:
    if not _on_sqlite():
        return
    op.create_index(_MERGED[0], _TABLE, _MERGED[1])
    for name, _columns in _REPLACED:
        op.drop_index(name, table_name=_TABLE)


def downgrade() -> None:
    if not _on_sqlite():
        return
    for name, columns in _REPLACED:
        op.create_index(name, _TABLE, columns)
    op.drop_index(_MERGED[0], table_name=_TABLE)
