"""Values <-> JSON text: every rejection, the size limit, and exact round trips."""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statestore import InMemoryStateBackend, StateStore, StateStoreConfig, TaskScope
from statestore.codec import MAX_NESTING_DEPTH, decode_value, encode_value, utf8_size
from statestore.exceptions import (
    InvalidValueError,
    UnserializableValueError,
    ValueTooLargeError,
)


def enc(value: Any, max_bytes: int = 0) -> str:
    return encode_value(value, max_bytes=max_bytes)


def nested(depth: int, *, kind: str = "list") -> Any:
    """``depth`` containers around a leaf: depth 1 is ``["leaf"]``."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


# -- None -------------------------------------------------------------------------------------


def test_none_at_top_level_is_value_error() -> None:
    with pytest.raises(InvalidValueError, match="delete") as info:
        enc(None)
    assert type(info.value) is InvalidValueError
    assert isinstance(info.value, ValueError)


def test_none_inside_containers_is_fine() -> None:
    value = [None, {"a": None, "b": [None]}]
    assert enc(value) == '[null,{"a":null,"b":[null]}]'
    assert decode_value(enc(value)) == value


# -- non-JSON types ---------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"x", "value: bytes is not JSON"),
        ({"a": [0, 1, b"x"]}, "value['a'][2]: bytes is not JSON"),
        ({1, 2}, "value: set is not JSON"),
        ([frozenset()], "value[0]: frozenset is not JSON"),
        ((1, 2), "value: tuple is not JSON"),
        ({"t": [(1,)]}, "value['t'][0]: tuple is not JSON"),
        ([datetime(2026, 1, 1)], "value[0]: datetime is not JSON"),
        ({"d": date(2026, 1, 1)}, "value['d']: date is not JSON"),
        ({"d": Decimal("1.5")}, "value['d']: Decimal is not JSON"),
        ({"o": object()}, "value['o']: object is not JSON"),
        ({"c": Color.RED}, "value['c']: Color is not JSON"),
        ({"b": bytearray(b"x")}, "value['b']: bytearray is not JSON"),
        ({"x": {"y": [1, {"z": 1j}]}}, "value['x']['y'][1]['z']: complex is not JSON"),
        ({1: "a"}, "value: dict key 1 is int"),
        ({"x": {None: 1}}, "value['x']: dict key None is NoneType"),
        ({"x": {(1, 2): 1}}, "value['x']: dict key (1, 2) is tuple"),
        ({"x": {True: 1}}, "value['x']: dict key True is bool"),
        ({"k'q": b""}, """value["k'q"]: bytes is not JSON"""),
    ],
)
def test_non_json_types_are_type_errors_naming_the_path(value: Any, message: str) -> None:
    with pytest.raises(UnserializableValueError) as info:
        enc(value)
    assert type(info.value) is UnserializableValueError
    assert isinstance(info.value, TypeError)
    assert str(info.value).startswith(message)


def test_subclasses_of_json_types_are_stored_as_plain_json() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    value = {"level": Level.HIGH, "ordered": OrderedDict(b=1, a=2)}
    assert enc(value) == '{"level":3,"ordered":{"b":1,"a":2}}'


# -- NaN, infinity, surrogates ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("wrap", ["top", "list", "dict", "deep"])
def test_nan_and_infinity_are_value_errors(bad: float, wrap: str) -> None:
    value = {
        "top": bad,
        "list": [1, bad],
        "dict": {"a": bad},
        "deep": {"a": [{"b": [0, bad]}]},
    }[wrap]
    with pytest.raises(InvalidValueError) as info:
        enc(value)
    assert type(info.value) is InvalidValueError
    assert "not allowed in JSON" in str(info.value)


@pytest.mark.parametrize("value", ["\ud800", {"k": "a\ud800b"}, ["ok", "\udfff"]])
def test_lone_surrogate_is_value_error(value: Any) -> None:
    with pytest.raises(InvalidValueError, match="surrogate"):
        enc(value)


@pytest.mark.parametrize("max_bytes", [0, 100])
def test_lone_surrogate_in_a_dict_key_is_value_error(max_bytes: int) -> None:
    with pytest.raises(InvalidValueError, match="surrogate"):
        enc({"ok": {"\ud800": 1}}, max_bytes=max_bytes)


# -- nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_nesting_limit_is_exact(kind: str) -> None:
    ok = nested(MAX_NESTING_DEPTH, kind=kind)
    assert decode_value(enc(ok)) == ok
    with pytest.raises(InvalidValueError, match="nested deeper"):
        enc(nested(MAX_NESTING_DEPTH + 1, kind=kind))


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_very_deep_nesting_is_value_error_not_recursion_error(kind: str) -> None:
    with pytest.raises(InvalidValueError, match="nested deeper"):
        enc(nested(10_000, kind=kind))


def test_huge_int_beyond_the_str_digit_limit_is_value_error() -> None:
    with pytest.raises(InvalidValueError):
        enc(10**5000)


# -- size -------------------------------------------------------------------------------------


def test_size_limit_counts_utf8_bytes() -> None:
    text = "é" * 10  # 10 characters, 20 bytes as UTF-8, 22 with the quotes
    assert utf8_size(enc(text)) == 22
    assert enc(text, max_bytes=22) == '"' + text + '"'  # exactly at the limit
    with pytest.raises(ValueTooLargeError) as info:
        enc(text, max_bytes=21)  # one byte over
    error = info.value
    assert (error.size, error.limit) == (22, 21)
    assert isinstance(error, ValueError)
    assert isinstance(error, InvalidValueError)
    assert "22" in str(error)
    assert "21" in str(error)
    assert "worker-side backend" in str(error)


def test_size_limit_counts_four_byte_characters() -> None:
    assert enc(["😀"], max_bytes=8) == '["😀"]'  # 2 + 2 + 4 bytes
    with pytest.raises(ValueTooLargeError):
        enc(["😀"], max_bytes=7)


def test_zero_means_unlimited() -> None:
    assert len(enc("x" * 1_000_000, max_bytes=0)) == 1_000_002


# -- encoding ---------------------------------------------------------------------------------


def test_encoding_is_compact_and_keeps_unicode() -> None:
    assert enc({"a": [1, 2], "b": "é😀"}) == '{"a":[1,2],"b":"é😀"}'
    assert enc({"b": 1, "a": 2}) == '{"b":1,"a":2}'  # insertion order kept
    assert enc("a\x00b") == '"a\\u0000b"'  # NUL inside a value is fine, escaped


def test_big_ints_and_floats_keep_their_types() -> None:
    value = {"big": 2**200, "neg": -(2**70), "f": 1.0, "z": -0.0, "e": 1e-300, "t": True}
    back = decode_value(enc(value))
    assert back == value
    assert type(back["big"]) is int
    assert type(back["f"]) is float
    assert type(back["t"]) is bool
    assert math.copysign(1, back["z"]) == -1


# -- property: any JSON value round-trips exactly ---------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (1 vs 1.0 vs True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


text = st.text(st.characters(exclude_categories=["Cs"]))  # no lone surrogates
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_any = st.recursive(
    st.none() | scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)
json_values = st.one_of(  # None only inside containers, never at the top
    scalars,
    st.lists(json_any, max_size=5),
    st.dictionaries(text, json_any, max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_round_trips_through_the_codec(value: Any) -> None:
    assert same(decode_value(enc(value)), value)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_round_trips_through_the_accessors(value: Any) -> None:
    store = StateStore(
        backend=InMemoryStateBackend(), config=StateStoreConfig(state_store={"max_value_bytes": 0})
    )
    task = store.task_state(TaskScope("d", "r", "t"))
    task.set("k", value)
    assert same(task.get("k"), value)
    asset = store.asset_state("a")
    asset.set("k", value)
    assert same(asset.get("k"), value)
