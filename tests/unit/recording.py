"""A backend that records which of its methods were called (sync or async)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from statestore import InMemoryStateBackend
from statestore.scopes import StateScope


class RecordingBackend(InMemoryStateBackend):
    """In-memory storage that logs each call as ``(method, scope, key)``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any, Any]] = []
        self.closed: list[str] = []

    def get(self, scope: StateScope, key: str, *, session: Any = None) -> str | None:
        self.calls.append(("get", scope, key))
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
        self.calls.append(("set", scope, (key, value, expires_at)))
        super().set(scope, key, value, expires_at=expires_at)

    def delete(self, scope: StateScope, key: str, *, session: Any = None) -> None:
        self.calls.append(("delete", scope, key))
        super().delete(scope, key)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        self.calls.append(("clear", scope, all_map_indices))
        super().clear(scope, all_map_indices=all_map_indices)

    async def aget(self, scope: StateScope, key: str, *, session: Any = None) -> str | None:
        self.calls.append(("aget", scope, key))
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
        self.calls.append(("aset", scope, (key, value, expires_at)))
        await super().aset(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope: StateScope, key: str, *, session: Any = None) -> None:
        self.calls.append(("adelete", scope, key))
        await super().adelete(scope, key)

    async def aclear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        self.calls.append(("aclear", scope, all_map_indices))
        await super().aclear(scope, all_map_indices=all_map_indices)

    def close(self) -> None:
        self.closed.append("close")

    async def aclose(self) -> None:
        self.closed.append("aclose")

    @property
    def methods(self) -> list[str]:
        return [name for name, _, _ in self.calls]
