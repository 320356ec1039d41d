"""The real ``statestore serve`` command as a child process, for tests.

Unlike :mod:`tests.integration.http_server` (uvicorn on an inherited socket, for speed),
this runs the command an operator runs, with its options, so what it sets up
(uvicorn's limits, the root path, the timeouts) is what is tested. The port is a free
one the kernel chose, tried again on a new one if the command could not bind it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from statestore import wire

__all__ = ["Served", "free_port", "start_serve"]

_START_S = 60.0
_STOP_S = 15.0


def free_port() -> int:
    """A loopback port nobody listens on now (racy by nature; callers retry)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """One ``statestore serve`` process: its URL, port, log and the process."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    args: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 (the process and any uvicorn workers it started)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=_STOP_S)

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL after a bounded wait."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=_STOP_S)
        # Workers of --workers N share the group: none may outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=_STOP_S)


def _wait(served: Served, probe: str, deadline: float) -> bool:
    """True once ``probe`` answers 200; False if the process exited (port taken?)."""
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            return False
        try:
            if httpx.get(served.url + probe, timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    served.stop()
    raise RuntimeError(f"statestore serve did not come up:\n{served.log_text()[-3000:]}")


def start_serve(
    database_url: str,
    workdir: Path,
    public_key_file: Path,
    *,
    args: tuple[str, ...] = (),
    port: int | None = None,
    probe: str = wire.LIVEZ,
    env: dict[str, str] | None = None,
    name: str = "serve",
) -> Served:
    """``statestore --url DATABASE serve --port P --public-key F ARGS`` until ``probe``
    answers. ``port``: a given one (a restart on the same port), else a free one."""
    command_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STATESTORE")}
    command_env.update(env or {})
    deadline = time.monotonic() + _START_S
    for _attempt in range(3):
        chosen = port or free_port()
        log = workdir / f"{name}-{chosen}.log"
        command = [sys.executable, "-m", "statestore", "--url", database_url, "serve",
                   "--port", str(chosen), "--public-key", str(public_key_file), *args]  # fmt: skip
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=command_env,
                cwd=workdir,
                start_new_session=True,  # its own group: kill() reaches uvicorn's workers
            )
        served = Served(f"http://127.0.0.1:{chosen}", chosen, process, log, command)
        if _wait(served, probe, deadline):
            return served
        served.stop()
        if port is not None:
            break
    raise RuntimeError(f"statestore serve exited at start:\n{served.log_text()[-3000:]}")
