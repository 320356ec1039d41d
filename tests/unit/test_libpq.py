"""``metastore/libpq.py``: statements numbered for libpq, parameters in libpq's form.

The numbered statement must be the compiled one with each named parameter replaced by
its number (a name used twice is one parameter), and every parameter must reach libpq
in the form PostgreSQL reads as psycopg's would; anything else is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import make_url

from statestore.metastore import plans
from statestore.metastore.compiled import compile_statement
from statestore.metastore.libpq import LibpqStatement, encode
from statestore.metastore.statements import build_statements
from statestore.retention import utcnow
from statestore.scopes import AssetScope, TaskScope


def test_named_parameters_are_numbered_in_order_of_first_use() -> None:
    sql = "UPDATE t SET a = %(a)s::VARCHAR WHERE b = %(b)s AND (c IS NULL OR c >= %(a)s)"
    statement = LibpqStatement(sql)
    assert (
        statement.command == b"UPDATE t SET a = $1::VARCHAR WHERE b = $2 AND (c IS NULL OR c >= $1)"
    )
    assert statement.names == ("a", "b")
    assert statement.sql == sql
    values, types, formats = statement.parameters({"a": "x", "b": b"\x00\x01", "unused": 1})
    assert (values, types, formats) == ([b"x", b"\x00\x01"], [0, 17], [0, 1])


@pytest.mark.parametrize("sql", ["SELECT 1 WHERE a LIKE 'x%%'", "SELECT %s", "SELECT %(a)s, %s"])
def test_other_percent_signs_are_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="only named parameters"):
        LibpqStatement(sql)


@pytest.mark.parametrize("scope", [TaskScope("d", "r", "t", map_key="eu"), AssetScope(name="a")])
def test_update_statements_number_every_parameter(scope: TaskScope | AssetScope) -> None:
    """Both of ``update``'s replace statements: every compiled parameter is numbered."""
    statements = build_statements("postgresql")
    plan = plans.set_(statements, scope, "k", "1", None, utcnow(), if_version=3)
    dialect = make_url("postgresql+psycopg://u@h/db").get_dialect()()
    compiled = compile_statement(plan.statement, dialect, list(plan.params))
    statement = LibpqStatement(compiled.sql)
    assert set(statement.names) == set(compiled.parameters(plan.params))
    assert b"%" not in statement.command
    assert statement.command.count(b"$") >= len(statement.names)


def test_values_take_postgresqls_input_forms() -> None:
    stamp = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)
    assert encode(None) == (None, 0, 0)
    assert encode(b"\xff\x00") == (b"\xff\x00", 17, 1)
    assert encode('{"grüße":"✓"}') == ('{"grüße":"✓"}'.encode(), 0, 0)
    assert encode(2**63 - 1) == (b"9223372036854775807", 0, 0)
    assert encode(-5) == (b"-5", 0, 0)
    assert encode(stamp) == (b"2026-03-01T12:00:00.250000+00:00", 0, 0)
    assert encode(stamp.replace(microsecond=0)) == (b"2026-03-01T12:00:00+00:00", 0, 0)
    east = stamp.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert encode(east) == (b"2026-03-01T17:30:00.250000+05:30", 0, 0)  # the same instant


@pytest.mark.parametrize("value", [True, 1.5, datetime(2026, 3, 1), [1], {"a": 1}, bytearray(b"x")])
def test_anything_else_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="no libpq form"):
        encode(value)


class _FrozenDatetime(datetime):
    """As freezegun's ``FakeDatetime``: a subclass, not in the by-type table."""


class _Text(str):
    pass


def test_subclasses_take_their_base_types_form() -> None:
    stamp = _FrozenDatetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert encode(stamp) == (b"2026-03-01T12:00:00+00:00", 0, 0)
    assert encode(_Text("x")) == (b"x", 0, 0)
    with pytest.raises(TypeError, match="no libpq form"):
        encode(_FrozenDatetime(2026, 3, 1))  # naive, however it is made


def test_parameters_are_each_values_encoding_in_statement_order() -> None:
    statement = LibpqStatement("SELECT %(b)s, %(a)s, %(c)s, %(b)s, %(d)s, %(e)s")
    stamp = _FrozenDatetime(2026, 3, 1, tzinfo=timezone.utc)
    values = {"a": 7, "b": b"\x01", "c": None, "d": "t", "e": stamp, "unused": object()}
    data, types, formats = statement.parameters(values)
    expected = [encode(values[name]) for name in ("b", "a", "c", "d", "e")]
    assert data == [e[0] for e in expected]
    assert types == [e[1] for e in expected]
    assert formats == [e[2] for e in expected]
    with pytest.raises(TypeError, match="no libpq form"):
        statement.parameters({**values, "a": 1.5})


@pytest.mark.parametrize("text", ["\x00", "a\x00b", _Text("x\x00")])
def test_a_text_with_a_nul_is_refused_not_cut_short(text: str) -> None:
    # libpq reads a text parameter up to its first NUL: the cursor's way must run instead
    with pytest.raises(TypeError, match="NUL"):
        encode(text)
    with pytest.raises(TypeError, match="NUL"):
        LibpqStatement("SELECT %(t)s").parameters({"t": text})
