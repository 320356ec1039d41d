"""A backend that keeps values in a worker-side backend and references in another.

``StateStore`` builds one when ``[workers] state_backend`` is set: rows go to the
primary backend (usually the metastore) holding only a reference envelope, and values go
to the worker-side backend (e.g. object storage). The ordering is what makes crashes
harmless — write the object before the row, delete the row before the object — so the
worst a crash leaves is an orphan object, never a row pointing at nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from statestore.backends.base import BaseStateBackend
from statestore.backends.worker import MARKER, ref_envelope
from statestore.scopes import AssetScope, StateScope, TaskScope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["REF_PREFIX", "WorkerBackedStateBackend", "ref_of"]

REF_PREFIX = '{"' + MARKER + '":"ref"'
"""Every stored reference envelope starts with exactly this text."""


def ref_of(stored: str | None) -> str | None:
    """The reference inside a stored envelope, or ``None`` for an inline value."""
    if stored is None or not stored.startswith(REF_PREFIX):
        return None
    ref = json.loads(stored).get("ref")
    return ref if isinstance(ref, str) else None


class WorkerBackedStateBackend(BaseStateBackend):
    """``primary`` stores rows (with references), ``worker`` stores the values."""

    def __init__(self, primary: BaseStateBackend, worker: BaseStateBackend) -> None:
        self.primary = primary
        self.worker = worker

    def __repr__(self) -> str:
        return f"WorkerBackedStateBackend({self.primary!r}, {self.worker!r})"

    # -- the pure part: references in, references out ---------------------------------------

    def _resolve(self, scope: StateScope, stored: str | None) -> str | None:
        ref = ref_of(stored)
        if ref is None:
            return stored  # an inline value written before the worker backend was set
        try:
            if isinstance(scope, TaskScope):
                return self.worker.deserialize_task_state_from_ref(ref)
            return self.worker.deserialize_asset_state_from_ref(ref)
        except LookupError:
            return None  # the object went with a concurrent delete: the key is gone

    async def _aresolve(self, scope: StateScope, stored: str | None) -> str | None:
        ref = ref_of(stored)
        if ref is None:
            return stored
        try:
            if isinstance(scope, TaskScope):
                return await self.worker.adeserialize_task_state_from_ref(ref)
            return await self.worker.adeserialize_asset_state_from_ref(ref)
        except LookupError:
            return None

    # -- sync -------------------------------------------------------------------------------

    def get(self, scope: StateScope, key: str, *, session: Session | None = None) -> str | None:
        return self._resolve(scope, self.primary.get(scope, key, session=session))

    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        # Object first, then the row that points at it.
        if isinstance(scope, TaskScope):
            ref = self.worker.serialize_task_state_to_ref(value=value, key=key, scope=scope)
        else:
            ref = self.worker.serialize_asset_state_to_ref(value=value, key=key, scope=scope)
        self.primary.set(scope, key, ref_envelope(ref), expires_at=expires_at, session=session)

    def delete(self, scope: StateScope, key: str, *, session: Session | None = None) -> None:
        # Row first, then the object.
        self.primary.delete(scope, key, session=session)
        self._delete_objects(scope, key, all_map_indices=False)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        self.primary.clear(scope, all_map_indices=all_map_indices, session=session)
        self._delete_objects(scope, None, all_map_indices=all_map_indices)

    def _delete_objects(self, scope: StateScope, key: str | None, *, all_map_indices: bool) -> None:
        if isinstance(scope, TaskScope):
            self.worker.delete_task_state_objects(
                scope=scope, key=key, all_map_indices=all_map_indices
            )
        else:
            self.worker.delete_asset_state_objects(scope=scope, key=key)

    # -- async: the same, awaited -------------------------------------------------------------

    async def aget(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        return await self._aresolve(scope, await self.primary.aget(scope, key, session=session))

    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        if isinstance(scope, TaskScope):
            ref = await self.worker.aserialize_task_state_to_ref(value=value, key=key, scope=scope)
        else:
            ref = await self.worker.aserialize_asset_state_to_ref(value=value, key=key, scope=scope)
        await self.primary.aset(
            scope, key, ref_envelope(ref), expires_at=expires_at, session=session
        )

    async def adelete(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> None:
        await self.primary.adelete(scope, key, session=session)
        await self._adelete_objects(scope, key, all_map_indices=False)

    async def aclear(
        self,
        scope: StateScope,
        *,
        all_map_indices: bool = False,
        session: AsyncSession | None = None,
    ) -> None:
        await self.primary.aclear(scope, all_map_indices=all_map_indices, session=session)
        await self._adelete_objects(scope, None, all_map_indices=all_map_indices)

    async def _adelete_objects(
        self, scope: StateScope, key: str | None, *, all_map_indices: bool
    ) -> None:
        if isinstance(scope, TaskScope):
            await self.worker.adelete_task_state_objects(
                scope=scope, key=key, all_map_indices=all_map_indices
            )
        elif isinstance(scope, AssetScope):
            await self.worker.adelete_asset_state_objects(scope=scope, key=key)

    # -- batches: the objects one by one, the rows in one batch -------------------------------
    #
    # The rows of a batch go to the primary in one batch (all or nothing there); the
    # objects are written one by one before it and deleted after it. A failure part-way
    # through the objects leaves orphans that a retry overwrites (references are
    # derived from scope and key) and ``statestore objects gc`` finds -- never a row
    # pointing at nothing.

    def _ref(self, scope: StateScope, key: str, value: str) -> str:
        if isinstance(scope, TaskScope):
            return self.worker.serialize_task_state_to_ref(value=value, key=key, scope=scope)
        return self.worker.serialize_asset_state_to_ref(value=value, key=key, scope=scope)

    async def _aref(self, scope: StateScope, key: str, value: str) -> str:
        if isinstance(scope, TaskScope):
            return await self.worker.aserialize_task_state_to_ref(value=value, key=key, scope=scope)
        return await self.worker.aserialize_asset_state_to_ref(value=value, key=key, scope=scope)

    def get_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, str]:
        found = self.primary.get_many(scope, keys, session=session)
        resolved = {key: self._resolve(scope, stored) for key, stored in found.items()}
        return {key: value for key, value in resolved.items() if value is not None}

    def set_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        rows = [(key, ref_envelope(self._ref(scope, key, value))) for key, value in entries]
        self.primary.set_many(
            scope, rows, expires_at=expires_at, updated_by=updated_by, session=session
        )

    def delete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> None:
        self.primary.delete_many(scope, keys, session=session)
        for key in keys:
            self._delete_objects(scope, key, all_map_indices=False)

    async def aget_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, str]:
        found = await self.primary.aget_many(scope, keys, session=session)
        resolved = {key: await self._aresolve(scope, stored) for key, stored in found.items()}
        return {key: value for key, value in resolved.items() if value is not None}

    async def aset_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        rows = [(key, ref_envelope(await self._aref(scope, key, value))) for key, value in entries]
        await self.primary.aset_many(
            scope, rows, expires_at=expires_at, updated_by=updated_by, session=session
        )

    async def adelete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> None:
        await self.primary.adelete_many(scope, keys, session=session)
        for key in keys:
            await self._adelete_objects(scope, key, all_map_indices=False)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self.primary.close()
        self.worker.close()

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.worker.aclose()
