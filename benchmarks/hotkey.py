"""``python -m benchmarks hotkey``: many processes bumping one asset counter.

statestore's ``update()`` against a raw compare-and-set loop on the same table shape, in
the same run: N processes (4 and 16 by default) each make ``--updates`` increments of one
key. The raw loop is what a careful hand-written store does: read ``(value, version)``,
``UPDATE … WHERE version = <read>``; after a lost race pause for the same jittered,
growing back-off and read again, at most ``--retries`` more times. Both give up the same
way, so the table shows throughput (successful updates/s), the ratio to raw, and the
give-up rate (calls that lost ``retries + 1`` races in a row). The final counter is
checked against the successful updates (``lost`` must be 0). Nothing is asserted.

On PostgreSQL both prepared-statement modes run and each ratio is like for like:
``statestore`` (the default: no server-side prepared statements, safe behind a
transaction pooler) against ``raw_unprepared``; ``statestore_prepared``
(``?prepare_threshold=5``, the direct-connection opt-in) against ``raw`` (psycopg's own
default, preparing on the 6th run).

A second raw loop, ``raw_checked`` (``raw_checked_unprepared`` on PostgreSQL), makes the
checks statestore's two statements make -- the expiry on read and on write, the asset's
active flag by name, the provenance columns -- so the ``x chk`` column separates what
the library costs from what those checks cost the database.

Two more columns say where a gap comes from: ``races`` (lost races per successful update:
the pauses taken) and ``cpu µs`` (the worker processes' own CPU per successful update,
``time.process_time``). Equal races with more CPU mean the client's own work, not the
contention, sets the pace on a machine whose cores the workers and the server share.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from statestore import StateStore, VersionConflictError

KEY = "counter"
PAIRS = (("statestore", "raw_unprepared"), ("statestore_prepared", "raw"))
"""PostgreSQL: each statestore mode and the raw loop in the same prepared mode."""


PAUSES = [0]
"""Lost races in this worker process: every pause taken, by either loop."""


def _pause(attempt: int) -> float:
    # Raw targets import nothing from statestore: this mirrors items.update_pause.
    PAUSES[0] += 1
    return random.uniform(0, 0.001 * 2 ** min(attempt, 6))


def _count_statestore_pauses() -> None:
    """Count update()'s pauses in this (benchmark) process; the pause itself unchanged."""
    from statestore import items

    chosen = items.update_pause

    def counted(attempt: int) -> float:
        PAUSES[0] += 1
        return chosen(attempt)

    items.update_pause = counted


def _statestore_worker(url: str, asset: str, updates: int, retries: int) -> Callable[[], Any]:
    store = StateStore(url)
    state = store.asset_state(asset)
    # Before the clock starts: connect, check the schema and read the counter, which
    # also learns the asset's id, as any worker has after its first call (the raw loop
    # looks its asset id up before the clock too). A missing key's read, as this one
    # once was, learns nothing, and the first timed update then went the general way.
    state.get(KEY)

    def run() -> tuple[int, int]:
        ok = gave_up = 0
        for _ in range(updates):
            try:
                state.update(KEY, lambda n: n + 1, default=0, retries=retries)
                ok += 1
            except VersionConflictError:
                gave_up += 1
        store.close()
        return ok, gave_up

    return run


_RAW_SQL = {
    "select": "SELECT value, version FROM statestore_asset_state"
    " WHERE asset_id = {p} AND key_digest = {p}",
    "update": "UPDATE statestore_asset_state SET value = {p}, version = version + 1,"
    " updated_at = {p} WHERE asset_id = {p} AND key_digest = {p} AND version = {p}",
    "asset": "SELECT id FROM statestore_asset WHERE name_digest = {p}",
}
_CHECKED_SQL = {
    # What statestore's own two statements check: the expiry on read and write, the
    # asset's active flag (by name) and the provenance columns on write.
    "select": "SELECT value, version FROM statestore_asset_state"
    " WHERE asset_id = {p} AND key_digest = {p} AND (expires_at IS NULL OR expires_at >= {p})",
    "update": "UPDATE statestore_asset_state SET value = {p}, version = version + 1,"
    " updated_at = {p}, expires_at = {p}, updated_by = {p}"
    " WHERE asset_id = (SELECT id FROM statestore_asset WHERE name_digest = {p} AND active = TRUE)"
    " AND key_digest = {p} AND version = {p} AND (expires_at IS NULL OR expires_at >= {p})",
    "asset": _RAW_SQL["asset"],
}
CHECKED = {"statestore": "raw_checked_unprepared", "statestore_prepared": "raw_checked"}
"""PostgreSQL: the raw loop with statestore's checks, in each statestore target's mode
(elsewhere ``statestore`` pairs with ``raw_checked``)."""


