"""The migration lock: waited for at most ``timeout`` seconds, and never left held.

PostgreSQL's lock is transaction-scoped, so nothing of it survives the migration on a
server connection that a pooler hands to other clients afterwards.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from statestore.exceptions import BackendUnavailableError
from statestore.metastore import schema

pytestmark = pytest.mark.usefixtures("dialect")


def _servers_only(db_url: URL) -> None:
    if db_url.get_backend_name() == "sqlite":
        pytest.skip("SQLite serialises migrations with BEGIN IMMEDIATE (busy_timeout)")


def _advisory_locks(db_url: URL) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    # Ours only: this database, our key (a bigint below 2**32: objid).
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k"
                        " AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())"
                    ),
                    {"k": schema._PG_LOCK_KEY},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_held_lock_ends_the_wait_with_a_typed_error(db_url: URL) -> None:
    _servers_only(db_url)
    holder = create_engine(db_url)
    try:
        with holder.connect() as conn:
            if db_url.get_backend_name() == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": schema._PG_LOCK_KEY})
            else:
                got = conn.execute(
                    text("SELECT GET_LOCK(:n, 1)"), {"n": schema.mysql_lock_name(db_url.database)}
                ).scalar()
                assert got == 1
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="migration lock for over 1 s"):
                schema.upgrade(db_url, timeout=1)
            waited = time.monotonic() - started
            assert 0.8 < waited < 10, waited  # 1 s, with room for a loaded machine
            assert schema.current_revision(db_url) is None  # nothing was migrated
            conn.rollback()
            if db_url.get_backend_name() == "mysql":
                conn.execute(
                    text("SELECT RELEASE_LOCK(:n)"), {"n": schema.mysql_lock_name(db_url.database)}
                )
    finally:
        holder.dispose()
    schema.upgrade(db_url, timeout=5)  # the lock is free again: it migrates
    assert schema.current_revision(db_url) == schema.head_revision()


def test_no_lock_is_left_after_upgrade_and_downgrade(db_url: URL) -> None:
    _servers_only(db_url)
    schema.upgrade(db_url)
    schema.downgrade(db_url, "base")
    schema.upgrade(db_url)
    assert schema.current_revision(db_url) == schema.head_revision()
    if db_url.get_backend_name() == "postgresql":
        assert _advisory_locks(db_url) == 0
    else:
        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                used = conn.execute(
                    text("SELECT IS_USED_LOCK(:n)"), {"n": schema.mysql_lock_name(db_url.database)}
                ).scalar()
            assert used is None
        finally:
            engine.dispose()


def test_a_failed_migration_leaves_no_lock(db_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    _servers_only(db_url)
    if db_url.get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL's transactional DDL: the failed migration rolls back whole")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a migration failed half way")

    from alembic import command

    monkeypatch.setattr(command, "upgrade", broken)
    with pytest.raises(RuntimeError, match="half way"):
        schema.upgrade(db_url)
    assert _advisory_locks(db_url) == 0
