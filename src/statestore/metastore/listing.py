"""Listing one scope's keys (and values), page by page: the backend's ``list_items``.

A mixin of ``MetastoreStateBackend``, beside ``AssetAccess`` and ``MetastoreBatches``:
the plan is pure (``plans.list_``), and the backend's ``_run``/``_arun`` execute it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.metastore import plans
from statestore.metastore.statements import Statements
from statestore.retention import utcnow
from statestore.scopes import StateScope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["Listing"]


class Listing:
    """``list_items`` and ``alist_items`` over the backend's execution paths."""

    _statements: Statements

    if TYPE_CHECKING:

        def _run(self, plan: plans.Plan, session: Session | None = None) -> Any: ...
        async def _arun(self, plan: plans.Plan, session: AsyncSession | None = None) -> Any: ...

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
        """One page of ``(key, JSON text)`` pairs of a scope, in key order, after
        ``after``, that start with ``prefix`` (``values=False``: texts are ``None``)."""
        page: list[tuple[str, str | None]] = self._run(
            plans.list_(self._statements, scope, prefix=prefix, after=after, limit=limit,
                        values=values, now=utcnow()),
            session,
        )  # fmt: skip
        return page

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
        """Async twin of :meth:`list_items`."""
        page: list[tuple[str, str | None]] = await self._arun(
            plans.list_(self._statements, scope, prefix=prefix, after=after, limit=limit,
                        values=values, now=utcnow()),
            session,
        )  # fmt: skip
        return page
