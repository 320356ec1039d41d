"""``python -m benchmarks http``: the state server's own figures, beside the direct path.

Four measurements, on each database, through a real ``statestore serve`` process:

- **breakdown**: single-client sync get and set through the HTTP backend, as wall time
  per operation split into the client's CPU, the server's CPU (``/proc/<pid>/stat``:
  every thread of the process, uvicorn and the database driver included) and the rest
  (waiting: the database, the kernel, the other process) -- beside the direct metastore
  path of the same run, as a ratio;
- **sweep**: 1, 8, 32 and 128 concurrent async clients (one coroutine and one
  connection each, all in this process) doing gets, then sets, for a fixed time:
  throughput and p50/p99 latency; on PostgreSQL also the most database connections the
  server held meanwhile (``pg_stat_activity`` for the run's own database);
- **tokens**: the cost of verifying a token, Ed25519 and HS256, with the verified-token
  cache (a worker's second and later requests) and without it (its first).

The client and the server share this machine's cores: on a small box the figures are
a floor for what a separate server host gives. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks.http_server import HttpTarget, Server, client_config, serve
from benchmarks.targets import StatestoreTarget
from statestore import StateStore, TaskScope, wire

VALUE = {"status": "running", "rows": 123456, "note": "x" * 84}  # 128 bytes as JSON
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- breakdown: where one request's time goes --------------------------------------------


def _timed(op: Callable[[int], object], n: int, server_pid: int | None) -> dict[str, float]:
    server0 = cpu_seconds(server_pid) if server_pid else 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        op(i)
    wall = (time.perf_counter() - wall0) / n * 1e6
    figures = {"ops_per_s": 1e6 / wall, "wall_us": wall,
               "client_cpu_us": (time.process_time() - cpu0) / n * 1e6}  # fmt: skip
    if server_pid:
        figures["server_cpu_us"] = (cpu_seconds(server_pid) - server0) / n * 1e6
    return figures


Ops = dict[str, Callable[[int], object]]


def _single_ops(t: StatestoreTarget | HttpTarget, prefix: str) -> Ops:
    return {
        "set (new keys)": lambda i: t.set(f"{prefix}k{i}", VALUE),
        "get (hits)": lambda i: t.get(f"{prefix}k{i}"),
        "overwrite": lambda i: t.set(f"{prefix}k{i}", VALUE),
        "asset get": lambda i: t.asset_get(f"a{i % 100}"),
        "update (+1)": lambda i: t.update(f"{prefix}n{i % 50}"),
    }


def breakdown(url: str, server: Server, n: int, rounds: int) -> list[dict[str, Any]]:
    """Single-client sync get/set/asset get/overwrite, HTTP against direct, interleaved."""
    direct, http = StatestoreTarget(url), HttpTarget(server)
    pid = server.process.pid
    seen: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for target in (direct, http):
            for i in range(100):  # warm-up: connections, statements, the token cache
                target.set(f"warm{i}", VALUE)
                target.get(f"warm{i}")
                target.asset_set(f"a{i}", VALUE)
        for round_no in range(rounds):
            for target in (direct, http):
                for name, op in _single_ops(target, f"r{round_no}").items():
                    figures = _timed(op, n, pid if target is http else None)
                    seen.setdefault((name, target.name), []).append(figures)
    finally:
        direct.close()
        http.close()
    rows = []
    for (workload, target_name), runs in seen.items():
        row: dict[str, Any] = {"workload": workload, "target": target_name}
        for field in runs[0]:
            row[field] = round(statistics.median(r[field] for r in runs), 1)
        rows.append(row)
    by = {(r["workload"], r["target"]): r for r in rows}
    for row in rows:
        base = by[(row["workload"], direct.name)]["ops_per_s"]
        row["ratio_to_direct"] = round(row["ops_per_s"] / base, 3)
    return rows


# -- sweep: concurrent async clients -------------------------------------------------------


class _ConnectionSampler:
    """The most connections to one PostgreSQL database seen while it runs."""

    def __init__(self, url: str, database: str) -> None:
        self._engine = create_engine(url, pool_size=1)
        self._database = database
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
        )
        with self._engine.connect() as conn:
            while not self._stop.is_set():
                count = conn.execute(query, {"db": self._database}).scalar_one()
                conn.rollback()
                self.peak = max(self.peak, int(count))
                self._stop.wait(0.05)

    def __enter__(self) -> _ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._engine.dispose()


async def _clients(
    server: Server, count: int, seconds: float, workload: str
) -> tuple[int, float, list[int]]:
    stores, states = [], []
    for c in range(count):
        scope = TaskScope("sweep", "run", f"client{c}")
        store = StateStore(server.url, token=server.task_token(scope, "none"),
                           config=client_config())  # fmt: skip
        stores.append(store)
        states.append(store.task_state(scope))
    for state in states:  # a connection each, and a key to read
        await state.aset("k0", VALUE)
    latencies: list[int] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def client(c: int) -> None:
        nonlocal done
        state, i = states[c], 0
        op: Callable[[int], Awaitable[object]] = (
            (lambda i: state.aget("k0")) if workload == "get"
            else (lambda i: state.aset(f"k{i % 50}", VALUE))
        )  # fmt: skip
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter_ns()
            await op(i)
            latencies.append(time.perf_counter_ns() - t0)
            i += 1
        done += i

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(count)))
    elapsed = time.perf_counter() - started
    for store in stores:
        await store.aclose()
    return done, elapsed, latencies


def sweep(
    server: Server, clients: list[int], seconds: float, sampler_url: str | None, database: str
) -> list[dict[str, Any]]:
    rows = []
    for workload in ("get", "set"):
        for count in clients:
            sampled = (
                _ConnectionSampler(sampler_url, database) if sampler_url
                else contextlib.nullcontext()
            )  # fmt: skip
            with sampled as sampler:
                done, elapsed, lat = asyncio.run(_clients(server, count, seconds, workload))
            lat.sort()
            row: dict[str, Any] = {
                "workload": f"async {workload}", "clients": count,
                "ops_per_s": round(done / elapsed, 1),
                "p50_us": round(lat[len(lat) // 2] / 1000, 1),
                "p99_us": round(lat[int(len(lat) * 0.99)] / 1000, 1), "load": _load(),
            }  # fmt: skip
            if sampler is not None:
                row["db_connections_peak"] = sampler.peak
            rows.append(row)
            print(f"  sweep {row}", file=sys.stderr)
    return rows


# -- tokens -------------------------------------------------------------------------------


def token_costs(n: int = 3000) -> list[dict[str, Any]]:
    """µs per verification: the first use of a token (signature) and later ones (cache)."""
    from statestore.server import SharedSecret, generate_keypair, mint_token
    from statestore.server.auth import TokenVerifier, load_private_key, load_public_key

    private_pem, public_pem = generate_keypair()
    secret = SharedSecret(os.urandom(32))
    grant = wire.Grant("bench", task=TaskScope("d", "r", "t"), write_assets=frozenset({"a"}))
    rows = []
    for name, signing, verifying in (
        ("Ed25519", load_private_key(private_pem), load_public_key(public_pem)),
        ("HS256", secret, secret),
    ):
        verifier = TokenVerifier(verifying)
        tokens = [mint_token(grant, signing) for _ in range(n)]
        started = time.perf_counter()
        for token in tokens:  # each new: the signature is checked
            verifier.verify(token)
        uncached = (time.perf_counter() - started) / n * 1e6
        started = time.perf_counter()
        for _ in range(n):
            verifier.verify(tokens[0])
        cached = (time.perf_counter() - started) / n * 1e6
        rows.append({"algorithm": name, "first_use_us": round(uncached, 1),
                     "cached_us": round(cached, 2)})  # fmt: skip
    return rows


# -- the run ------------------------------------------------------------------------------


@contextlib.contextmanager
def _database(dialect: str, workdir: Path) -> Iterator[tuple[str, str | None, str]]:
    from benchmarks.__main__ import _fresh_database

    url, drop = _fresh_database(dialect, workdir)
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        admin = url if dialect == "postgresql" else None
        yield url, admin, parsed.database or ""
    finally:
        drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks http", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--ops", type=int, default=1000, help="operations per workload and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=5.0, help="per sweep step")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--json", default="benchmark-http.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "meta": {"python": platform.python_version(), "cores": os.cpu_count(),
                 "ops": args.ops, "rounds": args.rounds, "load_before": _load()},
        "tokens": token_costs(),
    }  # fmt: skip
    print(f"tokens: {result['tokens']}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="statestore-bench-http-") as tmp:
        for dialect in args.dialects.split(","):
            with _database(dialect, Path(tmp)) as (url, admin, database), serve(url) as server:
                print(f"… {dialect} (load {_load()})", file=sys.stderr)
                rows = breakdown(url, server, args.ops, args.rounds)
                for row in rows:
                    print(f"  {row}", file=sys.stderr)
                entry: dict[str, Any] = {"breakdown": rows, "load": _load()}
                if not args.no_sweep:
                    clients = [int(c) for c in args.clients.split(",")]
                    entry["sweep"] = sweep(server, clients, args.seconds, admin, database)
                result[dialect] = entry
    result["meta"]["load_after"] = _load()
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
