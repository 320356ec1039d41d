"""Errors as RFC 9457 problem details, both ways: the server's answer for a statestore
exception, and the client's exception for an answer (part of :mod:`statestore.wire`,
which re-exports every name here).

A problem's ``type`` is ``urn:statestore:problem:<ExceptionName>``; the client raises
that same class with the same message, and the numbers an error carries (a conflict's
``current_version``, a size and its limit) cross too. Unknown types fall back to the
status (401, 403, 413, 5xx); a 404 reads as "absent" only with :data:`KEY_ABSENT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statestore import exceptions
from statestore.exceptions import AccessDeniedError, AuthenticationError, StateStoreError

__all__ = [
    "KEY_ABSENT",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_PREFIX",
    "absent_problem",
    "error_from_problem",
    "is_absent",
    "problem_for",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_PREFIX = "urn:statestore:problem:"
KEY_ABSENT = PROBLEM_PREFIX + "KeyAbsent"  # not an exception: get() returns None


_STATUS: dict[type[StateStoreError], int] = {
    exceptions.ValueTooLargeError: 413,
    exceptions.BatchTooLargeError: 413,
    exceptions.VersionConflictError: 412,
    exceptions.InactiveAssetError: 409,
    exceptions.UnknownAssetError: 404,
    exceptions.UnsupportedOperationError: 501,
    exceptions.SchemaOutOfDateError: 503,
    exceptions.BackendUnavailableError: 503,
    AuthenticationError: 401,
    AccessDeniedError: 403,
    exceptions.ConfigError: 500,
}
_DEFAULT_STATUS = 422  # every other StateStoreError is a bad request: key, value, scope

_TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
           412: "Precondition Failed", 413: "Content Too Large", 422: "Unprocessable Content",
           500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable"}  # fmt: skip


def _status_of(exc: StateStoreError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return _DEFAULT_STATUS


def problem_for(exc: StateStoreError) -> tuple[int, dict[str, Any]]:
    """The status and problem-details body for a statestore error."""
    status = _status_of(exc)
    body: dict[str, Any] = {
        "type": PROBLEM_PREFIX + type(exc).__name__,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": str(exc),
    }
    for name in _attributes(type(exc)):
        body[name] = getattr(exc, name, None)
    return status, body


def _attributes(cls: type[StateStoreError]) -> tuple[str, ...]:
    """The numbers an error carries beyond its message, kept across the wire (a
    conflict's ``current`` row is not: the client reads again)."""
    if issubclass(cls, exceptions.VersionConflictError):
        return ("current_version",)
    if issubclass(cls, exceptions.ValueTooLargeError):
        return ("size", "limit")
    if issubclass(cls, exceptions.BatchTooLargeError):
        return ("size", "limit", "unit")
    return ()


def _exception_class(name: str) -> type[StateStoreError] | None:
    cls = getattr(exceptions, name, None)
    if isinstance(cls, type) and issubclass(cls, StateStoreError) and name in exceptions.__all__:
        return cls
    return None


def _rebuilt(cls: type[StateStoreError], detail: str, body: Mapping[str, Any]) -> StateStoreError:
    """An instance of ``cls`` whose message is exactly ``detail``, whatever arguments its
    constructor takes (``ValueTooLargeError(size, limit)`` builds its own message)."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, detail)
    for name in _attributes(cls):
        value = body.get(name)
        wanted = str if name == "unit" else int
        setattr(exc, name, value if type(value) is wanted else None)
    if isinstance(exc, exceptions.VersionConflictError):
        exc.current = None
    return exc


def absent_problem(key: str) -> tuple[int, dict[str, Any]]:
    """The answer to a read of a key that is absent or expired."""
    detail = f"no live value for key {key!r}"
    return 404, {"type": KEY_ABSENT, "title": "Not Found", "status": 404, "detail": detail}


def is_absent(status: int, body: Mapping[str, Any] | None) -> bool:
    """Whether an answer is :func:`absent_problem` (and not some other 404)."""
    return status == 404 and body is not None and body.get("type") == KEY_ABSENT


_BY_STATUS: dict[int, type[StateStoreError]] = {
    401: AuthenticationError,
    403: AccessDeniedError,
    413: exceptions.ValueTooLargeError,
    502: exceptions.BackendUnavailableError,
    503: exceptions.BackendUnavailableError,
    504: exceptions.BackendUnavailableError,
}


def error_from_problem(status: int, body: Mapping[str, Any] | None) -> StateStoreError:
    """The exception a problem-details answer stands for (unknown types: by status)."""
    body = body or {}
    kind = str(body.get("type", ""))
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    cls = _exception_class(kind[len(PROBLEM_PREFIX) :]) if kind.startswith(PROBLEM_PREFIX) else None
    cls = cls or _BY_STATUS.get(status)
    if cls is None:
        return StateStoreError(f"HTTP {status}: {detail}")
    return _rebuilt(cls, detail, body)
