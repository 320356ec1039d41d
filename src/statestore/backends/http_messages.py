"""What :class:`~statestore.backends.http.HttpStateBackend` sends and how it reads the
answers: the pure core its sync and async twins share (no I/O but a token file's stat).

Every operation is one :class:`Call` built here from :mod:`statestore.wire` (so client
and server cannot drift), sent by the twin, and its response decoded here. What may be
resent after a failure is decided here too (:func:`may_resend`), as is how long to wait
(:class:`RetryPolicy`) -- so the policy is unit-tested without a network.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from statestore import wire
from statestore.exceptions import (
    BackendUnavailableError,
    ConfigError,
    InvalidScopeError,
    StateStoreError,
)
from statestore.items import StoredItem
from statestore.scopes import AssetScope, StateScope, TaskScope
from statestore.write_ids import WRITE_ID_HEADER, new_write_id

if TYPE_CHECKING:
    from statestore.metastore.maintenance import AssetInfo

__all__ = [
    "Call",
    "RetryPolicy",
    "TokenSource",
    "assets_call",
    "build_request",
    "checked",
    "clear_call",
    "delete_call",
    "error_of",
    "get_call",
    "list_call",
    "may_resend",
    "never_sent",
    "read_assets",
    "read_count",
    "read_done",
    "read_item",
    "read_page",
    "read_value",
    "set_active_call",
    "set_call",
]

_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request of one operation.

    Every call may be sent again after an *ambiguous* failure (the request went out, no
    answer came back): sending a read, a plain write, a delete or a clear twice leaves
    the same state as once, and a conditional write carries a write id
    (``Idempotency-Key``) that the server answers as applied when a copy was -- if the
    server keeps write receipts, which the backend learns from its answers.
    """

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None


_HEADERS = {"Accept": "application/json", "User-Agent": "statestore-http-backend"}


def build_request(server: str, call: Call, token: str, timeout: float) -> httpx.Request:
    """The request for ``call``, whole: no client-side merging, and no parsing of what
    is already known -- the server's URL is parsed once, and the headers every request
    carries are built once per token (the parts cost more client CPU than the rest of
    a request, measured: ``python -m benchmarks http``)."""
    query = encode_query(call.params)
    headers = _base_headers(token)
    if call.headers:
        headers = httpx.Headers(headers)
        headers.update(call.headers)
    return httpx.Request(
        call.method, _urls(server).url(call.path, query), headers=headers,
        content=call.content,
        extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout,
                                "pool": timeout}},
    )  # fmt: skip


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def encode_query(params: dict[str, str]) -> str:
    """``urlencode(params, quote_via=quote, safe="")``, the same text, faster: most ids
    and keys need no escaping, and those are not run through ``quote``."""
    return "&".join(f"{_escaped(name)}={_escaped(value)}" for name, value in params.items())


def _escaped(text: str) -> str:
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe="")


@functools.lru_cache(maxsize=16)  # a process holds one token (a few, while one renews)
def _base_headers(token: str) -> httpx.Headers:
    return httpx.Headers({**_HEADERS, "Authorization": f"Bearer {token}"})


class _Urls:
    """The request URLs of one server, without parsing the server's part every time.

    ``httpx.URL(text)`` checks every character of the text and matches each component
    against a pattern; for a URL made of the parsed server URL, a constant path and a
    query that ``urlencode(quote, safe="")`` has already escaped, that check cannot
    fail. So the parsed form is copied with the new path and query (httpx's own
    ``ParseResult``, a named tuple) -- if this httpx has it, and if the result is the
    very URL parsing would give (checked once here); otherwise URLs are parsed whole.
    """

    def __init__(self, server: str) -> None:
        self._server = server
        self._base = httpx.URL(server)
        self._fast = False
        try:
            probe = "dag_id=a%2Fb&key=%E2%82%AC%20x"
            self._fast = str(self._copied(wire.TASK_KEY, probe)) == str(
                httpx.URL(f"{server}{wire.TASK_KEY}?{probe}")
            )
        except (AttributeError, TypeError, ValueError):  # another httpx: parse whole
            self._fast = False

    def _copied(self, path: str, query: str) -> httpx.URL:
        url = httpx.URL.__new__(httpx.URL)
        url._uri_reference = self._base._uri_reference._replace(
            path=self._base._uri_reference.path + path, query=query or None
        )
        return url

    def url(self, path: str, query: str) -> httpx.URL:
        if self._fast:
            return self._copied(path, query)
        return httpx.URL(f"{self._server}{path}?{query}" if query else f"{self._server}{path}")


@functools.lru_cache(maxsize=16)
def _urls(server: str) -> _Urls:
    return _Urls(server)


# -- requests -----------------------------------------------------------------------------


