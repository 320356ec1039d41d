"""Every rule of TaskScope, AssetScope, keys and asset references (SPEC §1-2)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from typing import Any

import pytest

from statestore import AssetScope, TaskScope
from statestore.exceptions import InvalidKeyError, InvalidScopeError, InvalidTypeError
from statestore.scopes import check_key, to_asset_scope


def raises_exactly(error: type[Exception], call: Any, *args: Any, **kwargs: Any) -> Exception:
    """Call and return the exception, checking its class exactly (not a subclass)."""
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    assert type(info.value) is error, f"{type(info.value).__name__} is not {error.__name__}"
    return info.value


# -- TaskScope ------------------------------------------------------------------------------


def test_task_scope_defaults_equality_and_hash() -> None:
    scope = TaskScope("dag", "run", "task")
    assert scope.map_index == -1
    assert scope == TaskScope("dag", "run", "task", -1)
    assert scope == TaskScope(dag_id="dag", run_id="run", task_id="task", map_index=-1)
    assert hash(scope) == hash(TaskScope("dag", "run", "task", -1))
    assert scope != TaskScope("dag", "run", "task", 0)
    assert scope != TaskScope("Dag", "run", "task")
    assert len({scope, TaskScope("dag", "run", "task"), TaskScope("dag", "run", "t2")}) == 2
    assert {scope: 1}[TaskScope("dag", "run", "task")] == 1


def test_task_scope_is_frozen() -> None:
    scope = TaskScope("dag", "run", "task")
    with pytest.raises(FrozenInstanceError):
        scope.dag_id = "other"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        scope.map_index = 3  # type: ignore[misc]


@pytest.mark.parametrize("field", ["dag_id", "run_id", "task_id"])
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("", InvalidScopeError),
        ("x" * 251, InvalidScopeError),
        ("a\x00b", InvalidScopeError),
        ("\x00", InvalidScopeError),
        ("\ud800", InvalidScopeError),
        (None, InvalidTypeError),
        (42, InvalidTypeError),
        (b"dag", InvalidTypeError),
        (["dag"], InvalidTypeError),
    ],
)
def test_task_scope_rejects_bad_ids(field: str, bad: object, error: type[Exception]) -> None:
    fields: dict[str, object] = {"dag_id": "d", "run_id": "r", "task_id": "t"}
    fields[field] = bad
    exc = raises_exactly(error, TaskScope, **fields)
    assert field in str(exc)


@pytest.mark.parametrize("field", ["dag_id", "run_id", "task_id"])
def test_task_scope_id_length_boundary(field: str) -> None:
    fields: dict[str, Any] = {"dag_id": "d", "run_id": "r", "task_id": "t", field: "x" * 250}
    assert getattr(TaskScope(**fields), field) == "x" * 250
    fields[field] = "x" * 251
    raises_exactly(InvalidScopeError, TaskScope, **fields)


@pytest.mark.parametrize("value", [" ", "a b", "😀", "e\u0301", "dag/run", "x\ty"])
def test_task_scope_ids_are_kept_verbatim(value: str) -> None:
    scope = TaskScope(value, value, value)
    assert (scope.dag_id, scope.run_id, scope.task_id) == (value, value, value)


@pytest.mark.parametrize("index", [-1, 0, 1, 2**31 - 1])
def test_map_index_accepts(index: int) -> None:
    assert TaskScope("d", "r", "t", index).map_index == index


@pytest.mark.parametrize(
    ("index", "error"),
    [
        (-2, InvalidScopeError),
        (-(2**40), InvalidScopeError),
        (True, InvalidTypeError),
        (False, InvalidTypeError),
        (1.0, InvalidTypeError),
        ("1", InvalidTypeError),
        (None, InvalidTypeError),
    ],
)
def test_map_index_rejects(index: object, error: type[Exception]) -> None:
    exc = raises_exactly(error, TaskScope, "d", "r", "t", index)
    assert "map_index" in str(exc)


def test_scope_errors_are_builtin_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        TaskScope("", "r", "t")
    with pytest.raises(TypeError, match="must be a str"):
        TaskScope(1, "r", "t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between -1 and"):
        TaskScope("d", "r", "t", -2)


# -- AssetScope -----------------------------------------------------------------------------


def test_asset_scope_needs_a_field() -> None:
    exc = raises_exactly(InvalidScopeError, AssetScope)
    assert isinstance(exc, ValueError)
    assert "at least one" in str(exc)
    assert AssetScope(name="a").name == "a"
    assert AssetScope(uri="s3://x").uri == "s3://x"
    assert AssetScope(asset_id=3).asset_id == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": ""}, InvalidScopeError),
        ({"uri": ""}, InvalidScopeError),
        ({"name": "n" * 1501}, InvalidScopeError),
        ({"uri": "u" * 1501}, InvalidScopeError),
        ({"name": "a\x00"}, InvalidScopeError),
        ({"uri": "s3://a\x00"}, InvalidScopeError),
        ({"name": "\udc80"}, InvalidScopeError),
        ({"name": 5}, InvalidTypeError),
        ({"uri": b"s3://x"}, InvalidTypeError),
        ({"asset_id": "1"}, InvalidTypeError),
        ({"asset_id": 1.0}, InvalidTypeError),
        ({"asset_id": True}, InvalidTypeError),
    ],
)
def test_asset_scope_rejects(kwargs: dict[str, object], error: type[Exception]) -> None:
    raises_exactly(error, AssetScope, **kwargs)


def test_asset_scope_length_boundary() -> None:
    scope = AssetScope(name="n" * 1500, uri="u" * 1500)
    assert (scope.name, scope.uri) == ("n" * 1500, "u" * 1500)


def test_asset_scope_is_frozen_hashable_and_compared_by_fields() -> None:
    scope = AssetScope(name="a", uri="s3://a")
    with pytest.raises(FrozenInstanceError):
        scope.name = "b"  # type: ignore[misc]
    assert scope == AssetScope(name="a", uri="s3://a")
    assert hash(scope) == hash(AssetScope(name="a", uri="s3://a"))
    assert scope != AssetScope(name="a")  # equality is by fields; identity is matches()
    assert len({scope, AssetScope(name="a", uri="s3://a"), AssetScope(name="a")}) == 2


def test_task_and_asset_scopes_are_never_equal() -> None:
    assert TaskScope("a", "a", "a") != AssetScope(name="a")  # type: ignore[comparison-overlap]


def test_asset_matching() -> None:
    full = AssetScope(name="a", uri="s3://a")
    assert full.matches(AssetScope(name="a"))
    assert full.matches(AssetScope(uri="s3://a"))
    assert AssetScope(name="a").matches(full)
    assert not full.matches(AssetScope(name="b", uri="s3://b"))
    assert not full.matches(AssetScope(name="A"))
    assert not AssetScope(name="a").matches(AssetScope(uri="s3://a"))
    assert AssetScope(asset_id=1).matches(AssetScope(asset_id=1, name="x"))


# -- asset references -----------------------------------------------------------------------


@dataclass
class AirflowLikeAsset:
    """Shaped like Airflow's ``Asset``: name and uri attributes."""

    name: str
    uri: str


