"""Maintenance through a state server's admin routes, for :class:`HttpStateBackend`.

With an admin token, the cleanup of expired task state, the sweep of inactive assets'
state, the listing of expired keys and the listing of a dag's, run's or task's state
run *on the server* (``POST /api/v1/admin/cleanup`` and ``/sweep``, ``GET
/api/v1/admin/task-state``), which holds the database; ``objects gc`` lists the object
store itself and asks the server which references rows hold (``POST
/api/v1/admin/objects/referenced``). So
:func:`statestore.cleanup.cleanup`, ``statestore --url https://... cleanup`` and
``task-state list`` work with a URL and a token as they do with a database URL. The
server uses its own clock: ``now`` cannot be passed through it.

Running either twice deletes nothing more than once, so both are resent like reads. The
listing of a dry run is streamed (NDJSON, one key a line) and decoded line by line, in
constant memory however many keys expired.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from statestore import wire
from statestore.backends import http_messages as messages
from statestore.backends.http_messages import Call
from statestore.exceptions import BackendUnavailableError, StateStoreError

if TYPE_CHECKING:
    from statestore.backends.http_messages import RetryPolicy, TokenSource
    from statestore.cleanup import CleanupReport
    from statestore.metastore.maintenance import ExpiredTaskState, StoredKey

__all__ = [
    "AdminRoutes",
    "cleanup_call",
    "read_held",
    "read_report",
    "read_task_keys",
    "referenced_calls",
    "sweep_call",
    "task_keys_call",
]

T = TypeVar("T")


def cleanup_call(*, dry_run: bool, batch_size: int | None) -> Call:
    """``POST /admin/cleanup``; a dry run answers the keys it would delete (NDJSON)."""
    params = {"dry_run": "true"} if dry_run else {}
    if batch_size is not None and not dry_run:
        params["batch_size"] = str(batch_size)
    return Call("POST", wire.CLEANUP, params)


def sweep_call(*, dry_run: bool) -> Call:
    """``POST /admin/sweep``."""
    return Call("POST", wire.SWEEP, {"dry_run": "true"} if dry_run else {})


def task_keys_call(
    dag_id: str, run_id: str | None, task_id: str | None,
    map_index: int | None, map_key: str | None,
) -> Call:  # fmt: skip
    """``GET /admin/task-state``: the live keys of a dag, a run or a task."""
    params = {"dag_id": dag_id}
    for name, value in (("run_id", run_id), ("task_id", task_id), ("map_key", map_key)):
        if value is not None:
            params[name] = value
    if map_index is not None:
        params["map_index"] = str(map_index)
    return Call("GET", wire.TASK_STATE_LISTING, params)


REFS_PER_REQUEST = 10_000
"""Object references per ``objects/referenced`` request (the server's limit)."""


def referenced_calls(refs: list[str]) -> Iterator[Call]:
    """``POST /admin/objects/referenced``, :data:`REFS_PER_REQUEST` references each: a
    question, so resent like a read."""
    headers = {"Content-Type": "application/json"}
    for start in range(0, len(refs), REFS_PER_REQUEST):
        body = json.dumps({"refs": refs[start : start + REFS_PER_REQUEST]}).encode("utf-8")
        yield Call("POST", wire.OBJECTS_REFERENCED, {}, headers, body)


def read_held(response: httpx.Response, server: str) -> set[str]:
    """The references the server says rows hold."""
    return set(json.loads(messages.checked(response, server).content)["held"])


def read_task_keys(response: httpx.Response, server: str) -> list[StoredKey]:
    """The listed keys, as the metastore's ``list_task_keys`` returns them."""
    from statestore.metastore.maintenance import StoredKey  # noqa: PLC0415

    rows = json.loads(messages.checked(response, server).content)["keys"]
    return [StoredKey(**wire.stored_key_fields(row)) for row in rows]


def _report(payload: dict[str, Any]) -> CleanupReport:
    from statestore.cleanup import CleanupReport  # noqa: PLC0415 - loads the metastore

    return CleanupReport(
        deleted=int(payload.get("deleted", 0)),
        would_delete=int(payload.get("would_delete", 0)),
        batches=int(payload.get("batches", 0)),
        dry_run=bool(payload.get("dry_run", False)),
        skipped_reason=payload.get("skipped_reason"),
    )


def _row(payload: dict[str, Any]) -> ExpiredTaskState:
    from statestore.metastore.maintenance import ExpiredTaskState  # noqa: PLC0415

    return ExpiredTaskState(
        dag_id=payload["dag_id"],
        run_id=payload["run_id"],
        task_id=payload["task_id"],
        map_index=int(payload["map_index"]),
        key=payload["key"],
        expires_at=datetime.fromisoformat(payload["expires_at"]),
        object_ref=payload.get("object_ref"),
        map_key=payload.get("map_key"),
    )


def _lines(lines: Iterator[str], server: str) -> Iterator[dict[str, Any]]:
    """The NDJSON objects of a dry run; an ``error`` line (the server failed after it had
    started answering) is raised as the typed error it names."""
    for line in lines:
        if not line.strip():
            continue
        payload = json.loads(line)
        if "error" in payload:
            problem = payload["error"]
            raise wire.error_from_problem(int(problem.get("status", 500)), problem)
        yield payload


def read_report(response: httpx.Response, server: str) -> CleanupReport:
    """A cleanup or sweep report; a dry run's stream is counted from its last line."""
    messages.checked(response, server)
    if response.headers.get("content-type", "").startswith("application/x-ndjson"):
        report: dict[str, Any] = {"dry_run": True}
        for payload in _lines(iter(response.text.splitlines()), server):
            report = payload.get("report", report)
        return _report(report)
    return _report(json.loads(response.content))


class _DryRunCount:
    """A dry run's report from its stream: the keys counted, or the server's own report
    when its store is not cleaned (``skipped_reason``)."""

    def __init__(self) -> None:
        self.count = 0
        self.last: dict[str, Any] = {}

    def add(self, payload: dict[str, Any]) -> None:
        if "report" in payload:
            self.last = payload["report"]
        else:
            self.count += 1

    def report(self) -> CleanupReport:
        if self.last.get("skipped_reason") is not None:
            return _report({**self.last, "dry_run": True})
        return _report({"would_delete": self.count, "dry_run": True})


class AdminRoutes:
    """Cleanup, sweep, the expired-key listing and the task-state listing of
    :class:`HttpStateBackend`."""

    _server: str
    _token: TokenSource
    _policy: RetryPolicy

    if TYPE_CHECKING:  # HttpStateBackend's

        def _call(self, call: Call, read: Callable[[httpx.Response, str], T]) -> T: ...

        async def _acall(self, call: Call, read: Callable[[httpx.Response, str], T]) -> T: ...

        def _sync_transport(self) -> httpx.BaseTransport: ...

        def _async_transport(self) -> httpx.AsyncBaseTransport: ...

    def cleanup_task_states(
        self, *, dry_run: bool = False, batch_size: int | None = None
    ) -> CleanupReport:
        """Delete expired task state on the server (admin token); a dry run counts what
        would go, reading the server's listing as it streams."""
        if not dry_run:
            return self._call(cleanup_call(dry_run=False, batch_size=batch_size), read_report)
        counted = _DryRunCount()
        for payload in self._dry_run():
            counted.add(payload)
        return counted.report()

    async def acleanup_task_states(
        self, *, dry_run: bool = False, batch_size: int | None = None
    ) -> CleanupReport:
        """Async twin of :meth:`cleanup_task_states`."""
        if not dry_run:
            call = cleanup_call(dry_run=False, batch_size=batch_size)
            return await self._acall(call, read_report)
        counted = _DryRunCount()
        async for payload in self._adry_run():
            counted.add(payload)
        return counted.report()

    def sweep_asset_states(self, *, dry_run: bool = False) -> CleanupReport:
        """Delete inactive assets' state on the server (admin token)."""
        return self._call(sweep_call(dry_run=dry_run), read_report)

    async def asweep_asset_states(self, *, dry_run: bool = False) -> CleanupReport:
        """Async twin of :meth:`sweep_asset_states`."""
        return await self._acall(sweep_call(dry_run=dry_run), read_report)

    def iter_expired_task_states(self) -> Iterator[ExpiredTaskState]:
        """Stream the keys a cleanup would delete, as the server lists them."""
        for payload in self._dry_run():
            if "report" not in payload:
                yield _row(payload)

    async def aiter_expired_task_states(self) -> AsyncIterator[ExpiredTaskState]:
        """Async twin of :meth:`iter_expired_task_states`."""
        async for payload in self._adry_run():
            if "report" not in payload:
                yield _row(payload)

    def list_task_keys(
        self, dag_id: str, run_id: str | None = None, task_id: str | None = None, *,
        map_index: int | None = None, map_key: str | None = None,
    ) -> list[StoredKey]:  # fmt: skip
        """The live task-state keys of a dag, one run, or one task (every instance, or
        the one ``map_index`` or ``map_key`` names), with their metadata, as the server
        reads them (admin token): what ``statestore task-state list`` shows."""
        call = task_keys_call(dag_id, run_id, task_id, map_index, map_key)
        return self._call(call, read_task_keys)

    async def alist_task_keys(
        self, dag_id: str, run_id: str | None = None, task_id: str | None = None, *,
        map_index: int | None = None, map_key: str | None = None,
    ) -> list[StoredKey]:  # fmt: skip
        """Async twin of :meth:`list_task_keys`."""
        call = task_keys_call(dag_id, run_id, task_id, map_index, map_key)
        return await self._acall(call, read_task_keys)

    def referenced_objects(self, refs: list[str]) -> set[str]:
        """Which of ``refs`` (object references) a row still holds, as the server's
        database says (admin token): ``objects gc`` through a server."""
        held: set[str] = set()
        for call in referenced_calls(refs):
            held |= self._call(call, read_held)
        return held

    async def areferenced_objects(self, refs: list[str]) -> set[str]:
        """Async twin of :meth:`referenced_objects`."""
        held: set[str] = set()
        for call in referenced_calls(refs):
            held |= await self._acall(call, read_held)
        return held

    def _dry_run_request(self) -> httpx.Request:
        call = cleanup_call(dry_run=True, batch_size=None)
        return messages.build_request(
            self._server, call, self._token.current(), self._policy.timeout
        )

    def _dry_run(self) -> Iterator[dict[str, Any]]:
        """The dry run's lines as they arrive; the last is ``{"report": ...}``."""
        request = self._dry_run_request()
        try:
            response = self._sync_transport().handle_request(request)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        try:
            if not response.is_success:
                response.read()
                raise messages.error_of(response, self._server)
            if not response.headers.get("content-type", "").startswith("application/x-ndjson"):
                response.read()  # a report only: the server's store is not the metastore
                yield {"report": json.loads(response.content)}
                return
            yield from _lines(response.iter_lines(), self._server)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        finally:
            response.close()

    async def _adry_run(self) -> AsyncIterator[dict[str, Any]]:
        """Async twin of :meth:`_dry_run`."""
        request = self._dry_run_request()
        try:
            response = await self._async_transport().handle_async_request(request)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        try:
            if not response.is_success:
                await response.aread()
                raise messages.error_of(response, self._server)
            if not response.headers.get("content-type", "").startswith("application/x-ndjson"):
                await response.aread()
                yield {"report": json.loads(response.content)}
                return
            async for line in response.aiter_lines():
                for payload in _lines(iter((line,)), self._server):
                    yield payload
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        finally:
            await response.aclose()

    def _unavailable(self, exc: httpx.TransportError) -> StateStoreError:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return BackendUnavailableError(
            f"the state server at {self._server} did not answer the expired-key listing ({what})"
        )