def _key_path(scope: StateScope) -> str:
    return wire.TASK_KEY if isinstance(scope, TaskScope) else wire.ASSET_KEY


def _collection_path(scope: StateScope) -> str:
    return wire.TASK_STATE if isinstance(scope, TaskScope) else wire.ASSET_STATE


def get_call(scope: StateScope, key: str) -> Call:
    """Read one key, value and metadata (``get`` and ``get_item`` send the same)."""
    return Call("GET", _key_path(scope), wire.key_params(scope, key))


def set_call(
    scope: StateScope,
    key: str,
    value: str,
    *,
    expires_at: datetime | None,
    if_version: int | None = None,
    updated_by: str | None = None,
) -> Call:
    """Write one key; with ``if_version`` a conditional request named by a fresh write
    id, so that the server answers a copy of it (a resend) as applied, not as a conflict."""
    headers = {"Content-Type": _JSON, **wire.if_version_headers(if_version)}
    if if_version is not None:
        headers[WRITE_ID_HEADER] = new_write_id()  # the same in every copy of this Call
    params = wire.write_params(scope, key, expires_at=expires_at, updated_by=updated_by)
    content = value.encode("utf-8")
    return Call("PUT", _key_path(scope), params, headers, content)


def delete_call(scope: StateScope, key: str) -> Call:
    """Delete one key (absent: still a success)."""
    return Call("DELETE", _key_path(scope), wire.key_params(scope, key))


def clear_call(scope: StateScope, *, all_map_indices: bool) -> Call:
    """Delete every key of a scope (of every map index of a task, if asked)."""
    params = wire.scope_params(scope)
    if all_map_indices and isinstance(scope, TaskScope):
        params["all_map_indices"] = "true"
    return Call("DELETE", _collection_path(scope), params)


def list_call(scope: StateScope, *, prefix: str, after: str, limit: int, values: bool) -> Call:
    """One page of a scope's live keys."""
    params = wire.list_params(scope, prefix=prefix, after=after, limit=limit, values=values)
    return Call("GET", _collection_path(scope), params)


def assets_call(active: bool | None) -> Call:
    """The asset registry (admin)."""
    params = {} if active is None else {"active": "true" if active else "false"}
    return Call("GET", wire.ASSETS, params)


def set_active_call(assets: list[AssetScope], *, active: bool) -> Call:
    """(De)activate assets by name (admin). Setting a flag twice is harmless."""
    names = []
    for scope in assets:
        if scope.name is None:
            raise InvalidScopeError(f"a state server names assets by name; {scope!r} has none")
        names.append(scope.name)
    path = wire.ASSETS_ACTIVATE if active else wire.ASSETS_DEACTIVATE
    body = json.dumps({"names": names}, ensure_ascii=False).encode("utf-8")
    return Call("POST", path, {}, {"Content-Type": _JSON}, body)


# -- responses ----------------------------------------------------------------------------


def _problem_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except ValueError:  # an HTML error page from a proxy, an empty body...
        return None
    return body if isinstance(body, dict) else None


def error_of(response: httpx.Response, server: str) -> StateStoreError:
    """The typed exception a failed answer stands for, with the server's message."""
    body = _problem_body(response)
    exc = wire.error_from_problem(response.status_code, body)
    if isinstance(exc, BackendUnavailableError):
        if body is None:  # not statestore speaking (a proxy's 502 page)
            return BackendUnavailableError(
                f"the state server at {server} answered HTTP {response.status_code} "
                f"without a problem report ({response.reason_phrase or 'no reason given'})"
            )
        # Say who answered: "its database is unavailable" alone names no one.
        return type(exc)(f"the state server at {server}: {exc}")
    return exc


def checked(response: httpx.Response, server: str) -> httpx.Response:
    """``response`` if it succeeded, else the typed error its problem document names."""
    if not response.is_success:
        raise error_of(response, server)
    return response


def _absent(response: httpx.Response) -> bool:
    return response.status_code == 404 and wire.is_absent(404, _problem_body(response))


def read_value(response: httpx.Response, server: str) -> str | None:
    """A read's JSON text, ``None`` for an absent key, or the typed error."""
    if _absent(response):
        return None
    return checked(response, server).content.decode("utf-8")


def read_item(response: httpx.Response, server: str) -> StoredItem | None:
    """A read's value and metadata (from its headers), ``None`` for an absent key."""
    if _absent(response):
        return None
    answer = checked(response, server)
    return wire.item_from_headers(answer.content.decode("utf-8"), answer.headers)


def read_done(response: httpx.Response, server: str) -> None:
    """A write's, delete's or clear's answer: nothing, or the typed error."""
    checked(response, server)


