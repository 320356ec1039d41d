"""``python -m benchmarks ui-overview``: the web UI's overview and browse pages at 10^6 keys.

For each database a throwaway database (PostgreSQL/MariaDB ``bench_ui``, SQLite in a
temporary directory) is migrated and filled through SQLAlchemy core (bulk inserts: the
fill is not what is measured) with ``--keys`` keys, 90 % task state (50 dags x 20 runs x
9 tasks x 10 map indices x keys) and 10 % asset state (100 assets), values of 10-1000
bytes and a few of 20 KB, expiries spread over the past and the coming 60 days, writes
over the past 30. Then, in ``--rounds`` rounds, it times each overview statement, the
whole :func:`~statestore.metastore.overview.read_overview`, the ``/ui/overview`` request
in process (cold: cache empty, and warm) when the UI is installed, the browse pages
(first and a deep keyset page), and two raw-driver reference points: ``count(*)`` and one
full pass summing the value lengths. The databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, insert, select
from sqlalchemy.engine import make_url

from statestore.metastore import browse, upgrade
from statestore.metastore import overview as ov
from statestore.metastore.backend import MetastoreStateBackend
from statestore.metastore.digests import key_digest, ref_digest, task_digest, task_row_id
from statestore.metastore.tables import asset, asset_state, task_state
from statestore.scopes import TaskScope

__all__ = ["main"]

SERVERS = {
    "postgresql": ("STATESTORE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": ("STATESTORE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}  # fmt: skip
DATABASE = "bench_ui"
CHUNK = 10_000
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _database(dialect: str, workdir: Path, reuse: bool) -> tuple[str, Callable[[], None]]:
    if dialect == "sqlite":
        return f"sqlite:///{workdir / 'ui.db'}", lambda: (workdir / "ui.db").unlink(True)
    env, default = SERVERS[dialect]
    admin_url = make_url(os.environ.get(env, default))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    quote, force = ('"', " WITH (FORCE)") if dialect == "postgresql" else ("`", "")

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote}{DATABASE}{quote}{force}")

    def drop_and_dispose() -> None:
        drop()
        admin.dispose()

    url = admin_url.set(database=DATABASE).render_as_string(hide_password=False)
    if reuse:
        return url, drop_and_dispose
    drop()
    with admin.connect() as conn:
        extra = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if dialect == "mysql" else ""
        conn.exec_driver_sql(f"CREATE DATABASE {quote}{DATABASE}{quote}{extra}")
    return url, drop_and_dispose


def _value(i: int) -> str:
    n = 20_000 if i % 100_003 == 7 else 10 + (i * 7919) % 991
    return '"' + "x" * (n - 2) + '"'


def _expires(i: int) -> datetime | None:
    slot = (i * 31) % 10
    if slot < 3:
        return None
    if slot == 3:
        return NOW - timedelta(hours=1 + i % 500)
    return NOW + timedelta(minutes=(i * 37) % (60 * 24 * 60))


def _updated(i: int) -> datetime:
    return NOW - timedelta(minutes=(i * 53) % (60 * 24 * 30))


def fill(url: str, keys: int) -> float:
    """Fill with ``keys`` keys (90 % task, 10 % asset); returns the seconds it took."""
    started = time.perf_counter()
    engine = create_engine(url)
    task_keys = keys * 9 // 10
    per_instance = max(1, task_keys // 90_000)  # 90,000 task instances
    with engine.begin() as conn:
        conn.execute(
            insert(asset),
            [{"name": f"asset{a:03}", "name_digest": ref_digest(f"asset{a:03}"), "active": True,
              "created_at": NOW, "updated_at": NOW} for a in range(100)],
        )  # fmt: skip
        ids = [row[0] for row in conn.execute(select(asset.c.id).order_by(asset.c.name))]
    rows: list[dict[str, Any]] = []

    def flush(table: Any) -> None:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
        rows.clear()

    for i in range(task_keys):
        instance, k = divmod(i, per_instance)
        d, rest = divmod(instance, 1800)
        r, rest = divmod(rest, 90)
        t, m = divmod(rest, 10)
        scope = TaskScope(f"dag{d:02}", f"scheduled__2026-11-{r + 1:02}", f"task{t}", m)
        key = f"key{k}"
        rows.append({"row_id": task_row_id(scope, key), "task_digest": task_digest(scope),
                     "dag_id": scope.dag_id, "run_id": scope.run_id, "task_id": scope.task_id,
                     "map_index": m, "key": key, "value": _value(i), "expires_at": _expires(i),
                     "updated_at": _updated(i), "version": 1, "updated_by": "bench"})  # fmt: skip
        if len(rows) == CHUNK:
            flush(task_state)
    if rows:
        flush(task_state)
    for i in range(keys - task_keys):
        key = f"key{i // 100:06}"
        rows.append({"asset_id": ids[i % 100], "key_digest": key_digest(key), "key": key,
                     "value": _value(i), "expires_at": _expires(i), "updated_at": _updated(i),
                     "version": 1, "updated_by": "bench"})  # fmt: skip
        if len(rows) == CHUNK:
            flush(asset_state)
    if rows:
        flush(asset_state)
    _analyze(engine.url.get_dialect().name, url)
    engine.dispose()
    return time.perf_counter() - started


def _analyze(dialect: str, url: str) -> None:
    """Fresh statistics (and PostgreSQL's visibility map, for index-only scans)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for table in ("statestore_task_state", "statestore_asset_state"):
            if dialect == "postgresql":
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
            elif dialect == "mysql":
                conn.exec_driver_sql(f"ANALYZE TABLE {table}").fetchall()
        if dialect == "sqlite":
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _statements(conn: Connection) -> dict[str, Callable[[], object]]:
    """Each statement of the admin overview, as ``read_overview`` runs it."""
    everything = ov.OverviewScope(everything=True)
    today = NOW.date()
    since = ov._midnight(today - timedelta(days=13))
    edges = [NOW] + [ov._midnight(today + timedelta(days=i)) for i in range(1, 15)]
    where = ov._task_where(everything)
    return {
        "task sizes+writes (1 pass)": lambda: ov._sizes_and_writes(
            conn, ov._ts.dag_id, ov._ts, where, since
        ),
        "asset sizes+writes (1 pass)": lambda: ov._sizes_and_writes(
            conn, ov._as.asset_id, ov._as, None, since
        ),
        "task expiry (range counts)": lambda: ov._expiry_counts(conn, ov._ts, where, edges, 0),
        "asset expiry (range counts)": lambda: ov._expiry_counts(conn, ov._as, None, edges, 0),
        "task keys per dag (index-only)": lambda: ov._counts(conn, ov._ts.dag_id, where),
        "task largest 10": lambda: ov._largest_tasks(conn, where, 10),
        "asset largest 10": lambda: ov._largest_assets(conn, None, 10),
        "read_overview (admin)": lambda: ov.read_overview(conn, everything, NOW),
        "read_overview (admin, index-only part)": lambda: ov.read_overview(
            conn, everything, NOW, complete=False
        ),
        "read_overview (one task + 1 asset)": lambda: ov.read_overview(
            conn,
            ov.OverviewScope(
                task=TaskScope("dag07", "scheduled__2026-11-05", "task3", 4),
                assets=frozenset({"asset042"}),
            ),
            NOW,
        ),
        "raw count(*) task state": lambda: conn.exec_driver_sql(
            "SELECT count(*) FROM statestore_task_state"
        ).scalar(),
        "raw sum(length(value)) task state": lambda: conn.exec_driver_sql(
            "SELECT sum(length(value)) FROM statestore_task_state"
        ).scalar(),
    }


def _browse(backend: MetastoreStateBackend) -> dict[str, Callable[[], object]]:
    """The browse pages' plans (:mod:`statestore.metastore.browse`): first and deep pages."""
    one = TaskScope("dag07", "scheduled__2026-11-05", "task3", 4)
    asset_id = browse.fetch(backend, browse.asset_by_name("asset042"))
    assert asset_id is not None
    run = one.run_id
    plans: dict[str, Callable[[], Any]] = {
        "browse: dags, first page": browse.dags,
        "browse: dags, deep page (after dag45)": lambda: browse.dags(after="dag45"),
        "browse: runs of a dag, first page": lambda: browse.runs("dag07"),
        "browse: runs of a dag, deep page": lambda: browse.runs(
            "dag07", after="scheduled__2026-11-18"
        ),
        "browse: tasks of a run": lambda: browse.tasks("dag07", run),
        "browse: instances of a task": lambda: browse.instances("dag07", run, "task3"),
        "browse: instances, deep page": lambda: browse.instances(
            "dag07", run, "task3", after=browse.Instance(7, None)
        ),
        "browse: keys of an instance": lambda: browse.task_keys(one),
        "browse: run search (prefix)": lambda: browse.run_search("scheduled__2026-11-19"),
        "browse: asset keys, first page": lambda: browse.asset_keys(asset_id.asset_id),
        "browse: asset keys, deep page": lambda: browse.asset_keys(
            asset_id.asset_id, after="key000900"
        ),
        "browse: asset key prefix": lambda: browse.asset_keys(asset_id.asset_id, prefix="key0005"),
    }

    def timed(make: Callable[[], Any]) -> Callable[[], object]:
        return lambda: browse.fetch(backend, make())

    return {name: timed(make) for name, make in plans.items()}


def _time(op: Callable[[], object]) -> float:
    started = time.perf_counter()
    op()
    return (time.perf_counter() - started) * 1000


async def _page_async(url: str, rounds: int) -> dict[str, list[float]]:
    import httpx

    from statestore import StateStore
    from statestore.server import Grant, create_app, generate_keypair, mint_token

    private, public = generate_keypair()
    store = StateStore(url)
    app = create_app(store, public_key=public, close_store=False)
    admin = mint_token(Grant("admin:bench", admin=True), private)
    task = TaskScope("dag07", "scheduled__2026-11-05", "task3", 4)
    grant = Grant("task:bench", task=task, read_assets=frozenset({"asset042"}))
    timings: dict[str, list[float]] = {}

    async def get(client: httpx.AsyncClient, name: str) -> str:
        started = time.perf_counter()
        answer = await client.get("/ui/overview")
        timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:300]
        return answer.text

    transport = httpx.ASGITransport(app=app)
    try:
        for _ in range(rounds):
            app.state.statestore_ui_overview = None  # cold: nothing cached
            async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
                await client.post("/ui/login", data={"token": admin})
                started = time.perf_counter()
                text = await get(client, "page: admin, cold (waits <= budget)")
                if "being computed (key counts" in text:
                    timings.setdefault("  (cold answers that were 'being computed')", []).append(1)
                cache = app.state.statestore_ui_overview
                quick = [t for (_, complete), t in cache._running.items() if not complete]
                await asyncio.gather(*quick)
                timings.setdefault("background: index-only overview ready", []).append(
                    (time.perf_counter() - started) * 1000
                )
                await get(client, "page: admin, index-only answer from memory")
                await cache.wait()
                timings.setdefault("background: complete overview ready", []).append(
                    (time.perf_counter() - started) * 1000
                )
                for _ in range(3):
                    await get(client, "page: admin, complete, from memory")
            async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
                await client.post("/ui/login", data={"token": mint_token(grant, private)})
                await get(client, "page: task token, computed")
                await get(client, "page: task token, from the cache")
    finally:
        await store.aclose()
    return timings


