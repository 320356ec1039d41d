"""What is measured: statestore, and the same work done by raw drivers, SQLAlchemy Core
and diskcache, each behind the same four-method shape.

Every target stores into the *same* table shape (the statestore schema, migrated), under
its own dag id, so the comparison is the cost of the library, not of a different table.
Raw targets do what a careful hand-written store would: ``json.dumps`` the value, hash
the identity, one prepared autocommit statement per operation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
import tempfile
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from statestore import StateStore, StateStoreConfig, TaskScope

__all__ = ["SyncTarget", "build_sync_targets"]


class SyncTarget(Protocol):
    name: str

    def set(self, key: str, value: Any) -> None: ...
    def get(self, key: str) -> Any: ...
    def delete(self, key: str) -> None: ...
    def asset_set(self, key: str, value: Any) -> None: ...
    def asset_get(self, key: str) -> Any: ...
    def close(self) -> None: ...


def _ids(dag: str, key: str, asset: bool = False) -> tuple[bytes, bytes]:
    if asset:
        return hashlib.sha256(dag.encode()).digest(), hashlib.sha256(key.encode()).digest()
    task = hashlib.sha256(f"{dag}\x00run\x00task".encode()).digest()
    row = hashlib.sha256(f"{dag}\x00run\x00task\x00-1\x00{key}".encode()).digest()
    return row, task


class StatestoreTarget:
    """The library, exactly as an application uses it (validation included)."""

    def __init__(self, url: str, name: str = "statestore") -> None:
        self.name = name
        self.store = StateStore(
            config=StateStoreConfig(
                database={"url": url}, state_store={"default_retention_days": 0}
            )
        )
        self.task = self.store.task_state(TaskScope(name, "run", "task"))
        self.asset = self.store.asset_state(f"{name}_asset")

    def set(self, key: str, value: Any) -> None:
        self.task.set(key, value)

    def get(self, key: str) -> Any:
        return self.task.get(key)

    def inline_get(self, key: str) -> Any:
        """The inline style: scope and accessor built for every call."""
        return self.store.task_state(TaskScope(self.name, "run", "task")).get(key)

    def delete(self, key: str) -> None:
        self.task.delete(key)

    def update(self, key: str) -> None:
        """``update(+1)``: a read, then a compare-and-set."""
        self.task.update(key, lambda n: n + 1, default=0)

    def asset_set(self, key: str, value: Any) -> None:
        self.asset.set(key, value)

    def asset_get(self, key: str) -> Any:
        return self.asset.get(key)

    def close(self) -> None:
        self.store.close()


_SQL = {
    "sqlite": (
        "INSERT INTO statestore_task_state (row_id, task_digest, dag_id, run_id, task_id,"
        " map_index, key, value, expires_at, updated_at, version)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,1)"
        " ON CONFLICT (row_id) DO UPDATE SET value = excluded.value,"
        " expires_at = excluded.expires_at, updated_at = excluded.updated_at,"
        " version = statestore_task_state.version + 1",
        "SELECT value FROM statestore_task_state WHERE row_id = ?"
        " AND (expires_at IS NULL OR expires_at >= ?)",
        "DELETE FROM statestore_task_state WHERE row_id = ?",
    ),
    "postgresql": (
        "INSERT INTO statestore_task_state (row_id, task_digest, dag_id, run_id, task_id,"
        " map_index, key, value, expires_at, updated_at, version)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,1)"
        " ON CONFLICT (row_id) DO UPDATE SET value = excluded.value,"
        " expires_at = excluded.expires_at, updated_at = excluded.updated_at,"
        " version = statestore_task_state.version + 1",
        "SELECT value FROM statestore_task_state WHERE row_id = %s"
        " AND (expires_at IS NULL OR expires_at >= %s)",
        "DELETE FROM statestore_task_state WHERE row_id = %s",
    ),
    "mysql": (
        "INSERT INTO statestore_task_state (row_id, task_digest, dag_id, run_id, task_id,"
        " map_index, `key`, value, expires_at, updated_at, version)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,1)"
        " ON DUPLICATE KEY UPDATE version = version + 1, value = VALUES(value),"
        " expires_at = VALUES(expires_at), updated_at = VALUES(updated_at)",
        "SELECT value FROM statestore_task_state WHERE row_id = %s"
        " AND (expires_at IS NULL OR expires_at >= %s)",
        "DELETE FROM statestore_task_state WHERE row_id = %s",
    ),
}


_ASSET_UPSERT = (
    "INSERT INTO statestore_asset_state (asset_id, key_digest, key, value, expires_at,"
    " updated_at, version) VALUES ({p},{p},{p},{p},{p},{p},1)"
)
_ASSET_SELECT = (
    "SELECT value FROM statestore_asset_state WHERE asset_id = {p} AND key_digest = {p}"
    " AND (expires_at IS NULL OR expires_at >= {p})"
)
_ON_CONFLICT = (
    " ON CONFLICT (asset_id, key_digest) DO UPDATE SET value = excluded.value,"
    " expires_at = excluded.expires_at, updated_at = excluded.updated_at,"
    " version = statestore_asset_state.version + 1"
)
_ASSET_SQL = {
    "sqlite": (_ASSET_UPSERT.format(p="?") + _ON_CONFLICT, _ASSET_SELECT.format(p="?")),
    "postgresql": (_ASSET_UPSERT.format(p="%s") + _ON_CONFLICT, _ASSET_SELECT.format(p="%s")),
    "mysql": (
        _ASSET_UPSERT.format(p="%s").replace(" key,", " `key`,")
        + " ON DUPLICATE KEY UPDATE version = version + 1, value = VALUES(value),"
        " expires_at = VALUES(expires_at), updated_at = VALUES(updated_at)",
        _ASSET_SELECT.format(p="%s"),
    ),
}
"""Raw asset state: upsert and read of one key of an asset by its registry id."""


def _raw_asset_id(dialect: str, cursor: Any, name: str) -> int:
    """Register ``name`` in the asset registry once (as statestore would) and return its id."""
    p = "?" if dialect == "sqlite" else "%s"
    digest = hashlib.sha256(name.encode()).digest()
    cursor.execute(f"SELECT id FROM statestore_asset WHERE name_digest = {p}", (digest,))
    found = cursor.fetchone()
    if found is None:
        now: Any = datetime.now(timezone.utc)
        if dialect != "postgresql":
            now = now.replace(tzinfo=None)
            now = now.isoformat(sep=" ") if dialect == "sqlite" else now
        cursor.execute(
            "INSERT INTO statestore_asset (name, name_digest, active, created_at, updated_at)"
            f" VALUES ({p},{p},{p},{p},{p})",
            (name, digest, True, now, now),
        )
        cursor.execute(f"SELECT id FROM statestore_asset WHERE name_digest = {p}", (digest,))
        found = cursor.fetchone()
    return int(found[0])


class RawTarget:
    """One DBAPI connection in autocommit, one prepared statement per operation."""

    def __init__(self, dialect: str, connection: Any, name: str) -> None:
        self.name = name
        self.dialect = dialect
        self.conn = connection
        self.cursor = connection.cursor()
        self.upsert, self.select, self.delete_sql = _SQL[dialect]
        self._asset: int | None = None

    def _now(self) -> Any:
        now = datetime.now(timezone.utc)
        if self.dialect == "sqlite":
            return now.replace(tzinfo=None).isoformat(sep=" ")
        return now if self.dialect == "postgresql" else now.replace(tzinfo=None)

    def set(self, key: str, value: Any) -> None:
        row, task = _ids(self.name, key)
        now = self._now()
        self.cursor.execute(
            self.upsert,
            (row, task, self.name, "run", "task", -1, key, json.dumps(value), None, now),
        )

    def get(self, key: str) -> Any:
        row, _ = _ids(self.name, key)
        self.cursor.execute(self.select, (row, self._now()))
        found = self.cursor.fetchone()
        return None if found is None else json.loads(found[0])

    def delete(self, key: str) -> None:
        row, _ = _ids(self.name, key)
        self.cursor.execute(self.delete_sql, (row,))

    # Raw asset state: the asset state table itself, by an asset id looked up once (a
    # careful hand-written store's shape; it skips statestore's active-flag check).
    def _asset_id(self) -> int:
        if self._asset is None:
            self._asset = _raw_asset_id(self.dialect, self.cursor, f"{self.name}_asset")
        return self._asset

    def asset_set(self, key: str, value: Any) -> None:
        _, digest = _ids(self.name, key, asset=True)
        self.cursor.execute(
            _ASSET_SQL[self.dialect][0],
            (self._asset_id(), digest, key, json.dumps(value), None, self._now()),
        )

    def asset_get(self, key: str) -> Any:
        _, digest = _ids(self.name, key, asset=True)
        self.cursor.execute(_ASSET_SQL[self.dialect][1], (self._asset_id(), digest, self._now()))
        found = self.cursor.fetchone()
        return None if found is None else json.loads(found[0])

    def close(self) -> None:
        self.cursor.close()
        self.conn.close()


def raw_sqlite(url: URL) -> RawTarget:
    conn = sqlite3.connect(url.database or "", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return RawTarget("sqlite", conn, "raw_sqlite3")


def raw_psycopg(url: URL, *, prepared: bool = True) -> RawTarget:
    """psycopg as it comes (``prepared``: prepares on the 6th run, its default), or with
    server-side preparing off, as statestore runs it by default (pooler-safe)."""
    import psycopg

    conn = psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
        **_pg_options(url),
    )
    if not prepared:
        conn.prepare_threshold = None
    return RawTarget("postgresql", conn, "raw_psycopg" if prepared else "raw_psycopg_unprepared")


SAME_MODE = {"statestore": "raw_psycopg_unprepared", "statestore_prepared": "raw_psycopg"}
"""On PostgreSQL: the raw target that runs statements the way each statestore target
does (server-side prepared statements or not), for a like-for-like ratio."""


def _pg_options(url: URL) -> dict[str, Any]:
    options = url.query.get("options")
    return {"options": str(options)} if options else {}


def raw_pymysql(url: URL) -> RawTarget:
    import pymysql

    conn = pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
        autocommit=True,
        charset="utf8mb4",
    )
    return RawTarget("mysql", conn, "raw_pymysql")


def raw_mysqlclient(url: URL) -> RawTarget:
    """mysqlclient (C), when installed: the fastest MySQL driver, for a second ratio."""
    import MySQLdb

    conn = MySQLdb.connect(
        host=url.host, port=url.port or 3306, user=url.username, password=url.password or "",
        database=url.database, autocommit=True, charset="utf8mb4",
    )  # fmt: skip
    target = RawTarget("mysql", conn, "raw_mysqlclient")
    return target


class CoreTarget:
    """Plain SQLAlchemy Core, the way most code is written: ``engine.begin()`` per call."""

    def __init__(self, url: URL, dialect: str) -> None:
        self.name = "sqlalchemy_core"
        self.engine = create_engine(url)
        upsert, select, delete_sql = _SQL[dialect]
        marker = "?" if dialect == "sqlite" else "%s"
        names = [f":p{i}" for i in range(10)]
        for name in names:
            upsert = upsert.replace(marker, name, 1)
        self.upsert = text(upsert)
        self.select = text(select.replace(marker, ":p0", 1).replace(marker, ":p1", 1))
        self.delete_sql = text(delete_sql.replace(marker, ":p0", 1))
        self.dialect = dialect
        self.raw = RawTarget.__new__(RawTarget)
        self.raw.dialect = dialect

    def set(self, key: str, value: Any) -> None:
        row, task = _ids(self.name, key)
        params = (row, task, self.name, "run", "task", -1, key, json.dumps(value), None,
                  RawTarget._now(self.raw))  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(self.upsert, {f"p{i}": v for i, v in enumerate(params)})

    def get(self, key: str) -> Any:
        row, _ = _ids(self.name, key)
        with self.engine.begin() as conn:
            found = conn.execute(self.select, {"p0": row, "p1": RawTarget._now(self.raw)}).first()
        return None if found is None else json.loads(found[0])

    def delete(self, key: str) -> None:
        row, _ = _ids(self.name, key)
        with self.engine.begin() as conn:
            conn.execute(self.delete_sql, {"p0": row})

    def asset_set(self, key: str, value: Any) -> None:
        self.set(f"asset:{key}", value)

    def asset_get(self, key: str) -> Any:
        return self.get(f"asset:{key}")

    def close(self) -> None:
        self.engine.dispose()


class DiskcacheTarget:
    """diskcache on its own SQLite file: the usual embedded key/value baseline."""

    def __init__(self) -> None:
        import diskcache  # type: ignore[import-untyped]

        self.name = "diskcache"
        self.directory = tempfile.mkdtemp(prefix="bench-diskcache-")
        self.cache = diskcache.Cache(self.directory)

    def set(self, key: str, value: Any) -> None:
        self.cache.set(key, value)

    def get(self, key: str) -> Any:
        return self.cache.get(key)

    def delete(self, key: str) -> None:
        self.cache.delete(key)

    def asset_set(self, key: str, value: Any) -> None:
        self.cache.set(f"asset:{key}", value)

    def asset_get(self, key: str) -> Any:
        return self.cache.get(f"asset:{key}")

    def close(self) -> None:
        self.cache.close()
        shutil.rmtree(self.directory, ignore_errors=True)  # its SQLite file and WAL


def build_sync_targets(dialect: str, url: str) -> list[SyncTarget]:
    """statestore first, then the baselines for ``dialect``."""
    parsed = make_url(url)
    targets: list[SyncTarget] = [StatestoreTarget(url)]
    if dialect == "sqlite":
        targets += [raw_sqlite(parsed), CoreTarget(parsed, dialect)]
        with contextlib.suppress(ImportError):  # diskcache is optional (extra "bench")
            targets.append(DiskcacheTarget())
    elif dialect == "postgresql":
        # The opt-in mode too: named prepared statements on a direct connection.
        prepared = parsed.update_query_dict({"prepare_threshold": "5"})
        targets += [
            StatestoreTarget(prepared.render_as_string(hide_password=False), "statestore_prepared"),
            raw_psycopg(parsed),
            raw_psycopg(parsed, prepared=False),
            CoreTarget(parsed, dialect),
        ]
    else:
        targets += [raw_pymysql(parsed), CoreTarget(parsed, dialect)]
        with contextlib.suppress(ImportError):  # mysqlclient needs C headers to install
            targets.append(raw_mysqlclient(parsed))
    return targets
