"""``python -m benchmarks``: statestore against raw drivers, in one run, as ratios.

For each database (SQLite always; PostgreSQL and MariaDB from
``STATESTORE_TEST_POSTGRES_URL`` / ``STATESTORE_TEST_MYSQL_URL`` with the local
defaults), every workload runs on every target in interleaved rounds; the table shows
the median ops/s, p50/p99 latency and the ratio to the raw driver of the same run.
Nothing here asserts a speed: the numbers are for reading, and for the JSON file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from benchmarks import async_targets, cleanup_bench
from benchmarks.targets import (
    SAME_MODE,
    StatestoreTarget,
    SyncTarget,
    build_sync_targets,
    raw_psycopg,
    raw_pymysql,
    raw_sqlite,
)
from statestore.metastore import upgrade

ASYNC_SAME_MODE = {"statestore": "raw_async_unprepared"}
"""PostgreSQL async rows: statestore's default against psycopg async not preparing."""

VALUE = {"status": "running", "rows": 123456, "note": "x" * 84}  # 128 bytes as JSON
if len(json.dumps(VALUE, separators=(",", ":"))) != 128:  # keep the workload honest
    raise SystemExit("the benchmark value must be 128 bytes of JSON")

SERVERS = {
    "postgresql": (
        "STATESTORE_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mysql": ("STATESTORE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


RAW_NAMES = {"sqlite": "raw_sqlite3", "postgresql": "raw_psycopg", "mysql": "raw_pymysql"}
"""Each dialect's raw target: the library's own driver."""


def _fresh_database(dialect: str, workdir: Path) -> tuple[str, Callable[[], None]]:
    """A migrated database only this run uses, and how to drop it."""
    if dialect == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        upgrade(url)
        return url, lambda: None
    env, default = SERVERS[dialect]
    admin_url = make_url(os.environ.get(env, default))
    name = f"statestore_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    quote = '"' if dialect == "postgresql" else "`"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {quote}{name}{quote}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)

    def drop() -> None:
        suffix = " WITH (FORCE)" if dialect == "postgresql" else ""
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{suffix}")
        admin.dispose()

    return url, drop


def _time(op: Callable[[int], object], n: int) -> tuple[float, list[int]]:
    latencies = []
    started = time.perf_counter_ns()
    for i in range(n):
        t0 = time.perf_counter_ns()
        op(i)
        latencies.append(time.perf_counter_ns() - t0)
    return n / ((time.perf_counter_ns() - started) / 1e9), latencies


def _workloads(target: SyncTarget, n: int, round_no: int) -> dict[str, Callable[[int], object]]:
    prefix = f"r{round_no}"
    return {
        "task set (new keys)": lambda i: target.set(f"{prefix}new{i}", VALUE),
        "task get (hits)": lambda i: target.get(f"{prefix}new{i}"),
        # store.task_state(TaskScope(...)).get(k), an accessor per call (raw: a plain get)
        "task get (inline)": lambda i: getattr(target, "inline_get", target.get)(f"{prefix}new{i}"),
        "task get (missing)": lambda i: target.get(f"{prefix}missing{i}"),
        "task overwrite": lambda i: target.set(f"{prefix}new{i}", VALUE),
        "asset set": lambda i: target.asset_set(f"{prefix}a{i % 100}", VALUE),
        "asset get": lambda i: target.asset_get(f"{prefix}a{i % 100}"),
        "mixed 80/20": lambda i: (
            target.set(f"{prefix}new{i}", VALUE) if i % 5 == 0 else target.get(f"{prefix}new{i}")
        ),
        "task delete": lambda i: target.delete(f"{prefix}new{i}"),  # last: empties the keys
    }


def _threaded(
    make: Callable[[], SyncTarget], n: int, round_no: int, *, shared: bool = False
) -> float:
    """4 threads of concurrent sets: one shared store, or a target (connection) each."""
    targets = [make() for _ in range(4)]
    per = n // 4

    def work(t: int) -> None:
        for i in range(per):
            targets[t].set(f"r{round_no}t{t}k{i}", VALUE)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if not shared:
        for target in targets:
            target.close()
    return per * 4 / elapsed


Results = dict[str, dict[str, dict[str, Any]]]


def _record(results: Results, workload: str, target: str, ops: float, lat: list[int]) -> None:
    entry = results.setdefault(workload, {}).setdefault(target, {"ops": [], "lat": []})
    entry["ops"].append(ops)
    entry["lat"].extend(lat)


def _with_server(url: str, http: bool, stack: contextlib.ExitStack) -> list[SyncTarget]:
    """The HTTP target (``statestore serve`` over the same database), if asked for."""
    if not http:
        return []
    from benchmarks.http_server import HttpTarget, serve

    return [HttpTarget(stack.enter_context(serve(url)))]


def run_dialect(
    dialect: str,
    ops: int,
    rounds: int,
    cleanup: tuple[int, int | None],
    workdir: Path,
    *,
    http: bool = False,
) -> Results:
    """Every workload on every target for one database; ``cleanup``: (expired, live) rows.
    ``http``: the HTTP backend through a real server process is a target too."""
    url, drop = _fresh_database(dialect, workdir)
    results: Results = {}
    stack = contextlib.ExitStack()
    try:
        targets = build_sync_targets(dialect, url) + _with_server(url, http, stack)
        raw_factory = {"sqlite": raw_sqlite, "postgresql": raw_psycopg, "mysql": raw_pymysql}[
            dialect
        ]
        shared = targets[0]
        assert isinstance(shared, StatestoreTarget)
        for round_no in range(rounds):
            for target in targets:  # warm-up: connections, statements, schema check
                for i in range(20):
                    target.set(f"warm{i}", VALUE)
                    target.get(f"warm{i}")
                    target.asset_set(f"warm{i}", VALUE)
            for workload in _workloads(targets[0], ops, round_no):
                for target in targets:
                    op = _workloads(target, ops, round_no)[workload]
                    _record(results, workload, target.name, *_time(op, ops))
            _record(results, "4 threads set", "statestore",
                    _threaded(lambda: shared, ops, round_no, shared=True), [])  # fmt: skip
            # Named by dialect, not targets[1]: on PostgreSQL that is statestore_prepared.
            _record(
                results, "4 threads set", RAW_NAMES[dialect],
                _threaded(lambda: raw_factory(make_url(url)), ops, round_no), [],
            )  # fmt: skip
            if dialect == "postgresql":  # like for like: statestore's default mode
                _record(
                    results, "4 threads set", "raw_psycopg_unprepared",
                    _threaded(lambda: raw_psycopg(make_url(url), prepared=False), ops,
                              round_no), [],
                )  # fmt: skip
            for name, (ops_s, lat) in asyncio.run(
                async_targets.run_async(dialect, url, ops, round_no, VALUE)
            ).items():
                _record(results, name[0], name[1], ops_s, lat)
        for target in targets:
            target.close()
        if cleanup[0]:
            cleaned = cleanup_bench.run(url, cleanup[0], rounds, cleanup[1])
            for cleaner, figures in cleaned.items():
                results.setdefault("cleanup (rows/s)", {})[cleaner] = figures
    finally:
        stack.close()
        drop()
    return results


def _summary(results: Results, dialect: str) -> list[dict[str, Any]]:
    raw_name = {"sqlite": "raw_sqlite3", "postgresql": "raw_psycopg", "mysql": "raw_pymysql"}[
        dialect
    ]
    rows = []
    for workload, by_target in results.items():
        raw_ops = None
        fastest_raw = None
        for name, entry in by_target.items():
            if not name.startswith("raw"):
                continue
            median = statistics.median(entry["ops"])
            fastest_raw = max(fastest_raw or 0.0, median)
            # The ratio that counts is against the library's own default driver.
            if raw_ops is None or name == raw_name or name in ("raw_async", "raw_delete"):
                raw_ops = median
        for name, entry in by_target.items():
            ops = statistics.median(entry["ops"])
            lat = sorted(entry.get("lat") or [])
            row = {
                "database": dialect,
                "workload": workload,
                "target": name,
                "ops_per_s": round(ops, 1),
                "p50_us": round(lat[len(lat) // 2] / 1000, 1) if lat else None,
                "p99_us": round(lat[int(len(lat) * 0.99)] / 1000, 1) if lat else None,
                "ratio_to_raw": round(ops / raw_ops, 3) if raw_ops else None,
                "ratio_to_fastest_raw": round(ops / fastest_raw, 3) if fastest_raw else None,
                "ratio_same_mode": _same_mode_ratio(by_target, name, ops, workload),
                "ratio_to_direct": _direct_ratio(by_target, name, ops),
                "raw": raw_name if "async" not in workload else "raw async driver",
            }
            row.update({k: v for k, v in entry.items() if k not in ("ops", "lat")})
            rows.append(row)
    return rows


def _same_mode_ratio(
    by_target: dict[str, Any], name: str, ops: float, workload: str = ""
) -> float | None:
    """The ratio to the raw target in the same prepared-statement mode (PostgreSQL)."""
    same = ASYNC_SAME_MODE if workload.startswith("async") else SAME_MODE
    pair = by_target.get(same.get(name, ""))
    return round(ops / statistics.median(pair["ops"]), 3) if pair else None


def _direct_ratio(by_target: dict[str, Any], name: str, ops: float) -> float | None:
    """Through the state server: the ratio to the direct metastore path (``statestore``)."""
    direct = by_target.get("statestore")
    if not name.startswith("statestore_http") or direct is None:
        return None
    return round(ops / float(statistics.median(direct["ops"])), 3)


def _print(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'database':<10} {'workload':<22} {'target':<18} {'ops/s':>10} "
        f"{'p50 µs':>8} {'p99 µs':>8} {'x raw':>6} {'x fastest':>9} {'x same mode':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['ratio_to_raw']:.2f}" if r["ratio_to_raw"] is not None else ""
        best = r["ratio_to_fastest_raw"]
        ratio += f" {best:>9.2f}" if best is not None else " " * 10
        same = r.get("ratio_same_mode")
        ratio += f" {same:>11.2f}" if same is not None else ""
        p50 = f"{r['p50_us']:.0f}" if r["p50_us"] is not None else ""
        p99 = f"{r['p99_us']:.0f}" if r["p99_us"] is not None else ""
        extra = f"  peak RSS {r['peak_rss_mib']} MiB" if "peak_rss_mib" in r else ""
        if r.get("ratio_to_direct") is not None:
            extra += f"  x direct {r['ratio_to_direct']:.3f}"
        print(f"{r['database']:<10} {r['workload']:<22} {r['target']:<18} "
              f"{r['ops_per_s']:>10.0f} {p50:>8} {p99:>8} {ratio:>6}{extra}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hotkey"]:  # many processes on one key: a benchmark of its own
        from benchmarks import hotkey

        return hotkey.main(argv[1:])
    if argv[:1] == ["ui-overview"]:  # the web UI's overview and browse pages at 10^6 keys
        from benchmarks import ui_overview

        return ui_overview.main(argv[1:])
    if argv[:1] == ["batches"]:  # batches of 100 keys against the raw driver's batch
        from benchmarks import batches

        return batches.main(argv[1:])
    if argv[:1] == ["http"]:  # the state server: breakdown, concurrency sweep, tokens
        from benchmarks import http_bench

        return http_bench.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql")
    parser.add_argument("--ops", type=int, default=2000, help="operations per workload and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cleanup-rows", type=int, default=20_000,
                        help="expired rows for the cleanup benchmark (0 = skip)")  # fmt: skip
    parser.add_argument("--cleanup-live-rows", type=int, default=None,
                        help="live rows beside the expired ones (default: as many)")  # fmt: skip
    parser.add_argument("--json", default="benchmark-results.json", help="where to write JSON")
    parser.add_argument("--http", action=argparse.BooleanOptionalAction,
                        default=all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn")),
                        help="also through a statestore serve process (server extra)")  # fmt: skip
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="statestore-bench-") as tmp:
        for dialect in args.dialects.split(","):
            print(f"… {dialect}", file=sys.stderr)
            results = run_dialect(
                dialect,
                args.ops,
                args.rounds,
                (args.cleanup_rows, args.cleanup_live_rows),
                Path(tmp),
                http=args.http,
            )
            rows.extend(_summary(results, dialect))
    _print(rows)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "ops": args.ops, "rounds": args.rounds, "cleanup_rows": args.cleanup_rows,
            "cleanup_live_rows": args.cleanup_live_rows, "http": args.http,
            "load": " ".join(Path("/proc/loadavg").read_text().split()[:3])}  # fmt: skip
    Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
