"""``python -m benchmarks batches``: batches of 100 keys against the raw driver, in one run.

For each database, every round runs each target ``--batches`` times on a batch of
``--keys`` keys (128-byte values), interleaved so load drifts hit every target alike:

* ``get_many`` / ``set_many``: statestore's accessor (validation, encoding, one statement).
* ``raw batch``: what a careful hand-written store does for the same batch -- one
  multi-row ``INSERT … ON CONFLICT`` / ``ON DUPLICATE KEY UPDATE`` and one ``IN (…)``
  read (``= ANY(%s)`` on PostgreSQL) on an autocommit connection, ``json.dumps`` and
  SHA-256 per key, same table.
* ``100 singles``: statestore's ``get``/``set`` called once per key.

The table shows batches/s, p50 per batch, the ratio to the raw batch (target 0.85) and
to statestore's own single calls (target 10). PostgreSQL runs both sides without
server-side prepared statements (statestore's default). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from statestore import StateStore, StateStoreConfig, TaskScope

VALUE = {"status": "running", "rows": 123456, "note": "x" * 84}  # 128 bytes as JSON
Op = Callable[[int], object]


class RawBatch:
    """A hand-written batch on one DBAPI connection in autocommit."""

    def __init__(self, dialect: str, url: URL, keys: list[str]) -> None:
        self.dialect = dialect
        self.conn = _connect(dialect, url)
        self.cursor = self.conn.cursor()
        mark = "?" if dialect == "sqlite" else "%s"
        row = "(" + ",".join([mark] * 10) + ",1)"
        column = "`key`" if dialect == "mysql" else "key"
        head = (
            "INSERT INTO statestore_task_state (row_id, task_digest, dag_id, run_id, task_id,"
            f" map_index, {column}, value, expires_at, updated_at, version) VALUES "
        )
        if dialect == "mysql":
            tail = (
                " ON DUPLICATE KEY UPDATE version = version + 1, value = VALUES(value),"
                " expires_at = VALUES(expires_at), updated_at = VALUES(updated_at)"
            )
        else:
            tail = (
                " ON CONFLICT (row_id) DO UPDATE SET value = excluded.value,"
                " expires_at = excluded.expires_at, updated_at = excluded.updated_at,"
                " version = statestore_task_state.version + 1"
            )
        self.upsert = head + ",".join([row] * len(keys)) + tail
        live = "(expires_at IS NULL OR expires_at >= " + mark + ")"
        if dialect == "postgresql":
            self.select = (
                f"SELECT key, value FROM statestore_task_state WHERE row_id = ANY(%s) AND {live}"
            )
        else:
            marks = ",".join([mark] * len(keys))
            self.select = (
                f"SELECT {column}, value FROM statestore_task_state WHERE row_id IN ({marks})"
                f" AND {live}"
            )
        self.keys = keys
        self.task = hashlib.sha256(b"raw\x00run\x00task").digest()

    def _row(self, key: str) -> bytes:
        return hashlib.sha256(f"raw\x00run\x00task\x00-1\x00{key}".encode()).digest()

    def _now(self) -> Any:
        now = datetime.now(timezone.utc)
        if self.dialect == "sqlite":
            return now.replace(tzinfo=None).isoformat(sep=" ")
        return now if self.dialect == "postgresql" else now.replace(tzinfo=None)

    def set_many(self, values: dict[str, Any]) -> None:
        now = self._now()
        params: list[Any] = []
        for key, value in values.items():
            params += [self._row(key), self.task, "raw", "run", "task", -1, key,
                       json.dumps(value, separators=(",", ":")), None, now]  # fmt: skip
        self.cursor.execute(self.upsert, params)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        rows = [self._row(key) for key in keys]
        params: list[Any] = (
            [rows, self._now()] if self.dialect == "postgresql" else [*rows, self._now()]
        )
        self.cursor.execute(self.select, params)
        return {key: json.loads(value) for key, value in self.cursor.fetchall()}

    def close(self) -> None:
        self.cursor.close()
        self.conn.close()


def _connect(dialect: str, url: URL) -> Any:
    if dialect == "sqlite":
        conn = sqlite3.connect(url.database or "", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    if dialect == "postgresql":
        import psycopg

        pg = psycopg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password,
            dbname=url.database, autocommit=True,
        )  # fmt: skip
        pg.prepare_threshold = None  # as statestore runs by default
        return pg
    if url.get_driver_name() == "mysqldb":
        import MySQLdb

        return MySQLdb.connect(host=url.host, port=url.port or 3306, user=url.username,
                               password=url.password or "", database=url.database,
                               autocommit=True, charset="utf8mb4")  # fmt: skip
    import pymysql

    return pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                           password=url.password or "", database=url.database,
                           autocommit=True, charset="utf8mb4")  # fmt: skip


def _targets(
    dialect: str, url: str, keys: list[str]
) -> tuple[dict[str, dict[str, Op]], list[Callable[[], None]]]:
    config = StateStoreConfig(database={"url": url}, state_store={"default_retention_days": 0})
    store = StateStore(config=config)
    task = store.task_state(TaskScope("statestore", "run", "task"))
    asset = store.asset_state("statestore_asset")
    raw = RawBatch(dialect, make_url(url), keys)
    values = dict.fromkeys(keys, VALUE)

    def singles_set(_: int) -> None:
        for key in keys:
            task.set(key, VALUE)

    def singles_get(_: int) -> None:
        for key in keys:
            task.get(key)

    def asset_singles_set(_: int) -> None:
        for key in keys:
            asset.set(key, VALUE)

    def asset_singles_get(_: int) -> None:
        for key in keys:
            asset.get(key)

    workloads: dict[str, dict[str, Op]] = {
        "set_many": {
            "statestore": lambda _: task.set_many(values),
            "raw batch": lambda _: raw.set_many(values),
            "100 singles": singles_set,
        },
        "get_many": {
            "statestore": lambda _: task.get_many(keys),
            "raw batch": lambda _: raw.get_many(keys),
            "100 singles": singles_get,
        },
        "asset set_many": {
            "statestore": lambda _: asset.set_many(values),
            "100 singles": asset_singles_set,
        },
        "asset get_many": {
            "statestore": lambda _: asset.get_many(keys),
            "100 singles": asset_singles_get,
        },
    }
    # Everything written once, so reads find every key and writes overwrite.
    task.set_many(values)
    asset.set_many(values)
    raw.set_many(values)
    assert len(task.get_many(keys)) == len(raw.get_many(keys)) == len(keys)
    return workloads, [store.close, raw.close]


def _interleaved(targets: dict[str, Op], batches: int) -> dict[str, list[int]]:
    """Each target's latencies (ns), the targets taking turns batch by batch, so a load
    spike from elsewhere on the machine hits them alike (singles every 10th turn)."""
    latencies: dict[str, list[int]] = {name: [] for name in targets}
    for i in range(batches):
        for name, op in targets.items():
            if name == "100 singles" and i % 10:
                continue
            t0 = time.perf_counter_ns()
            op(i)
            latencies[name].append(time.perf_counter_ns() - t0)
    return latencies


def run(
    dialect: str, batches: int, rounds: int, n_keys: int, workdir: Path
) -> list[dict[str, Any]]:
    from benchmarks.__main__ import _fresh_database

    url, drop = _fresh_database(dialect, workdir)
    keys = [f"key-{i:03d}" for i in range(n_keys)]
    rows: list[dict[str, Any]] = []
    try:
        workloads, closers = _targets(dialect, url, keys)
        try:
            # Per round: batches/s from the median latency (robust to the odd stall).
            measured: dict[tuple[str, str], list[float]] = {}
            for _ in range(rounds):
                for workload, targets in workloads.items():
                    for name, lat in _interleaved(targets, batches).items():
                        rate = 1e9 / statistics.median(lat)
                        measured.setdefault((workload, name), []).append(rate)
            for workload, targets in workloads.items():
                ours = measured[workload, "statestore"]
                raw = measured.get((workload, "raw batch"))
                singles = measured[workload, "100 singles"]
                for name in targets:
                    rates = measured[workload, name]
                    rows.append({
                        "database": dialect, "workload": workload, "target": name,
                        "batches_per_s": statistics.median(rates),
                        "p50_us": 1e6 / statistics.median(rates),
                        "rounds": rates,
                        "ratio_to_raw": None if raw is None else statistics.median(
                            [o / r for o, r in zip(ours, raw, strict=True)]),
                        "ratio_to_raw_rounds": None if raw is None else [
                            o / r for o, r in zip(ours, raw, strict=True)],
                        "ratio_to_singles": statistics.median(
                            [o / s for o, s in zip(ours, singles, strict=True)]),
                    })  # fmt: skip
        finally:
            for close in closers:
                close()
    finally:
        drop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks batches", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql")
    parser.add_argument("--batches", type=int, default=200, help="batches per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=100, help="keys per batch")
    parser.add_argument("--json", default="benchmark-batches.json")
    args = parser.parse_args(argv)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="statestore-batches-") as tmp:
        for dialect in args.dialects.split(","):
            print(f"… {dialect}", file=sys.stderr)
            rows += run(dialect, args.batches, args.rounds, args.keys, Path(tmp))
    print(f"{'database':<10} {'workload':<15} {'target':<12} {'batches/s':>10} {'p50 us':>8} "
          f"{'x raw (rounds)':>17} {'x singles':>9}")  # fmt: skip
    for r in rows:
        mine = r["target"] == "statestore"
        spread = r["ratio_to_raw_rounds"] or [0.0]
        to_raw = (
            f"{r['ratio_to_raw']:.2f} ({min(spread):.2f}-{max(spread):.2f})"
            if mine and r["ratio_to_raw"] is not None
            else ""
        )
        to_singles = f"{r['ratio_to_singles']:.1f}" if mine else ""
        print(f"{r['database']:<10} {r['workload']:<15} {r['target']:<12} "
              f"{r['batches_per_s']:>10.1f} {r['p50_us']:>8.0f} {to_raw:>17} "
              f"{to_singles:>9}")  # fmt: skip
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "batches": args.batches, "rounds": args.rounds, "keys": args.keys,
            "load_before": load_before, "load_after": load_after}  # fmt: skip
    print(f"\nload average before {load_before}, after {load_after}", file=sys.stderr)
    Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
