"""Values <-> JSON text: every rejection, the size limit, and exact round trips."""

from __future__ import annotations

import json
import math
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statestore import InMemoryStateBackend, StateStore, StateStoreConfig, TaskScope
from statestore.codec import MAX_NESTING_DEPTH, decode_value, encode_value
from statestore.exceptions import (
    InvalidValueError,
    UnserializableValueError,
    ValueTooLargeError,
)


def enc(value: Any, max_bytes: int = 0) -> str:
    return encode_value(value, max_bytes=max_bytes)


def test_none_at_top_level_is_value_error() -> None:
    with pytest.raises(InvalidValueError, match="delete"):
        enc(None)


def test_none_inside_containers_is_fine() -> None:
    assert decode_value(enc([None, {"a": None}])) == [None, {"a": None}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [0, 1, b"x"]}, "value['a'][2]: bytes is not JSON"),
        ({1, 2}, "value: set is not JSON"),
        ((1, 2), "value: tuple is not JSON"),
        ([datetime(2026, 1, 1)], "value[0]: datetime is not JSON"),
        ({"d": Decimal("1.5")}, "value['d']: Decimal is not JSON"),
        ({"o": object()}, "value['o']: object is not JSON"),
        ({1: "a"}, "value: dict key 1 is int"),
        ({"x": {None: 1}}, "value['x']: dict key None is NoneType"),
    ],
)
def test_non_json_types_are_type_errors_naming_the_path(value: Any, message: str) -> None:
    with pytest.raises(UnserializableValueError) as info:
        enc(value)
    assert isinstance(info.value, TypeError)
    assert message in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_value_errors(bad: float) -> None:
    for value in (bad, [1, bad], {"a": {"b": bad}}):
        with pytest.raises(InvalidValueError):
            enc(value)


def test_lone_surrogate_is_value_error() -> None:
    with pytest.raises(InvalidValueError, match="surrogate"):
        enc({"k": "a\ud800b"})


def test_nesting_limit_without_recursion_error() -> None:
    ok: Any = "leaf"
    for _ in range(MAX_NESTING_DEPTH - 1):
        ok = [ok]
    assert decode_value(enc(ok)) == ok
    deep: Any = "leaf"
    for _ in range(10_000):
        deep = {"a": deep}
    with pytest.raises(InvalidValueError, match="nested deeper"):
        enc(deep)


def test_huge_int_beyond_str_limit_is_value_error() -> None:
    with pytest.raises(InvalidValueError):
        enc(10**5000)


def test_size_limit_counts_utf8_bytes() -> None:
    text = "é" * 10  # 20 bytes as UTF-8, 22 with quotes
    assert enc(text, max_bytes=22)
    with pytest.raises(ValueTooLargeError) as info:
        enc(text, max_bytes=21)
    assert (info.value.size, info.value.limit) == (22, 21)
    assert isinstance(info.value, ValueError)
    assert "worker-side backend" in str(info.value)
    assert enc("x" * 1_000_000, max_bytes=0)  # 0 = unlimited


def test_encoding_is_compact_and_keeps_unicode() -> None:
    assert enc({"a": [1, 2], "b": "é😀"}) == '{"a":[1,2],"b":"é😀"}'


def test_big_ints_and_floats_keep_their_types() -> None:
    value = {"big": 2**200, "neg": -(2**70), "f": 1.0, "z": -0.0, "e": 1e-300}
    back = decode_value(enc(value))
    assert back == value
    assert type(back["big"]) is int
    assert type(back["f"]) is float
    assert math.copysign(1, back["z"]) == -1


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (1 vs 1.0 vs True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


text = st.text(st.characters(exclude_categories=["Cs"]))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
).filter(lambda v: v is not None)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_round_trips_through_the_codec(value: Any) -> None:
    text_form = enc(value)
    assert json.loads(text_form) == value or value != value  # sanity: it is JSON
    assert same(decode_value(text_form), value)


@settings(max_examples=150, deadline=None)
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
