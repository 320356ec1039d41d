"""``HttpStateBackend``: task and asset state through a state server, with a URL and a token.

Workers that use it hold no database credentials, drivers or database connections:
each operation is one HTTP request (keep-alive) to ``statestore serve``, built and
decoded by the pure core in :mod:`statestore.backends.http_messages` over the contract
in :mod:`statestore.wire`. The sync methods use one pool of kept connections
(:class:`~statestore.backends.http_connections.KeepAliveTransport`, an httpx transport
of statestore's own); the async twins one per event loop (released as that loop shuts
down); the two differ only by ``await``. A forked
child never reuses its parent's connections.

**Retries.** A request that never reached the server (connection refused, connect
timeout, no pooled connection free in time) is resent, whatever it is. One that may
have reached it (the connection broke before the answer) is resent too, because
sending any of them twice is harmless: reads, plain writes (the same value again),
deletes and clears -- and conditional writes (``if_version``), which carry a write id
that the server answers as applied when a copy of the request was
(:mod:`statestore.write_ids`), once the server has said that it keeps write receipts
(until then such a failure says the outcome is unknown). Every attempt and pause fits
inside ``timeout_seconds``; then ``BackendUnavailableError`` names the server (never the
token).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from statestore import lifecycle
from statestore.backends import http_messages as messages
from statestore.backends.base import BaseStateBackend
from statestore.backends.http_admin import AdminRoutes
from statestore.backends.http_batches import HttpBatches
from statestore.backends.http_connections import AsyncKeepAliveTransport, KeepAliveTransport
from statestore.backends.http_messages import Call, RetryPolicy, TokenSource
from statestore.exceptions import BackendUnavailableError, ConfigError
from statestore.write_ids import RECEIPTS_HEADER, WRITE_ID_HEADER

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from statestore.config import StateStoreConfig
    from statestore.items import StoredItem
    from statestore.metastore.maintenance import AssetInfo
    from statestore.scopes import AssetScope, StateScope

__all__ = ["HttpStateBackend"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0
# Below the usual servers' keep-alive timeout (uvicorn: 5 s), so the client drops an
# idle connection before the server does: a request is then rarely sent on a socket the
# server is closing -- the one ambiguous failure a healthy server would cause.
KEEPALIVE_EXPIRY_S = 4.0


def _server_of(url: str) -> str:
    """The URL as errors show it: scheme, host, port and path, never userinfo or query."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the state server URL must be http(s)://host[:port][/path], not {url!r}")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass
class _LoopPool:
    """One event loop's connection pool, closed on that loop as it shuts down."""

    pool: httpx.AsyncBaseTransport
    owned: bool  # a transport the caller gave is the caller's to close
    parked: object = field(default=None)
    released: bool = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            if self.owned:
                await self.pool.aclose()


