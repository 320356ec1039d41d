"""A wire-level stand-in for the state server, for unit tests of the HTTP backend.

It answers httpx requests (``httpx.MockTransport`` calls it, sync and async alike) by
the contract in :mod:`statestore.wire` -- the same helpers the real server uses -- on
top of an :class:`InMemoryStateBackend`. So the client's requests and its decoding are
checked end to end without a network or the server's framework; the real server is
tested over HTTP in tests/server/ and tests/integration/test_http_conformance.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from statestore import wire, wire_batch
from statestore.backends.memory import InMemoryStateBackend
from statestore.batches import check_keys, encode_entries
from statestore.exceptions import AuthenticationError, StateStoreError
from statestore.scopes import StateScope, TaskScope
from statestore.write_ids import RECEIPTS_HEADER, WRITE_ID_HEADER, check_write_id

__all__ = ["FakeServer"]


@dataclass
class FakeServer:
    """``handle`` is an httpx MockTransport handler; ``requests`` records every request."""

    tokens: set[str] = field(default_factory=lambda: {"secret-token"})
    root: str = "/root"  # the path the server is mounted under (as behind a proxy)
    backend: InMemoryStateBackend = field(default_factory=InMemoryStateBackend)
    requests: list[httpx.Request] = field(default_factory=list)
    # Called first with each request: raise an httpx error or return a response to
    # simulate a broken network or a proxy; return None to go on.
    fault: Callable[[httpx.Request], httpx.Response | None] | None = None
    # Called with each request the server answered: raise an httpx error to simulate a
    # connection that broke after the server had acted, before its answer arrived.
    lost_answer: Callable[[httpx.Request], None] | None = None
    # As a server whose backend keeps write receipts (it says so on every answer); off:
    # as one over a custom backend without them.
    keeps_receipts: bool = True

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fault is not None:
            faulty = self.fault(request)
            if faulty is not None:
                return faulty
        try:
            self._authenticate(request)
            response = self._route(request)
        except StateStoreError as exc:
            status, body = wire.problem_for(exc)
            response = _problem(status, body)
        if self.keeps_receipts:
            response.headers[RECEIPTS_HEADER] = "kept"
        if self.lost_answer is not None:
            self.lost_answer(request)
        return response

    def _authenticate(self, request: httpx.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in self.tokens:
            raise AuthenticationError("missing or invalid bearer token")

    def _route(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if not request.url.path.startswith(self.root + "/"):
            return httpx.Response(404, text="no such route")
        path = request.url.path[len(self.root) :]
        task = path.startswith(wire.TASK_STATE)
        scope = wire.scope_from_params(params, task=task)
        if path in (wire.TASK_KEY, wire.ASSET_KEY):
            key = params["key"]
            if request.method == "GET":
                item = self.backend.get_item(scope, key)
                if item is None:
                    return _problem(*wire.absent_problem(key))
                headers = {"Content-Type": "application/json", **wire.item_headers(item)}
                return httpx.Response(200, content=item.value.encode(), headers=headers)
            if request.method == "PUT":
                if_version = wire.if_version_from_headers(
                    request.headers.get("If-Match"), request.headers.get("If-None-Match")
                )
                value = request.content.decode("utf-8")
                expires_at = wire.expires_at_from_params(params)
                write_id = request.headers.get(WRITE_ID_HEADER)
                if write_id is not None and if_version is not None and self.keeps_receipts:
                    self.backend.set_item_once(
                        scope, key, value, write_id=check_write_id(write_id),
                        if_version=if_version, expires_at=expires_at,
                        updated_by=params.get("updated_by"),
                    )  # fmt: skip
                    return httpx.Response(204)
                self.backend.set_item(
                    scope,
                    key,
                    value,
                    expires_at=expires_at,
                    if_version=if_version,
                    updated_by=params.get("updated_by"),
                )
                return httpx.Response(204)
            if request.method == "DELETE":
                self.backend.delete(scope, key)
                return httpx.Response(204)
        if path in (wire.TASK_STATE, wire.ASSET_STATE):
            if request.method == "GET":
                page = self.backend.list_items(
                    scope,
                    prefix=params.get("prefix", ""),
                    after=params.get("after", ""),
                    limit=int(params.get("limit", "1000")),
                    values=params.get("values", "true") != "false",
                )
                return httpx.Response(200, content=wire.list_page_json(page).encode())
            if request.method == "DELETE":
                every = isinstance(scope, TaskScope) and wire.flag(params, "all_map_indices")
                self.backend.clear(scope, all_map_indices=every)
                return httpx.Response(204)
        if request.method == "POST" and path in _BATCH_PATHS:
            return self._batch(request, scope, path.rsplit("/", 1)[1], params)
        return httpx.Response(404, text="no such route")

    def _batch(
        self, request: httpx.Request, scope: StateScope, op: str, params: dict[str, str]
    ) -> httpx.Response:
        body = wire_batch.parse_body(request.content.decode())
        if op == "set-many":
            entries = encode_entries(wire_batch.entries_from_body(body), 0, 5000, 0, escape=False)
            self.backend.set_many(
                scope, entries, expires_at=wire.expires_at_from_params(params),
                updated_by=params.get("updated_by"),
            )  # fmt: skip
            return httpx.Response(204)
        keys = check_keys(wire_batch.keys_from_body(body), 5000)
        if op == "delete-many":
            self.backend.delete_many(scope, keys)
            return httpx.Response(204)
        found = self.backend.get_items(scope, keys)
        return httpx.Response(200, content=wire_batch.items_json(found).encode())


_BATCH_PATHS = {
    wire_batch.TASK_GET_MANY, wire_batch.TASK_SET_MANY, wire_batch.TASK_DELETE_MANY,
    wire_batch.ASSET_GET_MANY, wire_batch.ASSET_SET_MANY, wire_batch.ASSET_DELETE_MANY,
}  # fmt: skip


def _problem(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": wire.PROBLEM_CONTENT_TYPE},
    )
