"""The engines, hot paths and connections of one metastore backend, and their lifecycle.

Created lazily: a sync-only program never imports an async driver. One async engine per
event loop, because async connections belong to the loop that opened them; each is
released on its loop as the loop shuts down (``lifecycle.on_loop_shutdown``), or ended
synchronously if the loop closed without shutting down. After ``fork()`` the child
forgets all of it unclosed and starts over (``lifecycle``). Code beyond the hot path
borrows the hot path's own connection (:meth:`Connections.connect`), so that one thread
holds one connection whatever it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from statestore.metastore import async_hotpath, lifecycle
from statestore.metastore.deadlines import bounded_connect
from statestore.metastore.engine import (
    EngineSettings,
    create_async_state_engine,
    create_sync_state_engine,
)
from statestore.metastore.hotpath import SyncHotPath

__all__ = ["Connections", "LoopEngine"]


@dataclass
class LoopEngine:
    """One event loop's async engine and hot path, released when the loop shuts down."""

    engine: AsyncEngine
    hotpath: async_hotpath.AsyncHotPath
    parked: object = field(default=None)  # the generator that waits for the shutdown
    released: bool = False

    async def release(self) -> None:
        """Close this engine's connections (on its own loop), once."""
        if not self.released:
            self.released = True
            await self.hotpath.aclose()
            await self.engine.dispose()

    def abandon(self) -> None:
        """End the connections of a loop that closed without shutting down first."""
        if not self.released:
            self.released = True
            lifecycle.abandon_pool(self.engine, self.hotpath.forget())
        lifecycle.finish_parked(self.parked)


class Connections:
    """What one backend connects with: its own engines (or a host's), hot paths, loops."""

    def __init__(
        self,
        sync_url: URL,
        async_url: URL,
        settings: EngineSettings,
        *,
        engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
    ) -> None:
        self._sync_url = sync_url
        self._async_url = async_url
        self._settings = settings
        self.own_engine = engine is None
        self._engine = engine
        self.host_async_engine = async_engine
        self._hotpath: SyncHotPath | None = None
        self._loops: dict[asyncio.AbstractEventLoop, LoopEngine] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The sync engine, created on first use."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = create_sync_state_engine(self._sync_url, settings=self._settings)
        return self._engine

    def sync_hotpath(self) -> SyncHotPath:
        """The sync hot path, created on first use."""
        hotpath = self._hotpath
        if hotpath is None:
            engine = self.engine  # outside the lock: creating it takes the same lock
            with self._lock:
                if self._hotpath is None:
                    self._hotpath = SyncHotPath(
                        engine, self._sync_url, self._settings.timeout,
                        keep=self._settings.pool_size,
                    )  # fmt: skip
                hotpath = self._hotpath
        return hotpath

    def loop_engine(self) -> LoopEngine:
        """The running loop's engine and hot path, created on first use there."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            self.abandon_closed_loops()
            engine = create_async_state_engine(self._async_url, settings=self._settings)
            hotpath = async_hotpath.AsyncHotPath(
                engine, self._async_url, self._settings.timeout, keep=self._settings.pool_size
            )
            state = self._loops[loop] = LoopEngine(engine, hotpath)
            # Only this state: after aclose() a loop may get a new one, which the old
            # generator (finalized when the old state is dropped) must leave alone.
            state.parked = lifecycle.on_loop_shutdown(state.release)
        return state

    async def release_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections of ``loop`` (the running one) now."""
        state = self._loops.pop(loop, None)
        if state is not None:
            await state.release()
            lifecycle.finish_parked(state.parked)

    def abandon_closed_loops(self) -> None:
        """End the connections of loops that closed without shutting down first."""
        for loop in [loop for loop in self._loops if lifecycle.loop_is_gone(loop)]:
            self._loops.pop(loop).abandon()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A SQLAlchemy connection of the sync engine, for work beyond the hot path.

        The hot path's idle connections go back to the pool first, so this reuses one
        of them: a single-threaded program holds one connection, not one per kind of
        work.
        """
        if self._hotpath is not None:
            self._hotpath.return_idle()
        engine = self.engine
        with bounded_connect(self._settings.timeout):  # opening one is bounded too
            conn = engine.connect()
        with conn:
            yield conn

    @contextlib.asynccontextmanager
    async def aconnect(self) -> AsyncIterator[AsyncConnection]:
        """Async twin of :meth:`connect`, on the running loop's engine."""
        if self.host_async_engine is not None:
            async with self.host_async_engine.connect() as conn:
                yield conn
            return
        state = self.loop_engine()
        await state.hotpath.return_idle()
        with bounded_connect(self._settings.timeout):
            conn = await state.engine.connect()  # awaiting it starts it
        try:
            yield conn
        finally:
            await conn.close()

    def maintenance_engine(self) -> Engine:
        """The sync engine, with the hot path's idle connections handed back first."""
        if self._hotpath is not None:
            self._hotpath.return_idle()
        return self.engine

    def forget_after_fork(self) -> list[object]:
        """In a forked child: drop the parent's connections unclosed; return them."""
        left: list[object] = [self._hotpath, self._loops]
        if self._hotpath is not None:
            left.append(self._hotpath.forget())
        for state in self._loops.values():
            left.append(state.hotpath.forget())
        if self.own_engine:
            left.append(self._engine)
            self._engine = None
        self._hotpath = None
        self._loops = {}
        self._lock = threading.Lock()  # a parent's thread may have held it: never freed
        return left

    def close(self) -> None:
        """Dispose the engines this backend created (a host's own are left alone)."""
        if self._hotpath is not None:
            self._hotpath.close()
            self._hotpath = None
        if self.own_engine and self._engine is not None:
            self._engine.dispose()
            self._engine = None
        # A live loop's connections can only be closed on that loop: its shutdown does
        # it (lifecycle.on_loop_shutdown). Those of closed loops are ended here.
        self.abandon_closed_loops()

    async def aclose(self) -> None:
        """Release this loop's engine, then everything :meth:`close` does."""
        await self.release_loop(asyncio.get_running_loop())
        self.close()
