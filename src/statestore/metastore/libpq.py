"""Plain statements straight through libpq, under psycopg's cursor.

psycopg's cursor spends most of a statement's client time in Python -- converting the
query, dumping each parameter, setting up the result -- so a raw psycopg loop pays it
too, and on a hot key, where the workers share the cores with the server, the client's
CPU sets the pace (docs/performance.md). psycopg's public libpq wrapper (``psycopg.pq``)
runs the same statement for about half the CPU: ``PQexecParams`` with the parameters
already in libpq's form, the GIL released while it waits.

``hotpath.SyncHotPath.run_plain`` does that on the sync psycopg driver for the
statements whose answer is plain text: a get's value, ``update()``'s read (a value and
its version) and compare-and-set, and the row count of every write;
``async_hotpath.AsyncHotPath.run_plain`` does the same on psycopg's async connection,
sending the statement and awaiting its result on the socket (:func:`exec_params_async`).
Rows with typed columns (``get_item``'s timestamps) still go through the cursor. Nothing
else changes:
the connection, the deadline watchdog, the retries and the error translation are the
hot path's own; errors become psycopg's own exceptions
(``psycopg.errors.error_from_result``), so they are told apart and translated exactly as
the cursor's. It is an unnamed statement, like every statement psycopg runs unprepared,
so it is as safe behind a transaction pooler. Where the opt-in asks for prepared
statements (``prepare_threshold`` set: direct connections only), each is prepared under
statestore's own name on its first run on a connection and then run by name
(:class:`PreparedNames`). Where the connection's client encoding is not UTF-8, or where
a value has no libpq form here (a text with a NUL character, which libpq would cut
short), the cursor runs the statement as before. Tests check every way reads and writes
alike.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

__all__ = [
    "COMMAND_OK",
    "TUPLES_OK",
    "LibpqStatement",
    "PreparedNames",
    "answered",
    "encode",
    "error_from_result",
    "exec_params_async",
    "numbered",
]

TUPLES_OK, COMMAND_OK = 2, 1
"""libpq's ``ExecStatus`` of a query that returned rows, and of a command."""

_NAMED = re.compile(r"%\((\w+)\)s")
_BYTEA = 17
"""PostgreSQL's type id of ``bytea``: digests go as raw bytes (binary format)."""


def _text(value: str) -> tuple[bytes, int, int]:
    if "\x00" in value:  # libpq reads a text parameter up to its first NUL: refused
        raise TypeError("no libpq form for a text parameter with a NUL character")
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


def error_from_result(answer: Any, encoding: str) -> Exception:
    """psycopg's own exception for a failed libpq result (imported when one fails)."""
    from psycopg.errors import error_from_result  # noqa: PLC0415 - psycopg is optional

    return error_from_result(answer, encoding)


def answered(answer: Any, fetch: str, encoding: str) -> Any:
    """What a plain statement's libpq result holds, in the shape ``fetch`` names
    (``hotpath.SyncHotPath.run_plain``); a failed one raises psycopg's own error."""
    status = answer.status
    if status == TUPLES_OK and fetch == "row":  # text (or NULL) and a version
        if not answer.ntuples:
            return None
        text = answer.get_value(0, 0)
        return None if text is None else text.decode(), int(answer.get_value(0, 1))
    if status == TUPLES_OK and fetch == "scalar":  # the first column's text
        found = answer.get_value(0, 0) if answer.ntuples else None
        return None if found is None else found.decode()
    if status == COMMAND_OK and fetch == "rowcount":
        return answer.command_tuples
    if status in (TUPLES_OK, COMMAND_OK):
        raise ValueError(f"a {fetch!r} statement answered with libpq status {status}")
    raise error_from_result(answer, encoding)


async def exec_params_async(
    pgconn: Any, command: bytes, values: list[bytes | None], types: list[int],
    formats: list[int],
) -> Any:  # fmt: skip
    """``PQexecParams`` on an event loop: the statement sent, then its result awaited on
    the connection's socket (``PQconsumeInput`` each time it is readable) -- the loop
    psycopg's async cursor runs, without its per-statement Python (about a fifth of
    the client CPU). The caller must not reuse the connection if this is interrupted
    (a cancelled task): its statement may still be running."""
    pgconn.send_query_params(command, values, types, formats, 0)
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    while pgconn.flush():  # not all sent yet (a nonblocking connection's full buffer)
        await _ready(loop.add_writer, loop.remove_writer, loop, fd)
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        await _ready(loop.add_reader, loop.remove_reader, loop, fd)
    answer = None
    while (result := pgconn.get_result()) is not None:  # one statement: one result
        if answer is None:
            answer = result
    return answer


async def _ready(add: Any, remove: Any, loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Until ``fd`` is ready (``add``/``remove``: the loop's reader or writer calls)."""
    ready = loop.create_future()

    def wake() -> None:  # it may fire again before the waiter runs and removes it
        if not ready.done():
            ready.set_result(None)

    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


_STATEMENTS: dict[str, LibpqStatement] = {}
"""Numbered statements by their SQL: the plain statements of a handful of plans."""


def numbered(sql: str) -> LibpqStatement:
    """``sql`` numbered for libpq, worked out once per statement."""
    statement = _STATEMENTS.get(sql)
    if statement is None:
        statement = _STATEMENTS[sql] = LibpqStatement(sql)
    return statement


_MISSING = b"26000"
"""SQLSTATE invalid_sql_statement_name: a name the server no longer has (someone ran
``DEALLOCATE ALL`` or ``DISCARD ALL`` on the connection)."""
_SQLSTATE = ord("C")
"""libpq's SQLSTATE diagnostic field (``PG_DIAG_SQLSTATE``)."""


class PreparedNames:
    """One connection's server-side prepared statements, where the opt-in asks for them
    (``prepare_threshold`` set: direct connections only; see ``EngineSettings``).

    Each plain statement is prepared under a name of statestore's own on its first run
    on the connection (``statestore_0, statestore_1, ...``: never psycopg's ``_pg3_``
    names, whose statements psycopg manages on the same connection), then run with
    ``PQexecPrepared``: the server plans it once, and the client sends no SQL text.
    """

    __slots__ = ("_names", "_numbers")

    def __init__(self) -> None:
        self._names: dict[bytes, bytes] = {}
        self._numbers = itertools.count()  # never reused: a forgotten name may be alone

    def run(
        self, pgconn: Any, statement: LibpqStatement, values: list[bytes | None],
        types: list[int], formats: list[int],
    ) -> Any:  # fmt: skip
        """The statement's result (a failed one as libpq answers it: the caller raises).
        A name the server forgot (one ``DEALLOCATE``, or all of them) is prepared again,
        once, under a number not used before on the connection: another name may still
        stand."""
        for attempt in range(2):
            name = self._names.get(statement.command)
            if name is None:
                name = b"statestore_%d" % next(self._numbers)
                prepared = pgconn.prepare(name, statement.command, types)
                if prepared.status != COMMAND_OK:
                    return prepared
                self._names[statement.command] = name
            answer = pgconn.exec_prepared(name, values, formats)
            if attempt or answer.error_field(_SQLSTATE) != _MISSING:
                return answer
            del self._names[statement.command]  # prepared again, under a new name
        raise AssertionError("unreachable")  # pragma: no cover
