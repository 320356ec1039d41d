"""``update()``'s two statements straight through libpq, under psycopg's cursor.

On a hot key the client's CPU sets the pace (docs/performance.md): the workers share the
cores with the server, and psycopg's cursor spends most of a statement's client time in
Python -- converting the query, dumping each parameter, setting up the result -- so a
raw psycopg loop pays it too, and statestore paid it plus its own layers. psycopg's
public libpq wrapper (``psycopg.pq``) runs the same statement for about half the CPU:
``PQexecParams`` with the parameters already in libpq's form, the GIL released while it
waits. That is what :class:`LibpqHotPath` does for ``KeyUpdater`` on the sync psycopg
driver.

Nothing else changes: the connection, the deadline watchdog, the retries and the error
translation are the hot path's own (``hotpath.SyncHotPath.run_libpq``); errors become
psycopg's own exceptions (``psycopg.errors.error_from_result``), so they are told apart
and translated exactly as the cursor's. It is an unnamed statement, like every statement
psycopg runs unprepared, so it is as safe behind a transaction pooler. Where psycopg
would prepare (``prepare_threshold`` set: the direct-connection opt-in) the cursor runs
the statement as before. A test checks both ways read and write alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statestore.metastore.hotpath import Fetch, SyncHotPath

__all__ = ["LibpqHotPath", "LibpqStatement", "encode"]

_NAMED = re.compile(r"%\((\w+)\)s")
_BYTEA = 17
"""PostgreSQL's type id of ``bytea``: digests go as raw bytes (binary format)."""


def _text(value: Any) -> tuple[bytes, int, int]:
    return value.encode(), 0, 0


def _integer(value: int) -> tuple[bytes, int, int]:
    return str(value).encode(), 0, 0


def _timestamp(value: datetime) -> tuple[bytes, int, int]:
    if value.utcoffset() is None:
        raise TypeError("no libpq form for a naive datetime parameter")
    return value.isoformat().encode(), 0, 0


_NULL: tuple[None, int, int] = (None, 0, 0)
_ENCODERS: dict[type, Callable[[Any], tuple[bytes | None, int, int]]] = {
    type(None): lambda value: _NULL,
    bytes: lambda value: (value, _BYTEA, 1),
    str: _text,
    int: _integer,
    datetime: _timestamp,
}
"""By exact type: a dict lookup, not a chain of ``isinstance`` (this runs for every
parameter of every statement); :func:`encode` takes subclasses (freezegun's datetime)."""


def encode(value: Any) -> tuple[bytes | None, int, int]:
    """A parameter as libpq takes it: (bytes or ``None`` for NULL, type id, format).

    Text in PostgreSQL's input syntax with type id 0 (the statement's casts and columns
    give the type), as psycopg sends ``str``; bytes in binary as ``bytea``. Only the
    types statestore's compiled statements bind reach here; anything else is refused
    rather than sent in a form the server might read differently.
    """
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    if isinstance(value, bytes):
        return value, _BYTEA, 1
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _integer(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    raise TypeError(f"no libpq form for a {type(value).__name__} parameter")


class LibpqStatement:
    """A statement compiled for psycopg (named ``%(name)s`` parameters), numbered for
    libpq (``$1, $2, ...``; a name used twice is one parameter)."""

    __slots__ = ("command", "names", "sql")

    def __init__(self, sql: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        command = _NAMED.sub(number, sql)
        if "%" in command:  # a literal % (escaped as %%) or another style: not ours
            raise ValueError("only named parameters can be numbered for libpq")
        self.sql = sql
        self.command = command.encode()
        self.names = tuple(names)

    def parameters(self, values: dict[str, Any]) -> tuple[list[bytes | None], list[int], list[int]]:
        """libpq's values, type ids and formats for the statement's named ``values``."""
        data: list[bytes | None] = []
        types: list[int] = []
        formats: list[int] = []
        for name in self.names:
            value = values[name]
            encoder = _ENCODERS.get(type(value))
            one = encode(value) if encoder is None else encoder(value)  # encode() refuses
            data.append(one[0])
            types.append(one[1])
            formats.append(one[2])
        return data, types, formats


_STATEMENTS: dict[str, LibpqStatement] = {}
"""Numbered statements by their SQL: a handful (a read and a replace per scope kind)."""


class LibpqHotPath:
    """The hot path's ``run``, each statement through libpq: ``fetch="row"`` gives the
    first two columns (a value's text and its version), ``"scalar"`` the first
    column's text (the rows a function replaced), ``"rowcount"`` the rows written --
    all ``KeyUpdater`` asks for."""

    __slots__ = ("_hotpath",)

    def __init__(self, hotpath: SyncHotPath) -> None:
        self._hotpath = hotpath

    def run(self, sql: str, parameters: dict[str, Any], *, fetch: Fetch) -> Any:
        """``SyncHotPath.run``'s answer for ``KeyUpdater``'s two statements."""
        statement = _STATEMENTS.get(sql)
        if statement is None:
            statement = _STATEMENTS[sql] = LibpqStatement(sql)
        return self._hotpath.run_libpq(statement, parameters, fetch=fetch)
