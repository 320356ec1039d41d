"""A backend that records which of its methods were called (sync or async).

``forbid="sync"`` (or ``"async"``) makes any call of that kind fail the test at once,
so "the async accessor methods only call the backend's async methods" is enforced,
not merely observed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from statestore import InMemoryStateBackend
from statestore.scopes import StateScope


class ForbiddenCallError(AssertionError):
    """A sync method was called where only async ones may be (or vice versa)."""


class RecordingBackend(InMemoryStateBackend):
    """In-memory storage that logs each call as ``(method, scope, details)``."""

    def __init__(self, *, forbid: Literal["sync", "async"] | None = None) -> None:
        super().__init__()
        self.forbid = forbid
        self.calls: list[tuple[str, Any, Any]] = []
        self.closed: list[str] = []

    def _record(self, name: str, scope: Any, details: Any) -> None:
        kind = "async" if name.startswith("a") else "sync"
        if kind == self.forbid:
            raise ForbiddenCallError(f"{name}() called, but {kind} calls are forbidden here")
        self.calls.append((name, scope, details))

    @property
    def methods(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    @property
    def writes(self) -> list[tuple[str, StateScope, str, str, datetime | None]]:
        """``(method, scope, key, value, expires_at)`` for every set/aset."""
        return [
            (name, scope, *details) for name, scope, details in self.calls if name.endswith("set")
        ]

    def get(self, scope: StateScope, key: str, *, session: Any = None) -> str | None:
        self._record("get", scope, key)
        return super().get(scope, key)

    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Any = None,
    ) -> None:
        self._record("set", scope, (key, value, expires_at))
        super().set(scope, key, value, expires_at=expires_at)

    def set_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: Any = None,
    ) -> None:
        # Recorded as "set": for the accessors, a versioned write is still a write.
        self._record("set", scope, (key, value, expires_at))
        super().set_item(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )

    async def aset_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: Any = None,
    ) -> None:
        self._record("aset", scope, (key, value, expires_at))
        await super().aset_item(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )

    def get_item(self, scope: StateScope, key: str, *, session: Any = None) -> Any:
        self._record("get_item", scope, key)
        return super().get_item(scope, key)

    async def aget_item(self, scope: StateScope, key: str, *, session: Any = None) -> Any:
        self._record("aget_item", scope, key)
        return await super().aget_item(scope, key)

    def delete(self, scope: StateScope, key: str, *, session: Any = None) -> None:
        self._record("delete", scope, key)
        super().delete(scope, key)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        self._record("clear", scope, all_map_indices)
        super().clear(scope, all_map_indices=all_map_indices)

    async def aget(self, scope: StateScope, key: str, *, session: Any = None) -> str | None:
        self._record("aget", scope, key)
        return await super().aget(scope, key)

    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Any = None,
    ) -> None:
        self._record("aset", scope, (key, value, expires_at))
        await super().aset(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope: StateScope, key: str, *, session: Any = None) -> None:
        self._record("adelete", scope, key)
        await super().adelete(scope, key)

    async def aclear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        self._record("aclear", scope, all_map_indices)
        await super().aclear(scope, all_map_indices=all_map_indices)

    def close(self) -> None:
        self.closed.append("close")

    async def aclose(self) -> None:
        self.closed.append("aclose")
