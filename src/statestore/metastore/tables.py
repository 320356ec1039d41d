"""The schema: the ``statestore_`` tables that can live inside a host's database.

Rows are found by a SHA-256 digest of their identity rather than by the text columns:
MySQL/InnoDB cannot index 3 x 250 + 512 utf8mb4 characters (3072-byte limit), and a
fixed 32-byte key keeps every index small on every dialect. The text columns stay for
queries, listings and humans; they use binary collations so MySQL compares them exactly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    text,
    true,
)

from statestore.metastore.types import Digest, ExactString, JsonText, KeyString, UTCDateTime
from statestore.scopes import MAX_ASSET_REF_LENGTH, MAX_ID_LENGTH, MAX_KEY_LENGTH

__all__ = [
    "SCANNED_ON_SQLITE",
    "VERSION_TABLE",
    "asset",
    "asset_state",
    "metadata",
    "task_rows_by_ids",
    "task_state",
    "write_receipt",
]

VERSION_TABLE = "statestore_alembic_version"
"""Alembic's version table for our migrations, apart from a host's ``alembic_version``."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def task_rows_by_ids(dialect: str) -> bool:
    """Whether ``dialect`` finds one task's rows by its ids rather than its digest: on
    SQLite (since migration 0006) ``dag_id, run_id, task_id`` lead the one task-instance
    index; every other dialect indexes ``task_digest``. The statements, the UI's and
    CLI's queries, the indexes below and the browse plans all ask this one question."""
    return dialect == "sqlite"


SCANNED_ON_SQLITE = frozenset({"task_id", "key"})
"""Task-state columns that SQLite does not index: every new key writes fewer B-trees
there (an embedded store is mostly written, and searched by one person at a time), and
the web UI's search by task id or key reads them in one pass instead of seeking."""


def _not_on_sqlite(
    ddl: Any,
    target: Any,
    bind: Any,
    tables: Any = None,
    state: Any = None,
    *,
    dialect: Any,
    compiler: Any = None,
    checkfirst: bool = False,
) -> bool:
    # The indexes SQLite has not had since migration 0006.
    return not task_rows_by_ids(dialect.name)


_MYSQL_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}

task_state = Table(
    "statestore_task_state",
    metadata,
    # sha256(dag \0 run \0 task \0 map_index \0 key): the one unique key.
    Column("row_id", Digest(), nullable=False),
    # sha256(dag \0 run \0 task): clear() of one or all map indices is an index range.
    Column("task_digest", Digest(), nullable=False),
    Column("dag_id", ExactString(MAX_ID_LENGTH), nullable=False),
    Column("run_id", ExactString(MAX_ID_LENGTH), nullable=False),
    Column("task_id", ExactString(MAX_ID_LENGTH), nullable=False),
    Column("map_index", Integer(), nullable=False),
    # A stable identity of a mapped instance, used instead of map_index when given.
    Column("map_key", ExactString(MAX_ID_LENGTH), nullable=True),
    Column("key", KeyString(MAX_KEY_LENGTH), nullable=False),
    Column("value", JsonText(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Increases on every write of the row: compare-and-set and change detection.
    Column("version", BigInteger(), nullable=False, server_default=text("1")),
    Column("updated_by", ExactString(MAX_ID_LENGTH), nullable=True),
    PrimaryKeyConstraint("row_id"),
    # clear() of one or all map indices, and listing one instance's keys in order.
    Index(None, "task_digest", "map_index", "key").ddl_if(callable_=_not_on_sqlite),
    # Cleanup reads only the expired rows; NULL (never expires) sorts out of the range.
    Index(None, "expires_at"),
    # The web UI (migration 0003): dags -> runs -> task instances in order (keyset
    # pages; run search too, one dag at a time), and search by task name and key prefix
    # across scopes. 0003's run_id index went in 0004: no query chose it.
    Index(None, "dag_id", "run_id", "task_id", "map_index").ddl_if(callable_=_not_on_sqlite),
    Index(None, "task_id").ddl_if(callable_=_not_on_sqlite),
    Index(None, "key").ddl_if(callable_=_not_on_sqlite),
    # SQLite (migration 0006): one index instead of four, for new-key writes. It does
    # both jobs of the first two above (its text columns fit where InnoDB's limit does
    # not apply); the task-id and key searches scan (SCANNED_ON_SQLITE).
    Index(None, "dag_id", "run_id", "task_id", "map_index", "key").ddl_if(dialect="sqlite"),
    **_MYSQL_OPTIONS,
)

asset = Table(
    "statestore_asset",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("name", ExactString(MAX_ASSET_REF_LENGTH), nullable=False),
    Column("name_digest", Digest(), nullable=False),
    Column("uri", ExactString(MAX_ASSET_REF_LENGTH), nullable=True),
    Column("uri_digest", Digest(), nullable=True),
    Column("active", Boolean(), nullable=False, server_default=true()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("name_digest"),
    UniqueConstraint("uri_digest"),
    **_MYSQL_OPTIONS,
)

asset_state = Table(
    "statestore_asset_state",
    metadata,
    Column(
        "asset_id",
        Integer(),
        ForeignKey("statestore_asset.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("key_digest", Digest(), nullable=False),
    Column("key", KeyString(MAX_KEY_LENGTH), nullable=False),
    Column("value", JsonText(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("version", BigInteger(), nullable=False, server_default=text("1")),
    Column("updated_by", ExactString(MAX_ID_LENGTH), nullable=True),
    PrimaryKeyConstraint("asset_id", "key_digest"),
    Index(None, "asset_id", "key"),  # listing an asset's keys in order
    Index(None, "key"),  # the web UI's key-prefix search across assets (0003)
    Index(None, "expires_at"),  # the overview's expiry histogram (0003)
    **_MYSQL_OPTIONS,
)

write_receipt = Table(
    "statestore_write_receipt",
    metadata,
    # sha256 of the written row's identity and the client's Idempotency-Key (0005).
    Column("receipt_id", Digest(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("receipt_id"),
    Index(None, "created_at"),  # cleanup removes the old ones, oldest first
    **_MYSQL_OPTIONS,
)
"""One row per conditional write a state server applied for a client that named it
(``Idempotency-Key``), committed in the write's own transaction: a resent copy of that
request -- a load balancer passing it to another replica, or the client after a broken
connection -- finds its receipt and is answered as applied instead of being applied or
refused again (``metastore.receipts``)."""
