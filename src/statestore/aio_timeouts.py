"""``time_limit(seconds)``: ``asyncio.timeout`` on Python 3.11 and later, its equivalent on 3.10.

The async hot path (asyncmy's statements) and the HTTP backend's own connections bound
network steps this way; one definition serves both. ``None`` means no bound, as for
``asyncio.timeout``. Past the bound the block's task is cancelled and ``TimeoutError``
raised in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

__all__ = ["time_limit"]


@contextlib.asynccontextmanager
async def _timeout_310(seconds: float | None) -> AsyncIterator[None]:  # pragma: no cover - 3.10
    # asyncio.timeout() arrived in 3.11: cancel the task on a timer, as it does.
    if seconds is None:
        yield
        return
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        yield
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError from None
        raise
    finally:
        handle.cancel()


if sys.version_info >= (3, 11):
    time_limit = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    time_limit = _timeout_310