def read_page(response: httpx.Response, server: str) -> list[tuple[str, str | None]]:
    """A listing page's ``(key, JSON text)`` pairs."""
    return wire.list_page_from_json(checked(response, server).content)


def read_assets(response: httpx.Response, server: str) -> list[AssetInfo]:
    """The registry's assets, as the metastore's ``list_assets`` returns them."""
    from statestore.metastore.maintenance import AssetInfo  # noqa: PLC0415 - admin only

    listed = json.loads(checked(response, server).content)["assets"]
    return [
        AssetInfo(
            asset_id=entry["asset_id"],
            name=entry["name"],
            uri=entry["uri"],
            active=entry["active"],
            keys=entry["keys"],
            created_at=datetime.fromisoformat(entry["created_at"]),
            updated_at=datetime.fromisoformat(entry["updated_at"]),
        )
        for entry in listed
    ]


def read_count(response: httpx.Response, server: str) -> int:
    """How many assets a (de)activation changed."""
    body = json.loads(checked(response, server).content)
    return int(body.get("activated", body.get("deactivated", 0)))


# -- what may be resent, and when ---------------------------------------------------------

# The request never left this process (no connection, no pooled connection free in
# time): resending is safe for every operation, conditional writes included.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have been applied and its answer lost.
_AMBIGUOUS = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadTimeout,
              httpx.WriteTimeout)  # fmt: skip


def _is_certificate_problem(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def never_sent(exc: httpx.TransportError) -> bool:
    """Whether the request certainly never reached the server."""
    return isinstance(exc, _NEVER_SENT)


def may_resend(exc: httpx.TransportError) -> bool:
    """Whether a call may be sent again after ``exc`` (time permitting): it never
    reached the server, or it may have and sending it twice is harmless (every call).

    A certificate the client refuses will be refused again: that is not retried.
    """
    if isinstance(exc, _NEVER_SENT):
        return not _is_certificate_problem(exc)
    return isinstance(exc, _AMBIGUOUS)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential pauses with jitter, never past the operation's deadline.

    ``timeout`` bounds the whole operation, every attempt and pause included
    (``[client] timeout_seconds``): a server restarting within it is waited for, one
    that stays away ends in ``BackendUnavailableError`` once it is spent.
    """

    timeout: float
    first_pause: float = 0.05
    max_pause: float = 1.0

    def pause(self, attempt: int, remaining: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None``: give up now."""
        base = min(self.max_pause, self.first_pause * 2**attempt)
        pause = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not secrecy
        # Leave room for the next attempt itself, or it could only time out.
        return pause if pause + min(0.1, self.timeout / 10) < remaining else None


# -- the token ----------------------------------------------------------------------------


def _check_token(token: str, what: str) -> None:
    """Refuse a token that cannot travel in a header: a line break would end the header
    (and start another), and no bearer token has spaces or control characters."""
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(
            f"{what} has a space, line break or other character no bearer token has "
            "(a file holding two lines?)"
        )


class TokenSource:
    """The bearer token: given inline, or read from a file again whenever it changes.

    Tokens are short-lived, so whatever renews them rewrites the file; a ``stat()`` per
    request notices (modification time, size and inode), and only then is it re-read.
    The token's text never appears in an error message.
    """

    def __init__(self, token: str | None = None, token_file: str | os.PathLike[str] | None = None):
        if token and token_file:
            raise ConfigError("give a token or a token file, not both")
        if not token and not token_file:
            raise ConfigError("the state server needs a token: token= or token_file=")
        self._inline = token.strip() if token else None
        if token is not None and not self._inline:
            raise ConfigError("the token is empty")
        if self._inline is not None:
            _check_token(self._inline, "the token")
        self._path = Path(token_file) if token_file else None
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._token = ""

    @property
    def path(self) -> Path | None:
        """The token file, if the token comes from one."""
        return self._path

    def current(self) -> str:
        """The token to send now."""
        if self._inline is not None:
            return self._inline
        assert self._path is not None
        try:
            info = self._path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {self._path}: {exc.strerror}") from None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp != self._seen:
            with self._lock:
                if stamp != self._seen:
                    self._token = self._read()
                    self._seen = stamp
        return self._token

    def _read(self) -> str:
        assert self._path is not None
        try:
            text = self._path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read the token file {self._path}: {why}") from None
        if not text:
            raise ConfigError(f"the token file {self._path} is empty")
        _check_token(text, f"the token in {self._path}")
        return text

    def renewed_since(self, sent: str, response: httpx.Response) -> bool:
        """Whether a 401 answered a token the file has replaced since: worth one resend
        (a rejected token means nothing was done, so any request may be resent)."""
        return response.status_code == 401 and self._path is not None and self.current() != sent
