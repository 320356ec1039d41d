"""A worker with only a URL and a token runs the README's example against a state server.

The operator's side, with the real commands: ``statestore token keygen`` makes a key
pair, ``statestore serve`` runs the server over the database (it holds only the public
key), and ``statestore token mint`` makes a short-lived token for one task instance and
the asset it writes. The worker is a separate process whose environment holds nothing
but the server's URL and the token file's path -- no database URL, no password, no
driver: it runs the README's fifteen lines through ``HttpStateBackend``, then tries what
its token does not grant (another task's state, another asset) and is refused.

Run it (default database: a SQLite file in a temporary directory)::

    python examples/state_server_worker.py [DATABASE_URL]

A server database must be migrated first: ``statestore --url DATABASE_URL db upgrade``.
Needs the server extra: ``pip install -e ".[server]"``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from statestore import StateStore, TaskScope

JOB = TaskScope("spark_dag", "run-2026-11-24", "submit_job")  # the README's task instance
ASSET = "orders"


def worker() -> None:
    """The README's example; the store comes from STATESTORE__CLIENT__* alone."""
    from datetime import timedelta  # noqa: PLC0415

    from statestore import NEVER_EXPIRE  # noqa: PLC0415
    from statestore.exceptions import AccessDeniedError  # noqa: PLC0415

    with StateStore() as store:  # [client] url and token_file from the environment
        print(f"worker: {store!r}")
        state = store.task_state(JOB)

        job_id = state.get("job_id")
        if job_id is None:  # first attempt: submit, and remember the job across retries
            job_id = "job-42"
            state.set("job_id", job_id, retention=NEVER_EXPIRE)

        state.set("progress", {"rows": 1000, "status": "running"}, retention=timedelta(hours=6))
        watermark = store.asset_state(ASSET).get("watermark", "1970-01-01")
        store.asset_state(ASSET).set("watermark", "2026-11-24")
        print(f"worker: job_id = {job_id}, watermark was {watermark}")

        other = TaskScope("spark_dag", "run-2026-11-24", "another_task")
        attempts: list[tuple[str, Callable[[], object]]] = [
            ("another task's state", lambda: store.task_state(other).get("job_id")),
            ("an asset not granted", lambda: store.asset_state("customers").get("watermark")),
        ]
        for what, call in attempts:
            try:
                call()
            except AccessDeniedError as exc:
                print(f"worker: {what}: refused ({type(exc).__name__})")
            else:
                raise SystemExit(f"worker: {what} was not refused")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def statestore(*args: str) -> str:
    """Run the statestore command (the one installed with this Python); its output."""
    command = [sys.executable, "-m", "statestore", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout  # noqa: S603


def wait_ready(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"statestore serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"statestore serve was not ready within 60 s:\n{log.read_text()}")


def operator(url: str, workdir: Path) -> None:
    with StateStore(url) as store:  # rerunnable: start from no state for this example
        store.task_state(JOB).clear()
        store.asset_state(ASSET).clear()
    private_key, public_key = workdir / "signing.pem", workdir / "verify.pem"
    statestore(
        "token", "keygen", "--private-key", str(private_key), "--public-key", str(public_key)
    )
    print("operator: key pair made (the server gets only the public key)")

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = workdir / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE")}
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "statestore", "--url", url, "serve",
             "--port", str(port), "--public-key", str(public_key)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_ready(server, base_url, log)
        print("operator: statestore serve is ready")

        token_file = workdir / "task.token"
        minted = statestore(
            "token", "mint", "--private-key", str(private_key),
            "--dag", JOB.dag_id, "--run", JOB.run_id, "--task", JOB.task_id,
            "--write-asset", ASSET, "--ttl", "15m",
        )  # fmt: skip
        token_file.write_text(minted.strip())
        token_file.chmod(0o600)
        print(f"operator: minted a 15-minute token for {JOB.describe()} writing {ASSET!r}")

        # The worker's whole configuration: where the server is, and its token.
        worker_env = {"PATH": os.environ.get("PATH", ""),
                      "STATESTORE__CLIENT__URL": base_url,
                      "STATESTORE__CLIENT__TOKEN_FILE": str(token_file)}  # fmt: skip
        for attempt in (1, 2):  # a retry finds the job id: no second submission
            ran = subprocess.run(  # noqa: S603
                [sys.executable, "-W", "error", __file__, "--worker"],
                env=worker_env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            sys.stdout.write(ran.stdout.replace("worker:", f"worker (attempt {attempt}):"))
            if ran.returncode != 0 or ran.stderr:
                raise SystemExit(f"the worker failed:\n{ran.stderr}")
    finally:
        server.terminate()
        server.wait(20)

    # What the database holds, read directly (the operator has the database URL).
    with StateStore(url) as store:
        item = store.task_state(JOB).get_item("job_id")
        assert item is not None
        assert item.value == "job-42", item
        assert item.version == 1, item  # written once, by the first attempt
        watermark = store.asset_state(ASSET).get("watermark")
        assert watermark == "2026-11-24", watermark
        print(f"database: job_id = {item.value!r} (version {item.version}), written by "
              f"{item.updated_by!r}; {ASSET}.watermark = {watermark!r}")  # fmt: skip
    if "Traceback" in log.read_text():
        raise SystemExit(f"the server logged a traceback:\n{log.read_text()}")


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        worker()
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("STATESTORE__DATABASE__URL")
        operator(url or f"sqlite:///{workdir / 'state.db'}", workdir)


if __name__ == "__main__":
    main()