def _raw_connect(url: str) -> tuple[Any, str]:
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    conn: Any
    if dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(parsed.database or "", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn, "?"
    if dialect == "postgresql":
        import psycopg

        options = parsed.query.get("options")
        extra: dict[str, Any] = {"options": str(options)} if options else {}
        conn = psycopg.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username,
            password=parsed.password, dbname=parsed.database, autocommit=True, **extra,
        )  # fmt: skip
        return conn, "%s"
    import pymysql

    conn = pymysql.connect(
        host=parsed.host, port=parsed.port or 3306, user=parsed.username,
        password=parsed.password or "", database=parsed.database, autocommit=True,
        charset="utf8mb4",
    )  # fmt: skip
    return conn, "%s"


def _raw_worker(
    url: str, asset: str, updates: int, retries: int, *, prepared: bool = True,
    checked: bool = False,
) -> Callable[[], Any]:  # fmt: skip
    """The raw loop; ``checked``: with the checks statestore's statements make."""
    conn, marker = _raw_connect(url)
    if not prepared:
        conn.prepare_threshold = None  # psycopg: never prepare, as statestore's default
    dialect = make_url(url).get_backend_name()
    texts = _CHECKED_SQL if checked else _RAW_SQL
    sql = {name: text.format(p=marker) for name, text in texts.items()}
    cursor = conn.cursor()
    name_digest = hashlib.sha256(asset.encode()).digest()
    cursor.execute(sql["asset"], (name_digest,))
    asset_id = cursor.fetchone()[0]
    digest = hashlib.sha256(KEY.encode()).digest()

    def now() -> Any:
        stamp = datetime.now(timezone.utc)
        if dialect == "sqlite":
            return stamp.replace(tzinfo=None).isoformat(sep=" ")
        return stamp if dialect == "postgresql" else stamp.replace(tzinfo=None)

    def read() -> tuple[str, int]:
        cursor.execute(sql["select"], (asset_id, digest, now()) if checked else (asset_id, digest))
        value, version = cursor.fetchone()
        return value, version

    def write(new: str, version: int) -> None:
        parameters: tuple[Any, ...]
        if checked:
            parameters = (new, now(), None, None, name_digest, digest, version, now())
        else:
            parameters = (new, now(), asset_id, digest, version)
        cursor.execute(sql["update"], parameters)

    def run() -> tuple[int, int]:
        ok = gave_up = 0
        for _ in range(updates):
            value, version = read()
            for attempt in range(retries + 1):
                new = json.dumps(json.loads(value) + 1)
                write(new, version)
                if cursor.rowcount == 1:
                    ok += 1
                    break
                if attempt == retries:
                    gave_up += 1
                    break
                time.sleep(_pause(attempt))
                value, version = read()
        conn.close()
        return ok, gave_up

    return run


def _process(kind: str, url: str, asset: str, updates: int, retries: int,
             ready: Any, start: Any, results: Any) -> None:  # fmt: skip
    if kind.startswith("statestore"):
        _count_statestore_pauses()
    if kind == "statestore":
        run = _statestore_worker(url, asset, updates, retries)
    elif kind == "statestore_prepared":
        prepared_url = make_url(url).update_query_dict({"prepare_threshold": "5"})
        run = _statestore_worker(prepared_url.render_as_string(hide_password=False), asset,
                                 updates, retries)  # fmt: skip
    else:
        prepared = kind in ("raw", "raw_checked")
        run = _raw_worker(url, asset, updates, retries, prepared=prepared,
                          checked=kind.startswith("raw_checked"))  # fmt: skip
    ready.release()
    start.wait()
    cpu = time.process_time()
    ok, gave_up = run()
    results.put((ok, gave_up, PAUSES[0], time.process_time() - cpu))


