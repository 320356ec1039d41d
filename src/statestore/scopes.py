"""Scopes: *whose* state a key belongs to.

A :class:`TaskScope` names one task instance (dag, run, task, map index); an
:class:`AssetScope` names one data asset. Both are frozen and hashable so they can key
dicts and caches, and both validate on construction so a backend never sees a bad one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TypeAlias

from statestore.exceptions import (
    InvalidKeyError,
    InvalidScopeError,
    InvalidTypeError,
    InvalidValueError,
)

__all__ = [
    "MAX_ASSET_REF_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_INTEGER_ID",
    "MAX_KEY_LENGTH",
    "AssetScope",
    "StateScope",
    "TaskScope",
    "check_key",
    "map_key_for",
    "to_asset_scope",
    "to_task_scope",
    "writer_name",
]

MAX_ID_LENGTH = 250
"""Longest dag, run or task id (matches the reference's column widths)."""

MAX_KEY_LENGTH = 512
"""Longest key, in characters."""

MAX_ASSET_REF_LENGTH = 1500
"""Longest asset name or uri, in characters."""

MAX_INTEGER_ID = 2**31 - 1
"""Largest map index or asset id: a 32-bit INTEGER column on every database."""


def _is_utf8(text: str) -> bool:
    # A lone surrogate ("\ud800") is a valid Python str but not storable text anywhere.
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(field: str, value: object, limit: int) -> None:
    if not isinstance(value, str):
        raise InvalidTypeError(f"{field} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidScopeError(f"{field} must not be empty")
    if len(value) > limit:
        raise InvalidScopeError(f"{field} is {len(value)} characters; the limit is {limit}")
    if "\x00" in value:
        raise InvalidScopeError(f"{field} must not contain NUL characters")
    if not _is_utf8(value):
        raise InvalidScopeError(f"{field} contains a lone surrogate; it is not valid UTF-8")


def check_key(key: object) -> None:
    """Reject a key that no backend may store: not a ``str``, empty, > 512 chars, NUL.

    Called by every accessor method before any I/O, so a bad key never reaches storage.
    """
    # Fast path first: this runs on every get/set/delete.
    if type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH and "\x00" not in key and _is_utf8(key):
        return
    if not isinstance(key, str):
        raise InvalidTypeError(f"key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"key is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    if "\x00" in key:
        raise InvalidKeyError("key must not contain NUL characters")
    if not _is_utf8(key):
        raise InvalidKeyError("key contains a lone surrogate; it is not valid UTF-8")


@dataclass(frozen=True, slots=True, init=False)
class TaskScope:
    """One task instance: the unit that task state belongs to.

    ``map_index`` is ``-1`` for an unmapped task and the position (``>= 0``) of a
    mapped task instance; ``clear(all_map_indices=True)`` spans every instance.

    ``map_key``, when given, identifies a mapped instance instead of its position: a
    stable string derived from the instance's input (see :func:`map_key_for`), so that
    re-expanding the task over a reordered input leaves each item with its own state.
    ``map_index`` is then only recorded, not part of the identity.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    map_key: str | None = None

    def __init__(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1,
        map_key: str | None = None,
    ) -> None:  # fmt: skip
        # By hand, not the dataclass's: scopes are often built per call
        # (store.task_state(TaskScope(...)).get(k)), and its frozen __init__ costs more
        # than a get on the in-memory backend. The slots are set through their
        # descriptors (what object.__setattr__ does, minus the lookup), then validated.
        _SET_DAG_ID(self, dag_id)
        _SET_RUN_ID(self, run_id)
        _SET_TASK_ID(self, task_id)
        _SET_MAP_INDEX(self, map_index)
        _SET_MAP_KEY(self, map_key)
        # The common case first: three short ASCII ids and a plain index, no map key.
        if (
            map_key is None and type(map_index) is int and -1 <= map_index <= MAX_INTEGER_ID
            and type(dag_id) is str and type(run_id) is str and type(task_id) is str
            and 0 < len(dag_id) <= MAX_ID_LENGTH and 0 < len(run_id) <= MAX_ID_LENGTH
            and 0 < len(task_id) <= MAX_ID_LENGTH
        ):  # fmt: skip
            joined = dag_id + run_id + task_id
            if joined.isascii() and "\x00" not in joined:
                return
        self.__post_init__()

    def __post_init__(self) -> None:
        _check_text("dag_id", self.dag_id, MAX_ID_LENGTH)
        _check_text("run_id", self.run_id, MAX_ID_LENGTH)
        _check_text("task_id", self.task_id, MAX_ID_LENGTH)
        # bool is an int subclass; True as a map index is always a mistake.
        if not isinstance(self.map_index, int) or isinstance(self.map_index, bool):
            raise InvalidTypeError(f"map_index must be an int, not {type(self.map_index).__name__}")
        if not -1 <= self.map_index <= MAX_INTEGER_ID:
            raise InvalidScopeError(
                f"map_index must be between -1 and {MAX_INTEGER_ID}, not {self.map_index}"
            )
        if self.map_key is not None:
            _check_text("map_key", self.map_key, MAX_ID_LENGTH)

    @property
    def instance(self) -> str:
        """What identifies this instance within its task: the map key, else the index.

        ``"key:<map_key>"`` or the index as text -- never equal to each other, since an
        index is digits. Two scopes with the same instance share their task state.
        """
        return str(self.map_index) if self.map_key is None else f"key:{self.map_key}"

    def describe(self) -> str:
        """A short human-readable form for messages and logs."""
        if self.map_key is not None:
            suffix = f"[key={self.map_key}]"
        else:
            suffix = "" if self.map_index == -1 else f"[{self.map_index}]"
        return f"task {self.dag_id}/{self.run_id}/{self.task_id}{suffix}"


_SET_DAG_ID, _SET_RUN_ID, _SET_TASK_ID, _SET_MAP_INDEX, _SET_MAP_KEY = (
    TaskScope.__dict__[name].__set__  # the slot descriptors
    for name in ("dag_id", "run_id", "task_id", "map_index", "map_key")
)


def map_key_for(item: object) -> str:
    """A stable ``map_key`` for a mapped instance, derived from its JSON-able input.

    The same input gives the same key in every process and release (SHA-256 of the
    input's canonical JSON: sorted keys, no spaces); a different input, a different key.
    """
    try:
        text = json.dumps(
            item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"map_key_for needs a JSON-able input: {exc}") from None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AssetScope:
    """One data asset: the unit that asset state belongs to.

    At least one of ``asset_id`` (a backend's own integer id), ``name`` or ``uri`` must be
    set. Backends identify an asset by ``name``; a scope with only a ``uri`` refers to the
    asset registered with that uri (or, if there is none, to the asset named by the uri).
    """

    asset_id: int | None = None
    name: str | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if self.asset_id is None and self.name is None and self.uri is None:
            raise InvalidScopeError("AssetScope needs at least one of asset_id, name or uri")
        if self.asset_id is not None and (
            not isinstance(self.asset_id, int) or isinstance(self.asset_id, bool)
        ):
            raise InvalidTypeError(f"asset_id must be an int, not {type(self.asset_id).__name__}")
        if self.asset_id is not None and not 0 <= self.asset_id <= MAX_INTEGER_ID:
            raise InvalidScopeError(
                f"asset_id must be between 0 and {MAX_INTEGER_ID}, not {self.asset_id}"
            )
        if self.name is not None:
            _check_text("asset name", self.name, MAX_ASSET_REF_LENGTH)
        if self.uri is not None:
            _check_text("asset uri", self.uri, MAX_ASSET_REF_LENGTH)

    def describe(self) -> str:
        """A short human-readable form for messages and logs."""
        if self.name is not None:
            return f"asset {self.name!r}"
        if self.uri is not None:
            return f"asset with uri {self.uri!r}"
        return f"asset #{self.asset_id}"

    def matches(self, other: AssetScope) -> bool:
        """True if both scopes refer to the same asset by any field they share."""
        return (
            (self.name is not None and self.name == other.name)
            or (self.uri is not None and self.uri == other.uri)
            or (self.asset_id is not None and self.asset_id == other.asset_id)
        )


StateScope: TypeAlias = TaskScope | AssetScope
"""Either kind of scope; backends dispatch on the type."""


def to_asset_scope(asset: object) -> AssetScope:
    """Turn any asset reference into an :class:`AssetScope`.

    Accepts an ``AssetScope``, a name ``str``, or any object with ``name`` and/or ``uri``
    attributes (so an Airflow ``Asset`` works without importing Airflow).
    """
    if isinstance(asset, AssetScope):
        return asset
    if isinstance(asset, str):
        return AssetScope(name=asset)
    name = getattr(asset, "name", None)
    uri = getattr(asset, "uri", None)
    if name is None and uri is None:
        raise InvalidTypeError(
            "an asset must be an AssetScope, a name str, or an object with .name/.uri, "
            f"not {type(asset).__name__}"
        )
    return AssetScope(name=name, uri=uri)


def to_task_scope(
    scope: object,
    run_id: object = None,
    task_id: object = None,
    map_index: object = -1,
    map_key: object = None,
) -> TaskScope:
    """The one convention of ``task_state(...)``, on the store and as a shortcut:
    either a ``TaskScope`` alone, or ``dag_id, run_id, task_id`` (``map_index``,
    ``map_key`` optional) to build one -- never both."""
    if isinstance(scope, TaskScope):
        if run_id is not None or task_id is not None or map_index != -1 or map_key is not None:
            raise InvalidTypeError(
                "task_state() takes a TaskScope or dag_id, run_id, task_id (with map_index "
                "or map_key), not both"
            )
        return scope
    if not isinstance(scope, str):
        raise InvalidTypeError(
            f"task_state() takes a TaskScope or a dag_id str, not {type(scope).__name__}"
        )
    if run_id is None or task_id is None:
        raise InvalidTypeError("task_state(dag_id, ...) also needs run_id and task_id")
    return TaskScope(scope, run_id, task_id, map_index, map_key)  # type: ignore[arg-type]


def writer_name(writer: object) -> str | None:
    """``updated_by`` from a name or the writing task instance (``None``: unknown)."""
    if writer is None:
        return None
    if isinstance(writer, TaskScope):
        return writer.describe()
    _check_text("updated_by", writer, MAX_ID_LENGTH)
    assert isinstance(writer, str)
    return writer
