"""The HTTP contract between ``statestore serve`` and ``HttpStateBackend``, in one place.

Both sides import this module, so they cannot drift: paths, how a scope and a key travel,
how versions map onto HTTP's conditional requests, the problem-details bodies that carry
statestore's typed errors, and the claims a token grants. Pure functions only, no I/O.

**Identities in the query string.** Ids and keys may contain ``/`` and anything but NUL;
servers and proxies disagree on whether ``%2F`` in a *path* is a slash, so the path
names only the resource and every id is a query parameter (decoded the same way by
every HTTP stack)::

    GET    /api/v1/task-state/key?dag_id=d&run_id=r&task_id=t&map_index=-1&key=k
    PUT    /api/v1/task-state/key?...&key=k&expires_at=2026-12-31T00:00:00%2B00:00
                                         [&updated_by=w]
    DELETE /api/v1/task-state/key?...&key=k
    GET    /api/v1/task-state?dag_id=d&run_id=r&task_id=t&prefix=p&after=a&limit=100
                                         [&values=false]
    DELETE /api/v1/task-state?dag_id=d&run_id=r&task_id=t&all_map_indices=true
    ... and the same under /api/v1/asset-state with name= (or uri=, asset_id=).

**The value is the body.** A key's representation is its value's JSON text, sent and
returned verbatim (``application/json``); its metadata travels in headers: the version
is the ``ETag`` (``"7"``), with ``Statestore-Updated-At``, ``Statestore-Updated-By``
(percent-encoded: any text) and ``Statestore-Expires-At`` (absent: never expires).
``If-Match: "7"`` is a compare-and-set, ``If-None-Match: *`` a create-only write; either
losing is ``412`` and writes nothing. A write's ``updated_by`` is a query parameter
(``write_params``), not a header. A write answers ``204``.

**A missing key** (absent or expired) answers ``404`` with the problem type
:data:`KEY_ABSENT` (:func:`absent_problem`); only that reads as "absent" on the client,
so a 404 from anything else (a wrong root path, a proxy) is an error, never a silent
``None``.

**Errors** are RFC 9457 problem details whose ``type`` is
``urn:statestore:problem:<ExceptionName>``: the client raises that same exception class
with the same message (:mod:`statestore.wire_problems`, re-exported here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote

from statestore.exceptions import (
    AuthenticationError,
    InvalidScopeError,
    InvalidTypeError,
    InvalidValueError,
    StateStoreError,
)
from statestore.items import StoredItem, check_version_arg
from statestore.scopes import AssetScope, StateScope, TaskScope
from statestore.wire_problems import (
    KEY_ABSENT,
    PROBLEM_CONTENT_TYPE,
    PROBLEM_PREFIX,
    absent_problem,
    error_from_problem,
    is_absent,
    problem_for,
)

__all__ = [
    "API_PREFIX",
    "ASSETS",
    "ASSETS_ACTIVATE",
    "ASSETS_DEACTIVATE",
    "ASSET_KEY",
    "ASSET_STATE",
    "CLEANUP",
    "EXPIRES_AT",
    "KEY_ABSENT",
    "LIVEZ",
    "OBJECTS_REFERENCED",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_PREFIX",
    "READYZ",
    "SWEEP",
    "TASK_KEY",
    "TASK_STATE",
    "TASK_STATE_LISTING",
    "TOKEN_AUDIENCE",
    "UPDATED_AT",
    "UPDATED_BY",
    "Grant",
    "absent_problem",
    "error_from_problem",
    "etag_for",
    "grant_from_claims",
    "if_version_from_headers",
    "if_version_headers",
    "integer_param",
    "is_absent",
    "item_from_headers",
    "item_headers",
    "key_params",
    "list_page_from_json",
    "list_page_json",
    "list_params",
    "problem_for",
    "scope_from_params",
    "scope_params",
    "stored_key_fields",
    "stored_key_json",
    "version_from_etag",
    "write_params",
]

API_PREFIX = "/api/v1"
TASK_STATE = f"{API_PREFIX}/task-state"
TASK_KEY = f"{TASK_STATE}/key"
ASSET_STATE = f"{API_PREFIX}/asset-state"
ASSET_KEY = f"{ASSET_STATE}/key"
ASSETS = f"{API_PREFIX}/assets"  # admin: GET list; POST .../deactivate, .../activate
ASSETS_DEACTIVATE = f"{ASSETS}/deactivate"  # admin: POST {"names": [...]} -> {"deactivated": n}
ASSETS_ACTIVATE = f"{ASSETS}/activate"  # admin: POST {"names": [...]} -> {"activated": n}
CLEANUP = f"{API_PREFIX}/admin/cleanup"  # admin: POST (?dry_run=true streams NDJSON)
SWEEP = f"{API_PREFIX}/admin/sweep"  # admin: POST (?dry_run=true)
# admin: GET ?dag_id[&run_id[&task_id[&map_index|map_key]]] -> {"keys": [...]}
TASK_STATE_LISTING = f"{API_PREFIX}/admin/task-state"
# admin: POST {"refs": [...]} -> {"held": [...]}: which object references rows still hold
OBJECTS_REFERENCED = f"{API_PREFIX}/admin/objects/referenced"
LIVEZ = "/livez"
READYZ = "/readyz"

EXPIRES_AT = "Statestore-Expires-At"
UPDATED_AT = "Statestore-Updated-At"
UPDATED_BY = "Statestore-Updated-By"
TOKEN_AUDIENCE = "statestore"  # noqa: S105 - the JWT audience, not a secret

# -- scopes and keys as query parameters ------------------------------------------------


def scope_params(scope: StateScope) -> dict[str, str]:
    """The query parameters that name ``scope``."""
    if isinstance(scope, TaskScope):
        params = {"dag_id": scope.dag_id, "run_id": scope.run_id, "task_id": scope.task_id}
        if scope.map_key is not None:
            params["map_key"] = scope.map_key
        else:
            params["map_index"] = str(scope.map_index)
        return params
    params = {}
    if scope.name is not None:
        params["name"] = scope.name
    if scope.uri is not None:
        params["uri"] = scope.uri
    if scope.asset_id is not None:
        params["asset_id"] = str(scope.asset_id)
    return params


def key_params(scope: StateScope, key: str) -> dict[str, str]:
    """The query parameters that name one key of ``scope``."""
    params = scope_params(scope)
    params["key"] = key
    return params


def write_params(
    scope: StateScope, key: str, *, expires_at: datetime | None, updated_by: str | None
) -> dict[str, str]:
    """The query parameters of a PUT of one key (``expires_at`` absent: never expires)."""
    params = key_params(scope, key)
    if expires_at is not None:
        params["expires_at"] = expires_at.isoformat()
    if updated_by is not None:
        params["updated_by"] = updated_by
    return params


def list_params(
    scope: StateScope, *, prefix: str, after: str, limit: int, values: bool
) -> dict[str, str]:
    """The query parameters of one listing page (``values=false``: keys suffice)."""
    params = scope_params(scope)
    if prefix:
        params["prefix"] = prefix
    if after:
        params["after"] = after
    params["limit"] = str(limit)
    if not values:
        params["values"] = "false"
    return params


def integer_param(params: Mapping[str, str], name: str) -> int | None:
    """A whole-number query parameter, ``None`` when absent (``InvalidScopeError`` if not
    a whole number)."""
    text = params.get(name)
    if text is None:
        return None
    try:
        return int(text, 10)
    except ValueError:
        raise InvalidScopeError(f"{name} must be a whole number, not {text!r}") from None


def stored_key_json(row: dict[str, Any]) -> dict[str, Any]:
    """A listed key's fields (``StoredKey`` as a dict) as JSON: instants in ISO 8601."""
    out = dict(row)
    for name in ("expires_at", "updated_at"):
        if out.get(name) is not None:
            out[name] = out[name].isoformat()
    if out.get("task") is not None:
        out["task"] = list(out["task"])
    return out