def _page(url: str, rounds: int) -> dict[str, list[float]]:
    """The ``/ui/overview`` request in process (httpx.ASGITransport): admin cold and
    cached, the background computation, and a task token's page."""
    return asyncio.run(_page_async(url, rounds))


def run(
    dialect: str,
    keys: int,
    rounds: int,
    workdir: Path,
    *,
    keep: bool = False,
    reuse: bool = False,
    page_only: bool = False,
) -> dict[str, Any]:
    url, drop = _database(dialect, workdir, reuse)
    try:
        fill_s = 0.0
        if not reuse:
            upgrade(url)
            print(f"… {dialect}: filling {keys} keys", file=sys.stderr)
            fill_s = fill(url, keys)
        engine = create_engine(url)
        timings: dict[str, list[float]] = {}
        backend = MetastoreStateBackend(url)
        with engine.connect() as conn:
            ops = {**_statements(conn), **_browse(backend)}
            for _ in range(0 if page_only else rounds):
                for name, op in ops.items():
                    timings.setdefault(name, []).append(_time(op))
                conn.rollback()
        backend.close()
        engine.dispose()
        timings.update(_page(url, rounds))
        return {"fill_s": round(fill_s, 1), "ms": timings}
    finally:
        if not keep:
            drop()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ui-overview", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="benchmark-ui-overview.json")
    parser.add_argument("--workdir", help="where the SQLite file goes (default: a temporary "
                        "directory, removed afterwards)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the filled databases")
    parser.add_argument("--reuse", action="store_true", help="time databases kept by --keep")
    parser.add_argument("--page-only", action="store_true", help="time the page alone")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="statestore-bench-ui-") as tmp:
        for dialect in args.dialects.split(","):
            before = _load()
            workdir = Path(args.workdir or tmp)
            found = run(dialect, args.keys, args.rounds, workdir, keep=args.keep,
                        reuse=args.reuse, page_only=args.page_only)  # fmt: skip
            found["load_before"], found["load_after"] = before, _load()
            results[dialect] = found
            print(f"\n{dialect}: fill {found['fill_s']} s, load {before} -> {_load()}")
            for name, ms in found["ms"].items():
                print(f"  {name:<40} median {statistics.median(ms):>9.1f} ms  "
                      f"min {min(ms):>9.1f}  max {max(ms):>9.1f}")  # fmt: skip
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "keys": args.keys, "rounds": args.rounds, "cpus": os.cpu_count()}  # fmt: skip
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
