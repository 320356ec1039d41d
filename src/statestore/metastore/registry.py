"""The slow path of an asset write: the one statement matched no active asset row.

Then, and only then, find out why. A compare-and-set usually matched nothing because
it lost a race: inside ``update`` (which reads the key itself after pausing) that is
reported at once; otherwise one read of the live row (of an active asset) proves it
and is carried on the ``VersionConflictError``. Either way a lost race costs one read
beside its write. Otherwise the asset is unknown (register it, or refuse when auto-registration is
off), its uri belongs to another asset, or it is inactive -- or else the write runs
again and its rowcount goes back to the caller (0 after a versioned write means the
version did not match). A compare-and-set on a version of an asset that does not exist
is a conflict, not a reason to register it. The sync and async twins differ only by
``await``.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from statestore.metastore import plans
from statestore.metastore.statements import Statements
from statestore.retention import utcnow

__all__ = ["awrite_after_miss", "write_after_miss"]


def write_after_miss(
    conn: Connection, statements: Statements, plan: plans.Plan, auto_register: bool, *,
    savepoint: bool,
) -> int:  # fmt: skip
    """Register the asset if allowed, then write again; raise the right error otherwise.

    ``savepoint``: contain a refused registration (PostgreSQL aborts the surrounding
    transaction on a failed insert, which matters on a host's transactional engine).
    """
    if plan.kind == "asset_cas":
        plans.raise_unread(plan)
        read = plans.get_writable_item(statements, plan)
        row = plans.result_of(read, conn.execute(read.statement, read.params))
        plans.raise_if_lost(plan, plans.returned(read, row))
    found = conn.execute(*plans.find_asset(statements, plan.scope)).first()
    if found is None and plan.if_version:
        return 0
    if found is None:
        register = plans.register_asset(statements, plan.scope, auto_register, utcnow())
        try:
            with conn.begin_nested() if savepoint else contextlib.nullcontext():
                conn.execute(register.statement, register.params)
        except sa_exc.IntegrityError as exc:
            raise plans.uri_taken(plan.scope) from exc
    found = conn.execute(*plans.find_asset(statements, plan.scope)).first()
    plans.check_writable(plan.scope, found)
    return int(conn.execute(plan.statement, plan.params).rowcount)


async def awrite_after_miss(
    conn: AsyncConnection, statements: Statements, plan: plans.Plan, auto_register: bool, *,
    savepoint: bool,
) -> int:  # fmt: skip
    """Async twin of :func:`write_after_miss`."""
    if plan.kind == "asset_cas":
        plans.raise_unread(plan)
        read = plans.get_writable_item(statements, plan)
        row = plans.result_of(read, await conn.execute(read.statement, read.params))
        plans.raise_if_lost(plan, plans.returned(read, row))
    found = (await conn.execute(*plans.find_asset(statements, plan.scope))).first()
    if found is None and plan.if_version:
        return 0
    if found is None:
        register = plans.register_asset(statements, plan.scope, auto_register, utcnow())
        try:
            if savepoint:
                async with conn.begin_nested():
                    await conn.execute(register.statement, register.params)
            else:
                await conn.execute(register.statement, register.params)
        except sa_exc.IntegrityError as exc:
            raise plans.uri_taken(plan.scope) from exc
    found = (await conn.execute(*plans.find_asset(statements, plan.scope))).first()
    plans.check_writable(plan.scope, found)
    return int((await conn.execute(plan.statement, plan.params)).rowcount)
