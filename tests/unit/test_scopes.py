"""Every rule of TaskScope, AssetScope, keys and asset references (SPEC §1-2)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass

import pytest

from statestore import AssetScope, TaskScope
from statestore.exceptions import InvalidKeyError, InvalidScopeError, InvalidTypeError
from statestore.scopes import check_key, to_asset_scope


def test_task_scope_defaults_and_identity() -> None:
    scope = TaskScope("dag", "run", "task")
    assert scope.map_index == -1
    assert scope == TaskScope("dag", "run", "task", -1)
    assert hash(scope) == hash(TaskScope("dag", "run", "task", -1))
    assert scope != TaskScope("dag", "run", "task", 0)
    with pytest.raises(FrozenInstanceError):
        scope.dag_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("field", ["dag_id", "run_id", "task_id"])
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("", InvalidScopeError),
        ("x" * 251, InvalidScopeError),
        ("a\x00b", InvalidScopeError),
        ("\ud800", InvalidScopeError),
        (None, InvalidTypeError),
        (42, InvalidTypeError),
        (b"dag", InvalidTypeError),
    ],
)
def test_task_scope_rejects_bad_ids(field: str, bad: object, error: type[Exception]) -> None:
    fields: dict[str, object] = {"dag_id": "d", "run_id": "r", "task_id": "t"}
    fields[field] = bad
    with pytest.raises(error):
        TaskScope(**fields)  # type: ignore[arg-type]


def test_task_scope_id_length_boundary() -> None:
    assert TaskScope("d" * 250, "r" * 250, "t" * 250).dag_id == "d" * 250


@pytest.mark.parametrize("index", [-1, 0, 1, 2**31 - 1])
def test_map_index_accepts(index: int) -> None:
    assert TaskScope("d", "r", "t", index).map_index == index


@pytest.mark.parametrize(
    ("index", "error"),
    [
        (-2, InvalidScopeError),
        (True, InvalidTypeError),
        (1.0, InvalidTypeError),
        ("1", InvalidTypeError),
        (None, InvalidTypeError),
    ],
)
def test_map_index_rejects(index: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        TaskScope("d", "r", "t", index)  # type: ignore[arg-type]


def test_scope_errors_are_builtin_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        TaskScope("", "r", "t")
    with pytest.raises(TypeError, match="must be a str"):
        TaskScope(1, "r", "t")  # type: ignore[arg-type]


def test_asset_scope_needs_a_field() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AssetScope()
    assert AssetScope(name="a").name == "a"
    assert AssetScope(uri="s3://x").uri == "s3://x"
    assert AssetScope(asset_id=3).asset_id == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": ""}, InvalidScopeError),
        ({"name": "n" * 1501}, InvalidScopeError),
        ({"uri": "u" * 1501}, InvalidScopeError),
        ({"name": "a\x00"}, InvalidScopeError),
        ({"name": 5}, InvalidTypeError),
        ({"asset_id": "1"}, InvalidTypeError),
        ({"asset_id": True}, InvalidTypeError),
    ],
)
def test_asset_scope_rejects(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        AssetScope(**kwargs)  # type: ignore[arg-type]


def test_asset_scope_limits() -> None:
    assert AssetScope(name="n" * 1500, uri="u" * 1500).name == "n" * 1500


def test_asset_matching() -> None:
    full = AssetScope(name="a", uri="s3://a")
    assert full.matches(AssetScope(name="a"))
    assert full.matches(AssetScope(uri="s3://a"))
    assert not full.matches(AssetScope(name="b", uri="s3://b"))
    assert not AssetScope(name="a").matches(AssetScope(uri="s3://a"))


@dataclass
class AirflowLikeAsset:
    name: str
    uri: str


def test_to_asset_scope_accepts_references() -> None:
    assert to_asset_scope("orders") == AssetScope(name="orders")
    scope = AssetScope(uri="s3://x")
    assert to_asset_scope(scope) is scope
    assert to_asset_scope(AirflowLikeAsset("orders", "s3://b/o")) == AssetScope(
        name="orders", uri="s3://b/o"
    )
    with pytest.raises(InvalidTypeError):
        to_asset_scope(42)
    with pytest.raises(InvalidTypeError):
        to_asset_scope(object())


@pytest.mark.parametrize("key", ["k", "K", "k ", "😀", "é", "x" * 512, "a/b", "'; --"])
def test_check_key_accepts(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", InvalidKeyError),
        ("x" * 513, InvalidKeyError),
        ("a\x00b", InvalidKeyError),
        ("\udcff", InvalidKeyError),
        (None, InvalidTypeError),
        (1, InvalidTypeError),
        (b"k", InvalidTypeError),
        (("k",), InvalidTypeError),
    ],
)
def test_check_key_rejects(key: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_key(key)
