"""A private nginx load balancer in front of state server replicas, for tests.

The distribution's ``nginx`` binary, never its system service: its own configuration,
pid file, logs and temporary directories in a private directory (``-p``, ``-e``),
listening on a free loopback port, in the foreground (``daemon off``) as a child of
the test, stopped by ``close()``. The configuration is the one the how-to
(docs/howto-state-server.md, "nginx") recommends, minus TLS and the rate limit: the
replicas behind ``/state/`` with the prefix stripped (so they run with ``--root-path
/state``), kept-alive upstream connections, resending only on connection errors.
Its access log names the replica (``$upstream_addr``) that served each request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.integration.serve_command import free_port

__all__ = ["PREFIX", "Nginx", "NginxError", "find_nginx"]

PREFIX = "/state"
_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")
_START_S = 15.0
_STOP_S = 10.0
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxError(RuntimeError):
    """nginx could not be started (its error log's tail is in the message)."""


def find_nginx() -> str | None:
    """The nginx executable, or ``None`` if it is not installed."""
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("nginx")


class Nginx:
    """nginx balancing ``PREFIX/`` over the replicas on ``upstream_ports``."""

    def __init__(self, upstream_ports: list[int], workdir: Path, **timeouts: str) -> None:
        executable = find_nginx()
        if executable is None:
            raise NginxError("nginx is not installed")
        self.executable = executable
        self.upstream_ports = upstream_ports
        self.dir = workdir / "nginx"
        self.dir.mkdir()
        for name in _TEMP_DIRS:
            (self.dir / name).mkdir()
        self.timeouts = {"client_header_timeout": "10s", "client_body_timeout": "10s",
                         "proxy_read_timeout": "60s", **timeouts}  # fmt: skip
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL workers are given: nginx and the prefix."""
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.dir / "error.log"

    def _write_config(self) -> Path:
        servers = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;"
            for p in self.upstream_ports
        )
        temp = "\n".join(f"    {n}_temp_path {self.dir / n};" for n in _TEMP_DIRS)
        timeouts = "\n".join(f"        {k} {v};" for k, v in self.timeouts.items())
        # As root (CI), worker processes would drop to "nobody", who cannot enter the
        # test's private directories: keep them as the current user.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""
daemon off;
{user}
worker_processes 1;
pid {self.dir / "nginx.pid"};
error_log {self.error_log} warn;
events {{ worker_connections 512; }}
http {{
    log_format upstream '$status $request_method $upstream_addr';  # tried upstreams last
    access_log {self.access_log} upstream;
{temp}
    upstream statestore {{
{servers}
        keepalive 64;
        keepalive_timeout 4s;  # below the replicas' --keep-alive-timeout (5 s)
    }}
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 1m;
{timeouts}
        location {PREFIX}/ {{
            proxy_pass http://statestore/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout;
        }}
    }}
}}
""")
        return conf

    def start(self) -> None:
        """Start nginx and wait (bounded) until it forwards ``/livez`` to a replica."""
        for _attempt in range(3):
            self.port = free_port()
            conf = self._write_config()
            self._process = subprocess.Popen(
                [self.executable, "-p", str(self.dir), "-e", str(self.error_log), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own group: close() reaches its workers
            )
            if self._wait_until_serving():
                return
            self.close()
        raise NginxError(f"nginx did not start; its error log ends:\n{self.log_tail()}")

    def _wait_until_serving(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _START_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # exited: most likely the port was taken meanwhile
            try:
                if httpx.get(f"{self.url}/livez", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        return False

    def _logged(self) -> list[tuple[str, str, list[str]]]:
        """(status, method, upstreams tried in order) of each request nginx logged."""
        entries = []
        for line in self.access_log.read_text().splitlines():
            status, method, upstreams = line.split(" ", 2)
            entries.append((status, method, upstreams.split(", ")))
        return entries

    def served_by(self) -> dict[str, int]:
        """Requests per upstream address that answered them, from the access log."""
        counts: dict[str, int] = {}
        for _status, _method, upstreams in self._logged():
            counts[upstreams[-1]] = counts.get(upstreams[-1], 0) + 1
        return counts

    def passed_on(self) -> list[tuple[str, str]]:
        """(method, status) of each request nginx passed to a second upstream."""
        return [(method, status) for status, method, tried in self._logged() if len(tried) > 1]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def close(self) -> None:
        """Stop nginx (SIGTERM: fast shutdown), then SIGKILL its group after a bounded wait."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_STOP_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a worker left behind, if any
        process.wait(timeout=_STOP_S)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