@dataclass
class UriOnly:
    uri: str


@dataclass
class Nameless:
    name: None = None
    uri: None = None


@dataclass
class BadName:
    name: int


def test_to_asset_scope_accepts_every_reference() -> None:
    assert to_asset_scope("orders") == AssetScope(name="orders")
    scope = AssetScope(uri="s3://x")
    assert to_asset_scope(scope) is scope
    assert to_asset_scope(AirflowLikeAsset("orders", "s3://b/o")) == AssetScope(
        name="orders", uri="s3://b/o"
    )
    assert to_asset_scope(UriOnly("s3://b/o")) == AssetScope(uri="s3://b/o")


@pytest.mark.parametrize("bad", [42, None, object(), b"orders", ["orders"], Nameless()])
def test_to_asset_scope_rejects_non_references(bad: object) -> None:
    exc = raises_exactly(InvalidTypeError, to_asset_scope, bad)
    assert ".name/.uri" in str(exc)


def test_to_asset_scope_validates_the_fields_it_reads() -> None:
    raises_exactly(InvalidScopeError, to_asset_scope, "")
    raises_exactly(InvalidScopeError, to_asset_scope, "n" * 1501)
    raises_exactly(InvalidTypeError, to_asset_scope, BadName(5))


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["k", "K", "k ", " ", "😀", "é", "e\u0301", "x" * 512, "a/b", "'; --", "\t"]
)
def test_check_key_accepts(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", InvalidKeyError),
        ("x" * 513, InvalidKeyError),
        ("a\x00b", InvalidKeyError),
        ("\x00", InvalidKeyError),
        ("\udcff", InvalidKeyError),
        (None, InvalidTypeError),
        (1, InvalidTypeError),
        (b"k", InvalidTypeError),
        (("k",), InvalidTypeError),
    ],
)
def test_check_key_rejects(key: object, error: type[Exception]) -> None:
    exc = raises_exactly(error, check_key, key)
    assert "key" in str(exc)


def test_check_key_counts_characters_not_bytes() -> None:
    check_key("😀" * 512)  # 2048 bytes as UTF-8, 512 characters
    raises_exactly(InvalidKeyError, check_key, "😀" * 513)


def test_check_key_accepts_str_subclasses_only_as_str() -> None:
    class Key(str):
        pass

    check_key(Key("k"))
    raises_exactly(InvalidKeyError, check_key, Key(""))