def stored_key_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`stored_key_json`: ``StoredKey``'s constructor arguments."""
    out = dict(payload)
    for name in ("expires_at", "updated_at"):
        if out.get(name) is not None:
            out[name] = datetime.fromisoformat(out[name])
    if out.get("task") is not None:
        out["task"] = tuple(out["task"])
    return out


def scope_from_params(params: Mapping[str, str], *, task: bool) -> StateScope:
    """The scope named by query parameters; the scope's own validation applies."""
    if task:
        missing = [name for name in ("dag_id", "run_id", "task_id") if name not in params]
        if missing:
            raise InvalidScopeError(f"task state needs {', '.join(missing)} in the query")
        if "map_key" in params and "map_index" in params:
            raise InvalidScopeError("give map_index or map_key, not both")
        map_index = integer_param(params, "map_index")
        return TaskScope(
            params["dag_id"],
            params["run_id"],
            params["task_id"],
            -1 if map_index is None else map_index,
            map_key=params.get("map_key"),
        )
    if not any(name in params for name in ("name", "uri", "asset_id")):
        raise InvalidScopeError("asset state needs name, uri or asset_id in the query")
    return AssetScope(integer_param(params, "asset_id"), params.get("name"), params.get("uri"))


def flag(params: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter: ``true`` or ``false``, as the document says; absent
    is false. Nothing else, not even empty: ``?dry_run`` must not run a real cleanup."""
    text = params.get(name)
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise InvalidValueError(f"{name} must be true or false, not {text!r}")


# -- versions as ETags ---------------------------------------------------------------------


def etag_for(version: int) -> str:
    """The strong ETag of a key at ``version``."""
    return f'"{version}"'


def version_from_etag(text: str) -> int:
    """The version an ``If-Match`` header names (strong ETags only)."""
    inner = text.strip()
    digits = inner[1:-1]
    # isascii: str.isdigit() also takes other scripts' digits and superscripts
    if (
        len(inner) < 3
        or inner[0] != '"'
        or inner[-1] != '"'
        or not (digits.isascii() and digits.isdigit())
    ):
        raise InvalidValueError(f'If-Match must be one version ETag like "3", not {text!r}')
    version = check_version_arg(int(digits))  # bounded: past 2**63-1 the driver fails
    assert version is not None
    return version


def if_version_headers(if_version: int | None) -> dict[str, str]:
    """The conditional-request header for ``if_version`` (0: create-only)."""
    if if_version is None:
        return {}
    if if_version == 0:
        return {"If-None-Match": "*"}
    return {"If-Match": etag_for(if_version)}


def if_version_from_headers(if_match: str | None, if_none_match: str | None) -> int | None:
    """``if_version`` from a request's conditional headers."""
    if if_match is not None and if_none_match is not None:
        raise InvalidValueError("send If-Match or If-None-Match, not both")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise InvalidValueError(f"If-None-Match must be *, not {if_none_match!r}")
        return 0
    return None if if_match is None else version_from_etag(if_match)


# -- a key's metadata as headers -----------------------------------------------------------


# Header values are ASCII: a writer's name (any text) travels percent-encoded, with
# printable ASCII other than '%' left as it is, so common names stay readable.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def item_headers(item: StoredItem) -> dict[str, str]:
    """The response headers that describe ``item`` (its value is the body)."""
    headers = {"ETag": etag_for(item.version), UPDATED_AT: item.updated_at.isoformat()}
    if item.updated_by is not None:
        headers[UPDATED_BY] = quote(item.updated_by, safe=_HEADER_SAFE)
    if item.expires_at is not None:
        headers[EXPIRES_AT] = item.expires_at.isoformat()
    return headers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value is not None else headers.get(name.lower())


def item_from_headers(value: str, headers: Mapping[str, str]) -> StoredItem:
    """The ``StoredItem`` a response describes."""
    etag = _header(headers, "ETag")
    updated_at = _header(headers, UPDATED_AT)
    if etag is None or updated_at is None:
        raise InvalidValueError("the server's answer has no ETag or Statestore-Updated-At")
    expires = _header(headers, EXPIRES_AT)
    updated_by = _header(headers, UPDATED_BY)
    return StoredItem(
        value=value,
        version=version_from_etag(etag),
        updated_at=datetime.fromisoformat(updated_at),
        updated_by=None if updated_by is None else unquote(updated_by),
        expires_at=None if expires is None else datetime.fromisoformat(expires),
    )


def expires_at_from_params(params: Mapping[str, str]) -> datetime | None:
    """``expires_at`` of a write (an aware ISO 8601 time; absent: never)."""
    text = params.get("expires_at")
    if text is None:
        return None
    # RFC 3339 allows a "Z" (or "z") offset and a lower-case "t"; Python 3.10's
    # fromisoformat takes neither.
    normal = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    if normal[10:11] == "t":
        normal = normal[:10] + "T" + normal[11:]
    try:
        moment = datetime.fromisoformat(normal)
    except ValueError:
        raise InvalidValueError(f"expires_at must be an ISO 8601 time, not {text!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidValueError("expires_at must carry a UTC offset")
    try:  # stored in UTC: 0001-01-01T00:00+01:00 is before the first representable time
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidValueError(f"expires_at {text!r} is outside the years 1-9999 in UTC") from None


# -- listing pages -------------------------------------------------------------------------


def list_page_json(items: list[tuple[str, str | None]]) -> str:
    """A page of ``(key, JSON text)`` as the response body: the texts inserted verbatim,
    so the server never decodes a value."""
    parts = [
        f'{{"key":{json.dumps(key, ensure_ascii=False)},"value":{"null" if v is None else v}}}'
        for key, v in items
    ]
    return '{"items":[' + ",".join(parts) + "]}"


def list_page_from_json(body: bytes | str) -> list[tuple[str, str | None]]:
    """The ``(key, JSON text)`` pairs of a listing response."""
    items = json.loads(body)["items"]
    return [
        (entry["key"], None if entry["value"] is None else _compact(entry["value"]))
        for entry in items
    ]


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# -- what a token grants ------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What one token may touch. ``admin`` may touch everything; otherwise ``task``
    names the one task instance whose state it may read and write (every map index of
    it when ``all_map_indices``), and ``read_assets`` / ``write_assets`` the assets by
    name (writing implies reading)."""

    subject: str
    admin: bool = False
    task: TaskScope | None = None
    all_map_indices: bool = False
    read_assets: frozenset[str] = field(default_factory=frozenset)
    write_assets: frozenset[str] = field(default_factory=frozenset)

    def claims(self) -> dict[str, Any]:
        """The token's statestore claims (the signer adds iss, aud, exp, iat, jti)."""
        claims: dict[str, Any] = {"sub": self.subject, "role": "admin" if self.admin else "task"}
        if self.task is not None:
            claims["task"] = {**scope_params(self.task), "all_map_indices": self.all_map_indices}
        if self.read_assets or self.write_assets:
            claims["assets"] = {
                "read": sorted(self.read_assets),
                "write": sorted(self.write_assets),
            }
        return claims

    def may_touch_task(self, scope: TaskScope, *, all_map_indices: bool = False) -> bool:
        """Whether task state of ``scope`` (all of its map indices, if asked) is granted."""
        if self.admin:
            return True
        mine = self.task
        if mine is None or (mine.dag_id, mine.run_id, mine.task_id) != (
            scope.dag_id, scope.run_id, scope.task_id,
        ):  # fmt: skip
            return False
        if self.all_map_indices:
            return True
        if all_map_indices:
            return False
        return (mine.map_index, mine.map_key) == (scope.map_index, scope.map_key)

    def may_read_asset(self, scope: AssetScope) -> bool:
        """Whether the asset is among the granted inlets or outlets (by name)."""
        if self.admin:
            return True
        return scope.name is not None and (
            scope.name in self.read_assets or scope.name in self.write_assets
        )

    def may_write_asset(self, scope: AssetScope) -> bool:
        """Whether the asset is among the granted outlets (by name)."""
        return self.admin or (scope.name is not None and scope.name in self.write_assets)


def _names(value: object, what: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidTypeError(f"token claim {what} must be a list of asset names")
    return frozenset(value)


def grant_from_claims(claims: Mapping[str, Any]) -> Grant:
    """The grant a verified token's claims carry (malformed claims are refused)."""
    subject = claims.get("sub")
    role = claims.get("role")
    if not isinstance(subject, str) or role not in ("admin", "task"):
        raise AuthenticationError("the token has no valid sub and role claims")
    if role == "admin":
        return Grant(subject, admin=True)
    task_claim = claims.get("task")
    task = None
    all_map_indices = False
    try:
        if task_claim is not None:
            if not isinstance(task_claim, dict):
                raise InvalidTypeError("token claim task must be an object")
            all_map_indices = task_claim.get("all_map_indices") is True
            params = {k: str(v) for k, v in task_claim.items() if k != "all_map_indices"}
            scope = scope_from_params(params, task=True)
            assert isinstance(scope, TaskScope)
            task = scope
        assets = claims.get("assets") or {}
        if not isinstance(assets, dict):
            raise InvalidTypeError("token claim assets must be an object")
        read = _names(assets.get("read", []), "assets.read")
        write = _names(assets.get("write", []), "assets.write")
    except StateStoreError as exc:
        raise AuthenticationError(f"the token's grant is malformed: {exc}") from None
    return Grant(subject, task=task, all_map_indices=all_map_indices,
                 read_assets=read, write_assets=write)  # fmt: skip