def run_once(kind: str, url: str, asset: str, processes: int, updates: int,
             retries: int) -> dict[str, float]:  # fmt: skip
    """One timed run: ``processes`` workers of ``kind`` on one counter, from a common start."""
    context = multiprocessing.get_context("spawn")
    ready, start, results = context.Semaphore(0), context.Event(), context.Queue()
    with StateStore(url) as store:
        before = store.asset_state(asset).get(KEY)
    workers = [
        context.Process(target=_process,
                        args=(kind, url, asset, updates, retries, ready, start, results))
        for _ in range(processes)
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    started = time.perf_counter()
    start.set()
    outcomes = [results.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join(timeout=60)
    ok = sum(o[0] for o in outcomes)
    gave_up = sum(o[1] for o in outcomes)
    races = sum(o[2] for o in outcomes)
    cpu = sum(o[3] for o in outcomes)
    with StateStore(url) as store:
        after = store.asset_state(asset).get(KEY)
    return {"ops": ok / elapsed, "ok": ok, "gave_up": gave_up, "races": races,
            "cpu": cpu, "lost": ok - (after - before)}  # fmt: skip


def run_dialect(dialect: str, process_counts: list[int], updates: int, retries: int,
                rounds: int, workdir: Path,
                targets: list[str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Interleaved rounds of statestore and raw at each process count; one row each."""
    from benchmarks.__main__ import _fresh_database

    url, drop = _fresh_database(dialect, workdir)
    rows = []
    try:
        pairs = dict(PAIRS) if dialect == "postgresql" else {"statestore": "raw"}
        checked = dict(CHECKED) if dialect == "postgresql" else {"statestore": "raw_checked"}
        kinds = [k for pair in pairs.items() for k in pair] + list(checked.values())
        if targets:  # the chosen statestore targets and the raw loops they are compared with
            wanted = {t for t in targets if t in pairs}
            kinds = [k for k in kinds if k in wanted
                     or any(k in (pairs[t], checked.get(t)) for t in wanted)]  # fmt: skip
        with StateStore(url) as store:
            for kind in kinds:  # registers every target's asset, creates its key
                store.asset_state(f"hot_{kind}").set(KEY, 0)
        for processes in process_counts:
            runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for kind, measured in runs.items():
                    measured.append(run_once(kind, url, f"hot_{kind}", processes, updates, retries))
            medians = {kind: statistics.median(r["ops"] for r in runs[kind]) for kind in kinds}
            for kind, measured in runs.items():
                ops = medians[kind]
                raw_ops = medians[pairs.get(kind, kind)]
                checked_ops = medians.get(checked.get(kind, ""), 0.0)
                calls = sum(r["ok"] + r["gave_up"] for r in measured)
                gave_up = sum(r["gave_up"] for r in measured)
                done = sum(r["ok"] for r in measured)
                rows.append({
                    "database": dialect, "processes": processes, "target": kind,
                    "updates_per_s": round(ops, 1), "ratio_to_raw": round(ops / raw_ops, 3),
                    "raw": pairs.get(kind, kind),
                    "ratio_to_checked": round(ops / checked_ops, 3) if checked_ops else None,
                    "calls": int(calls), "gave_up": int(gave_up),
                    "give_up_rate": round(gave_up / calls, 5) if calls else 0.0,
                    "races_per_update": round(sum(r["races"] for r in measured) / done, 3)
                    if done else None,
                    "cpu_us_per_update": round(sum(r["cpu"] for r in measured) / done * 1e6, 1)
                    if done else None,
                    "lost": int(sum(r["lost"] for r in measured)),
                    "rounds_updates_per_s": [round(r["ops"], 1) for r in measured],
                })  # fmt: skip
    finally:
        drop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hotkey", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql")
    parser.add_argument("--processes", default="4,16", help="process counts, comma-separated")
    parser.add_argument("--updates", type=int, default=150, help="updates per process per run")
    parser.add_argument("--retries", type=int, default=None,
                        help="retries per call (default: update()'s own default)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--targets", default="",
                        help="statestore targets to run, comma-separated (default: all);"
                        " the raw loops they are compared with always run")  # fmt: skip
    parser.add_argument("--json", default="benchmark-hotkey.json", help="where to write JSON")
    args = parser.parse_args(argv)
    from statestore.items import DEFAULT_UPDATE_RETRIES

    retries = DEFAULT_UPDATE_RETRIES if args.retries is None else args.retries
    counts = [int(n) for n in args.processes.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="statestore-hotkey-") as tmp:
        for dialect in args.dialects.split(","):
            print(f"… {dialect}", file=sys.stderr)
            chosen = [t for t in args.targets.split(",") if t]
            rows += run_dialect(dialect, counts, args.updates, retries, args.rounds, Path(tmp),
                                chosen)  # fmt: skip
    header = (f"{'database':<10} {'procs':>5} {'target':<22} {'updates/s':>10} {'x raw':>6} "
              f"{'x chk':>6} {'calls':>6} {'gave up':>7} {'rate':>8} {'races':>6} {'cpu µs':>7} "
              f"{'lost':>4}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        chk = "" if r["ratio_to_checked"] is None else f"{r['ratio_to_checked']:.2f}"
        print(f"{r['database']:<10} {r['processes']:>5} {r['target']:<22} "
              f"{r['updates_per_s']:>10.0f} {r['ratio_to_raw']:>6.2f} {chk:>6} {r['calls']:>6} "
              f"{r['gave_up']:>7} {r['give_up_rate']:>8.2%} {r['races_per_update'] or 0:>6.2f} "
              f"{r['cpu_us_per_update'] or 0:>7.0f} {r['lost']:>4}")  # fmt: skip
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "updates": args.updates, "retries": retries, "rounds": args.rounds}  # fmt: skip
    Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0
