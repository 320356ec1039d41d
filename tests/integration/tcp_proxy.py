"""A loopback TCP proxy that sits between the library and a database server.

It counts client requests -- a burst of bytes from the client after the server has
answered -- which is what one network round trip costs, and it can cut every
connection or refuse new ones to simulate a server going away, or stall (accept and
keep bytes without forwarding them) to simulate a server that stopped answering.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from types import TracebackType

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``(host, port)``; use as a context manager."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # close() does not wake a blocked accept() on Linux
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._requests = 0
        self._refusing = False
        self._stalling = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    # -- control ---------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Client requests forwarded so far (each one is a round trip)."""
        with self._lock:
            return self._requests

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._requests = 0

    def cut_all(self) -> None:
        """Close every open connection, like a server restart."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def refuse(self, refusing: bool = True) -> None:
        """Close new connections as soon as they arrive."""
        self._refusing = refusing

    def stall(self, stalling: bool = True) -> None:
        """Stop forwarding in both directions (connections stay open), or resume."""
        if stalling:
            self._stalling.set()
        else:
            self._stalling.clear()

    # -- plumbing --------------------------------------------------------------------

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._listener.close()
        self.cut_all()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self._refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        last_from_client = False
        try:
            while not self._closed.is_set():
                if self._stalling.is_set():
                    time.sleep(0.02)  # bytes wait in the kernel's buffers
                    continue
                for key, _ in selector.select(timeout=0.05):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    from_client = source is client
                    if from_client and not last_from_client:
                        with self._lock:
                            self._requests += 1
                    last_from_client = from_client
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, server):
                sock.close()
