"""Which ASGI framework for the state server: FastAPI, Starlette or Litestar, measured.

The workload is the server tier's hottest route: GET one key of task state, the scope in
the query string (``wire.scope_from_params``), the value read with ``get_item`` from a
real ``InMemoryStateBackend`` and returned verbatim with its metadata headers
(``wire.item_headers``). Each framework serves it in its own idiomatic form (FastAPI and
Litestar with typed query parameters -- what gives them an OpenAPI document --
Starlette reading ``request.query_params``), under uvicorn with httptools and uvloop in
a subprocess on loopback; one httpx client with keep-alive sends a fixed number of
requests, in interleaved rounds. Nothing here asserts a speed.

    python -m benchmarks.server_frameworks [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import Response as FastAPIResponse
from litestar import Litestar, get
from litestar import Response as LitestarResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from statestore import wire
from statestore.backends.memory import InMemoryStateBackend
from statestore.scopes import TaskScope

FRAMEWORKS = ("starlette", "fastapi", "fastapi_raw", "litestar")
SCOPE = TaskScope("bench_dag", "run_1", "extract")
KEY = "checkpoint"
VALUE = '{"status":"running","rows":123456,"note":"' + "x" * 84 + '"}'  # 128 bytes


def _backend() -> InMemoryStateBackend:
    backend = InMemoryStateBackend()
    backend.set_item(SCOPE, KEY, VALUE, updated_by="bench")
    return backend


def _lookup(
    backend: InMemoryStateBackend, params: dict[str, str]
) -> tuple[int, str, dict[str, str]]:
    scope = wire.scope_from_params(params, task=True)
    item = backend.get_item(scope, params["key"])
    if item is None:
        return 404, "{}", {}
    return 200, item.value, wire.item_headers(item)


def starlette_app() -> Any:
    backend = _backend()

    async def get_key(request: Request) -> Response:
        status, body, headers = _lookup(backend, dict(request.query_params))
        return Response(body, status, headers, media_type="application/json")

    return Starlette(routes=[Route(wire.TASK_KEY, get_key)])


def fastapi_app() -> Any:
    backend = _backend()
    app = FastAPI()

    @app.get(wire.TASK_KEY)
    async def get_key(
        dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1
    ) -> FastAPIResponse:
        params = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id,
                  "map_index": str(map_index), "key": key}  # fmt: skip
        status, body, headers = _lookup(backend, params)
        return FastAPIResponse(body, status, headers, media_type="application/json")

    return app


def fastapi_raw_app() -> Any:
    """FastAPI as the state server uses it: the query read through wire, no binding."""
    backend = _backend()
    app = FastAPI()

    @app.get(wire.TASK_KEY)
    async def get_key(request: Request) -> FastAPIResponse:
        status, body, headers = _lookup(backend, dict(request.query_params))
        return FastAPIResponse(body, status, headers, media_type="application/json")

    return app


def litestar_app() -> Any:
    backend = _backend()

    @get(wire.TASK_KEY)
    async def get_key(
        dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1
    ) -> LitestarResponse[bytes]:
        params = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id,
                  "map_index": str(map_index), "key": key}  # fmt: skip
        status, body, headers = _lookup(backend, params)
        return LitestarResponse(body.encode(), status_code=status, headers=headers,
                        media_type="application/json")  # fmt: skip

    return Litestar([get_key], openapi_config=None)


def _serve(framework: str, port: int) -> None:
    import uvicorn

    builders = {
        "starlette": starlette_app,
        "fastapi": fastapi_app,
        "fastapi_raw": fastapi_raw_app,
        "litestar": litestar_app,
    }
    app = builders[framework]()
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="uvloop",
                log_level="warning", access_log=False)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(framework: str) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.server_frameworks",
            "--serve",
            framework,
            "--port",
            str(port),
        ]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/", timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{framework} server did not start") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _round(base: str, requests: int) -> tuple[float, float, float]:
    params = {**wire.key_params(SCOPE, KEY)}
    url = base + wire.TASK_KEY
    latencies = []
    with httpx.Client(timeout=10) as client:
        for _ in range(200):  # warm-up: connection, caches
            client.get(url, params=params)
        start = time.perf_counter()
        for _ in range(requests):
            t0 = time.perf_counter()
            response = client.get(url, params=params)
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200 or response.text != VALUE:
                raise SystemExit(f"wrong answer from {base}: {response.status_code}")
        elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return requests / elapsed, statistics.median(latencies) * 1e3, p99 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return
    results: dict[str, list[tuple[float, float, float]]] = {f: [] for f in FRAMEWORKS}
    for _ in range(args.rounds):  # interleaved: drift on a shared machine hits all alike
        for framework in FRAMEWORKS:
            with _server(framework) as base:
                results[framework].append(_round(base, args.requests))
    print(f"{'framework':<12} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8}  rounds req/s")
    for framework, rounds in results.items():
        rps = statistics.median(r[0] for r in rounds)
        p50 = statistics.median(r[1] for r in rounds)
        p99 = statistics.median(r[2] for r in rounds)
        each = " ".join(f"{r[0]:.0f}" for r in rounds)
        print(f"{framework:<12} {rps:>15.0f} {p50:>8.3f} {p99:>8.3f}  {each}")


if __name__ == "__main__":
    main()
