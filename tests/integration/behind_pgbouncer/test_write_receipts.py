"""Write receipts through PgBouncer, in transaction and session mode.

A state server behind PgBouncer runs each conditional write with its receipt: one
statement for a known asset or a task, a transaction (begin, receipt, write, commit)
when an asset must be registered first. Neither may depend on keeping a server
connection between statements: copies are answered as applied, lost races are
conflicts, and copies sent together from two backends (sharing PgBouncer's two server
connections in transaction mode) are applied once.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from statestore import AssetScope, TaskScope, VersionConflictError
from statestore.metastore import MetastoreStateBackend
from tests.integration.pgbouncer import PgBouncer

pytestmark = pytest.mark.postgresql

TASK = TaskScope("dag", "run", "task")


def test_copies_and_conflicts_through_pgbouncer(pooler: PgBouncer, empty_database: str) -> None:
    backend = MetastoreStateBackend(pooler.url(empty_database))
    try:
        fresh_asset = AssetScope(name=f"receipts-{pooler.pool_mode}")
        for scope in (TASK, fresh_asset):  # the asset is registered on the way
            for _ in range(2):  # the write, then its copy
                backend.set_item_once(scope, "k", "1", write_id="create", if_version=0)
                backend.set_item_once(scope, "k", "2", write_id="cas", if_version=1)
            item = backend.get_item(scope, "k")
            assert item is not None
            assert (item.value, item.version) == ("2", 2)
            with pytest.raises(VersionConflictError, match="at version 2"):
                backend.set_item_once(scope, "k", "3", write_id="stale", if_version=1)
    finally:
        backend.close()


def test_copies_sent_together_are_applied_once(pooler: PgBouncer, empty_database: str) -> None:
    url = pooler.url(empty_database)
    backends = [MetastoreStateBackend(url) for _ in range(4)]
    backends[0].set(TASK, "n", "0")
    errors: list[BaseException] = []

    def send(backend: MetastoreStateBackend, version: int) -> None:
        try:
            backend.set_item_once(TASK, "n", str(version), write_id=f"w{version}",
                                  if_version=version)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        for version in range(1, 21):  # each write sent by four backends at once
            threads = [threading.Thread(target=send, args=(b, version)) for b in backends]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        item = backends[0].get_item(TASK, "n")
    finally:
        for backend in backends:
            backend.close()
    assert errors == []
    assert item is not None
    assert (item.value, item.version) == ("20", 21)  # each applied once, none refused


def test_async_copies_through_pgbouncer(pooler: PgBouncer, empty_database: str) -> None:
    async def main() -> None:
        backend = MetastoreStateBackend(pooler.url(empty_database))
        try:
            scope = AssetScope(name=f"async-receipts-{pooler.pool_mode}")
            for _ in range(2):
                await backend.aset_item_once(scope, "k", "1", write_id="a1", if_version=0)
            with pytest.raises(VersionConflictError):
                await backend.aset_item_once(scope, "k", "1", write_id="a2", if_version=0)
            item = await backend.aget_item(scope, "k")
            assert item is not None
            assert (item.value, item.version) == ("1", 1)
        finally:
            await backend.aclose()
            backend.close()

    asyncio.run(main())
