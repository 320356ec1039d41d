"""Statements compiled once per dialect and executed straight on the DBAPI cursor.

SQLAlchemy's ``Connection.execute`` costs tens of microseconds per call (cache lookup,
parameter construction, result wrapping) — more than a SQLite get takes. The hot path
compiles each statement once, keeps SQLAlchemy's own bind processors (so values are
stored exactly as SQLAlchemy would store them: same datetime text on SQLite, same
types everywhere), and executes on a pooled DBAPI connection of an autocommit engine:
one statement, one round trip, a few microseconds of Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect

from statestore.exceptions import InvalidTypeError
from statestore.metastore.tables import task_state
from statestore.metastore.types import Digest, UTCDateTime

__all__ = [
    "CompiledStatement",
    "ItemRows",
    "compile_statement",
    "compiled_plan",
    "timestamp_processor",
]

_ZERO = timedelta(0)


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """SQL text for one dialect, and how to turn a parameter dict into DBAPI params."""

    sql: str
    positions: tuple[str, ...] | None  # parameter order for positional paramstyles
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    # The positional tuple in one C call (a generator over 13 names was ~1 µs a write).
    ordered: Callable[[dict[str, Any]], tuple[Any, ...]] | None = field(default=None, compare=False)

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """DBAPI parameters: processed (datetimes, binaries) and in the driver's style."""
        if self.processors:
            values = dict(values)
            for name, process in self.processors:
                if name in values:
                    values[name] = process(values[name])
        if self.ordered is None:
            return values
        return self.ordered(values)


def compile_statement(
    statement: Executable, dialect: Dialect, column_keys: list[str] | None = None
) -> CompiledStatement:
    """Compile ``statement`` for ``dialect`` once (``column_keys``: an INSERT's columns)."""
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)  # type: ignore[attr-defined]
    if getattr(compiled, "escaped_bind_names", None):
        raise ValueError("bind names needing escapes are not supported on the fast path")
    # SQLAlchemy's per-statement bind processors (TypeDecorator.process_bind_param plus
    # the dialect's own conversion), except for our two hot types, converted directly to
    # what those processors would produce: digests are plain bytes for every driver, and
    # UTC datetimes get one C-level isoformat instead of two Python layers.
    processors: list[tuple[str, Callable[[Any], Any]]] = []
    for name, process in compiled._bind_processors.items():
        bind_type = compiled.binds[name].type
        if isinstance(bind_type, Digest):
            continue
        if isinstance(bind_type, UTCDateTime):
            processors.append((name, _datetime_converter(dialect.name)))
        elif process is not None:
            processors.append((name, process))
    positions = tuple(compiled.positiontup) if dialect.positional else None
    return CompiledStatement(compiled.string, positions, tuple(processors), _ordered(positions))


def _ordered(
    positions: tuple[str, ...] | None,
) -> Callable[[dict[str, Any]], tuple[Any, ...]] | None:
    """``values -> tuple(values[name] for name in positions)``, as one C call."""
    if positions is None:
        return None
    if not positions:
        return lambda values: ()
    if len(positions) == 1:
        (name,) = positions
        return lambda values: (values[name],)
    return itemgetter(*positions)


def _datetime_converter(dialect_name: str) -> Callable[[Any], Any]:
    """Aware UTC datetime -> the driver's value, matching ``UTCDateTime`` exactly."""

    def to_utc(value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidTypeError("naive datetime given; statestore stores aware UTC only")
        return value if value.utcoffset() == _ZERO else value.astimezone(timezone.utc)

    if dialect_name == "postgresql":
        return lambda value: None if value is None else to_utc(value)
    if dialect_name == "sqlite":
        # SQLAlchemy's SQLite DATETIME text: "YYYY-MM-DD HH:MM:SS.ffffff" (microseconds
        # always), which is isoformat's first 26 characters for a UTC datetime.
        return lambda value: (
            None if value is None else to_utc(value).isoformat(" ", "microseconds")[:26]
        )
    return lambda value: None if value is None else to_utc(value).replace(tzinfo=None)


def timestamp_processor(dialect: Dialect) -> Callable[[Any], Any]:
    """Driver value -> aware UTC datetime, exactly as the ``UTCDateTime`` column reads."""
    column_type = task_state.c.updated_at.type
    process = column_type.dialect_impl(dialect).result_processor(dialect, None)
    if process is None:  # pragma: no cover - UTCDateTime always has one
        return lambda value: value
    return process


def compiled_plan(
    cache: dict[int, CompiledStatement],
    statement: Executable,
    params: dict[str, Any],
    dialect: Dialect,
) -> CompiledStatement:
    """``statement`` compiled for ``dialect``, once per cache (one per backend and side)."""
    compiled = cache.get(id(statement))
    if compiled is None:
        compiled = cache[id(statement)] = compile_statement(statement, dialect, list(params))
    return compiled


class ItemRows:
    """Raw driver rows of ``get_item`` -> the values SQLAlchemy's result processing
    would give (aware UTC datetimes), with one converter per dialect."""

    def __init__(self) -> None:
        self._converters: dict[str, Callable[[Any], Any]] = {}

    def item(self, row: tuple[Any, ...] | None, dialect: Dialect) -> Any:
        """``(value, version, updated_at, updated_by, expires_at)``, or ``None``."""
        if row is None:
            return None
        convert = self._converters.get(dialect.name)
        if convert is None:
            convert = self._converters[dialect.name] = timestamp_processor(dialect)
        value, version, updated_at, updated_by, expires_at = row
        return (value, int(version), convert(updated_at), updated_by, convert(expires_at))