class HttpStateBackend(HttpBatches, AdminRoutes, BaseStateBackend):
    """State through a state server: ``HttpStateBackend("https://state.internal", token=...)``.

    ``token``: the bearer token itself; or ``token_file``: a file holding it, re-read
    whenever it changes (tokens are short-lived). ``timeout``: the longest one
    operation may take, retries included. ``transport`` / ``async_transport``: httpx
    transports to use instead of the network (``httpx.ASGITransport(app)`` runs against
    an ASGI app in-process); they stay the caller's to close. ``verify``: TLS
    verification, as httpx takes it.

    ``session`` arguments are ignored: the server runs each operation in its own
    transaction, so a host's SQL session cannot join it.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        self._server = _server_of(url)
        self._token = TokenSource(token, token_file)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._policy = RetryPolicy(float(timeout))
        self._transport = transport
        self._given_async_transport = async_transport
        self._verify = verify
        self._lock = threading.Lock()
        self._receipts_kept = False  # until the server says so (write_ids.RECEIPTS_HEADER)
        self._pool: httpx.BaseTransport | None = None
        self._loops: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        lifecycle.track_forks(self)

    @classmethod
    def from_config(cls, config: StateStoreConfig) -> HttpStateBackend:
        """Build from ``[client]`` settings (``url``, ``token`` or ``token_file``,
        ``timeout_seconds``)."""
        client = config.client
        if not client.url:
            raise ConfigError("[client] url is not set: the HTTP backend needs the server's URL")
        return cls(
            client.url,
            token=client.token or None,
            token_file=client.token_file or None,
            timeout=client.timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"HttpStateBackend({self._server!r})"

    @property
    def url(self) -> str:
        """The server's URL (without any userinfo or query)."""
        return self._server

    # -- connection pools -------------------------------------------------------------------
    #
    # httpx transports, not Clients: a Client's cookies, auth flows, redirects and URL
    # merging cost ~300 us per request and none of them is wanted here (a redirect would
    # even carry the token elsewhere). The request is built whole by http_messages.

    def _sync_transport(self) -> httpx.BaseTransport:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = self._transport or KeepAliveTransport(
                        verify=self._verify, keepalive_expiry=KEEPALIVE_EXPIRY_S
                    )
                pool = self._pool
        return pool

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            for gone in [old for old in self._loops if lifecycle.loop_is_gone(old)]:
                ended = self._loops.pop(gone)
                if ended.released:  # closed on its loop as that loop shut down
                    lifecycle.finish_parked(ended.parked)
                else:  # closed without that step: its sockets cannot be closed from
                    lifecycle.leave_behind(ended)  # another loop, so never finalized
            given = self._given_async_transport
            pool = given or AsyncKeepAliveTransport(
                verify=self._verify, keepalive_expiry=KEEPALIVE_EXPIRY_S
            )
            state = self._loops[loop] = _LoopPool(pool, owned=given is None)
            state.parked = lifecycle.on_loop_shutdown(state.release)
        return state.pool

    def _forget_after_fork(self) -> list[object]:
        """In a forked child: drop the parent's pools unclosed (see statestore.lifecycle)."""
        left: list[object] = [self._pool, self._loops]
        self._pool = None
        self._loops = {}
        self._lock = threading.Lock()  # another thread of the parent may have held it
        return left

    # -- one request, resent when that is safe ----------------------------------------------

    def _pause_after(
        self, exc: httpx.TransportError, call: Call, attempt: int, start: float
    ) -> float:
        """How long to wait before resending ``call``; raises when it must not be."""
        remaining = start + self._policy.timeout - time.monotonic()
        pause = self._policy.pause(attempt, remaining) if messages.may_resend(exc) else None
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if pause is not None and not self._safe_to_resend(exc, call):
            raise BackendUnavailableError(
                f"the connection to the state server at {self._server} broke after a "
                f"conditional write was sent ({what}), and the server has not said that it "
                "keeps write receipts: whether the write was applied is unknown, so it was "
                "not resent; read the key to find out"
            ) from exc
        if pause is not None:
            return pause
        raise BackendUnavailableError(
            f"the state server at {self._server} did not answer ({what}; "
            f"{attempt + 1} attempt{'s' if attempt else ''} within the "
            f"{self._policy.timeout:g} s timeout_seconds)"
        ) from exc

    def _safe_to_resend(self, exc: httpx.TransportError, call: Call) -> bool:
        """A conditional write that may have reached the server is resent only once the
        server has said it keeps write receipts (a server over a custom backend may not:
        a copy would then get 412, and ``update()`` apply its function again)."""
        conditional = WRITE_ID_HEADER in call.headers
        return not conditional or self._receipts_kept or messages.never_sent(exc)

    def _learn(self, response: httpx.Response) -> None:
        if not self._receipts_kept and response.headers.get(RECEIPTS_HEADER) == "kept":
            self._receipts_kept = True

    def _send(self, call: Call) -> httpx.Response:
        pool = self._sync_transport()
        start, attempt, renewed = time.monotonic(), 0, False
        while True:
            token = self._token.current()
            remaining = max(0.001, start + self._policy.timeout - time.monotonic())
            request = messages.build_request(self._server, call, token, remaining)
            try:
                response = pool.handle_request(request)
                try:
                    response.read()
                finally:
                    response.close()
            except httpx.TransportError as exc:
                time.sleep(self._pause_after(exc, call, attempt, start))
                attempt += 1
                continue
            if not renewed and self._token.renewed_since(token, response):
                renewed = True
                continue
            self._learn(response)
            return response

    async def _asend(self, call: Call) -> httpx.Response:
        pool = self._async_transport()
        start, attempt, renewed = time.monotonic(), 0, False
        while True:
            token = self._token.current()
            remaining = max(0.001, start + self._policy.timeout - time.monotonic())
            request = messages.build_request(self._server, call, token, remaining)
            try:
                response = await pool.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                await asyncio.sleep(self._pause_after(exc, call, attempt, start))
                attempt += 1
                continue
            if not renewed and self._token.renewed_since(token, response):
                renewed = True
                continue
            self._learn(response)
            return response

    def _call(self, call: Call, read: Callable[[httpx.Response, str], T]) -> T:
        return read(self._send(call), self._server)

    async def _acall(self, call: Call, read: Callable[[httpx.Response, str], T]) -> T:
        return read(await self._asend(call), self._server)

    # -- the eight methods ---------------------------------------------------------------------

    def get(self, scope: StateScope, key: str, *, session: Session | None = None) -> str | None:
        return self._call(messages.get_call(scope, key), messages.read_value)

    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        call = messages.set_call(scope, key, value, expires_at=expires_at)
        self._call(call, messages.read_done)

    def delete(self, scope: StateScope, key: str, *, session: Session | None = None) -> None:
        self._call(messages.delete_call(scope, key), messages.read_done)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        call = messages.clear_call(scope, all_map_indices=all_map_indices)
        self._call(call, messages.read_done)

    async def aget(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        return await self._acall(messages.get_call(scope, key), messages.read_value)

    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        call = messages.set_call(scope, key, value, expires_at=expires_at)
        await self._acall(call, messages.read_done)

    async def adelete(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> None:
        await self._acall(messages.delete_call(scope, key), messages.read_done)

    async def aclear(
        self,
        scope: StateScope,
        *,
        all_map_indices: bool = False,
        session: AsyncSession | None = None,
    ) -> None:
        call = messages.clear_call(scope, all_map_indices=all_map_indices)
        await self._acall(call, messages.read_done)

    # -- versions, provenance, listing ------------------------------------------------------

    def get_item(
        self, scope: StateScope, key: str, *, session: Session | None = None
    ) -> StoredItem | None:
        return self._call(messages.get_call(scope, key), messages.read_item)

    def set_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        call = messages.set_call(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )
        self._call(call, messages.read_done)

    async def aget_item(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> StoredItem | None:
        return await self._acall(messages.get_call(scope, key), messages.read_item)

    async def aset_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        call = messages.set_call(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )
        await self._acall(call, messages.read_done)

    def list_items(
        self,
        scope: StateScope,
        *,
        prefix: str = "",
        after: str = "",
        limit: int = 1000,
        values: bool = True,
        session: Session | None = None,
    ) -> list[tuple[str, str | None]]:
        call = messages.list_call(scope, prefix=prefix, after=after, limit=limit, values=values)
        return self._call(call, messages.read_page)

    async def alist_items(
        self,
        scope: StateScope,
        *,
        prefix: str = "",
        after: str = "",
        limit: int = 1000,
        values: bool = True,
        session: AsyncSession | None = None,
    ) -> list[tuple[str, str | None]]:
        call = messages.list_call(scope, prefix=prefix, after=after, limit=limit, values=values)
        return await self._acall(call, messages.read_page)

    # -- the asset registry (admin tokens) -------------------------------------------------

    def list_assets(self, active: bool | None = None) -> list[AssetInfo]:
        """Registered assets, by name; ``active`` filters on the flag."""
        return self._call(messages.assets_call(active), messages.read_assets)

    async def alist_assets(self, active: bool | None = None) -> list[AssetInfo]:
        """Async twin of :meth:`list_assets`."""
        return await self._acall(messages.assets_call(active), messages.read_assets)

    def set_assets_active(self, assets: list[AssetScope], active: bool) -> int:
        """Mark assets (by name) active or inactive; returns how many changed."""
        return self._call(messages.set_active_call(assets, active=active), messages.read_count)

    async def aset_assets_active(self, assets: list[AssetScope], active: bool) -> int:
        """Async twin of :meth:`set_assets_active`."""
        call = messages.set_active_call(assets, active=active)
        return await self._acall(call, messages.read_count)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync connections (async ones close with their loops, or with
        :meth:`aclose` on theirs). The backend may be used again afterwards."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and pool is not self._transport:
            pool.close()

    async def aclose(self) -> None:
        """Close the running loop's connections and the sync ones."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.release()
            lifecycle.finish_parked(state.parked)
        self.close()
