"""A private PgBouncer in front of the test PostgreSQL server.

Production puts a pooler between many workers and one PostgreSQL; in transaction mode
(Airflow's Helm chart, most managed offerings) clients take turns on a few shared
server connections, so anything a client leaves on "its" server session -- a named
prepared statement, a session-level advisory lock, a ``SET`` -- reaches other clients.
The tests run the library through a real PgBouncer to prove that it leaves nothing.

Each instance is the distribution's ``pgbouncer`` binary, never its system service: own
ini, auth file, log and pid file in a private directory, listening on a free loopback
port (no unix socket), in the foreground as a child of the test process, stopped on
``close()``. ``default_pool_size`` is kept small so that different clients really do
share server connections. The ``[databases]`` entry ``*`` routes any database name to
the real server, so a test reaches a fresh database ``d`` at ``url("d")``.

PgBouncer refuses the startup parameter ``options``, so the per-test ``search_path``
schemas of the direct PostgreSQL fixture cannot be used through it: these tests use a
fresh database instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
from sqlalchemy.engine import URL

__all__ = ["PgBouncer", "PgBouncerError", "find_pgbouncer"]

_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
_START_S = 15.0
_STOP_S = 10.0
# PgBouncer refuses to run as root; as root (CI), it drops to this user instead.
_UNPRIVILEGED = "nobody"


class PgBouncerError(RuntimeError):
    """PgBouncer could not be started (its log's tail is in the message)."""


def find_pgbouncer() -> str | None:
    """The pgbouncer executable, or ``None`` if it is not installed."""
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("pgbouncer")


def _free_port() -> int:
    # Racy by nature (another process may take it before PgBouncer binds); start()
    # retries on a new port when PgBouncer exits at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """One PgBouncer process; use as a context manager or call ``start``/``close``.

    ``server`` is the real server's URL (host, port and user are taken from it).
    """

    def __init__(
        self, server: URL, *, pool_mode: str, pool_size: int = 2, max_client_conn: int = 500
    ) -> None:
        if pool_mode not in ("session", "transaction"):
            raise ValueError(f"pool_mode must be session or transaction, not {pool_mode!r}")
        executable = find_pgbouncer()
        if executable is None:
            raise PgBouncerError("pgbouncer is not installed")
        self.executable = executable
        self.server = server
        self.pool_mode = pool_mode
        self.max_client_conn = max_client_conn
        self.pool_size = pool_size
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix=f"pgbouncer-{pool_mode}-"))
        self._process: subprocess.Popen[bytes] | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def log_file(self) -> Path:
        return self.dir / "pgbouncer.log"

    def _write_config(self) -> Path:
        user = self.server.username or "postgres"
        # trust: no client password; the user must still be listed in the auth file.
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={self.server.host or '127.0.0.1'} port={self.server.port or 5432}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.dir / 'users.txt'}",
                    f"pool_mode = {self.pool_mode}",
                    f"default_pool_size = {self.pool_size}",
                    "min_pool_size = 0",
                    "reserve_pool_size = 0",
                    f"max_client_conn = {self.max_client_conn}",
                    f"admin_users = {user}",
                    f"logfile = {self.log_file}",
                    f"pidfile = {self.dir / 'pgbouncer.pid'}",
                    # Keep the log about what the tests do, not every login.
                    "log_connections = 0",
                    "log_disconnections = 0",
                    "",
                ]
            )
        )
        return ini

    def url(self, database: str, query: dict[str, str] | None = None) -> URL:
        """A psycopg URL of ``database`` on the real server, through this PgBouncer."""
        url = URL.create(
            "postgresql+psycopg",
            username=self.server.username or "postgres",
            password=self.server.password,
            host="127.0.0.1",
            port=self.port,
            database=database,
        )
        return url.update_query_dict(query) if query else url

    # -- process -------------------------------------------------------------------------

    def start(self) -> None:
        """Start PgBouncer and wait (bounded) until it serves a query."""
        for _attempt in range(3):
            self.port = _free_port()
            ini = self._write_config()
            command = [self.executable]
            if os.geteuid() == 0:
                entry = pwd.getpwnam(_UNPRIVILEGED)
                for path in [self.dir, *self.dir.iterdir()]:
                    os.chown(path, entry.pw_uid, entry.pw_gid)
                command += ["-u", _UNPRIVILEGED]
            self._process = subprocess.Popen(
                [*command, str(ini)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_until_serving():
                return
            self.close(remove=False)
        raise PgBouncerError(f"pgbouncer did not start; its log ends:\n{self.log_tail()}")

    def _wait_until_serving(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _START_S
        database = self.server.database or "postgres"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # exited: most likely the port was taken meanwhile
            try:
                with psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user=self.server.username or "postgres",
                    dbname=database,
                    connect_timeout=2,
                    autocommit=True,
                ) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def close(self, *, remove: bool = True) -> None:
        """Stop PgBouncer (SIGTERM, then SIGKILL after a bounded wait)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # immediate shutdown: clients are done
            try:
                process.wait(timeout=_STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_S)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
