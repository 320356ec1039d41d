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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect

__all__ = ["CompiledStatement", "compile_statement"]


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """SQL text for one dialect, and how to turn a parameter dict into DBAPI params."""

    sql: str
    positions: tuple[str, ...] | None  # parameter order for positional paramstyles
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """DBAPI parameters: processed (datetimes, binaries) and in the driver's style."""
        if self.processors:
            values = dict(values)
            for name, process in self.processors:
                if name in values:
                    values[name] = process(values[name])
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)


def compile_statement(
    statement: Executable, dialect: Dialect, column_keys: list[str] | None = None
) -> CompiledStatement:
    """Compile ``statement`` for ``dialect`` once (``column_keys``: an INSERT's columns)."""
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)  # type: ignore[attr-defined]
    if getattr(compiled, "escaped_bind_names", None):
        raise ValueError("bind names needing escapes are not supported on the fast path")
    # SQLAlchemy's per-statement bind processors: TypeDecorator.process_bind_param plus
    # the dialect's own conversion, exactly what Connection.execute would apply.
    processors = tuple(
        (name, process)
        for name, process in compiled._bind_processors.items()
        if process is not None
    )
    positions = tuple(compiled.positiontup) if dialect.positional else None
    return CompiledStatement(compiled.string, positions, processors)
