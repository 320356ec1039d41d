"""Hostile input through the public accessors, on SQLite, PostgreSQL and MariaDB (issue 8).

Every input is either rejected with a typed ``StateStoreError`` *before any I/O* (the
backend is booby-trapped while it is tried, and a checksum of every statestore table
must not move), or stored and read back exactly: same type, same repr, same code points,
in the API and in the raw columns, with no two distinct keys merged by a collation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple, NoReturn

import pytest
from sqlalchemy import MetaData, Table, create_engine, inspect, select
from sqlalchemy.engine import URL

from statestore import NEVER_EXPIRE, AssetScope, StateStore, StateStoreError, TaskScope
from statestore import exceptions as errors
from statestore.accessors import AssetStateAccessor, TaskStateAccessor
from statestore.backends.worker import escape_value

Row = tuple[tuple[str, Any], ...]
Snapshot = dict[str, list[Row]]
Reject = tuple[str, Callable[[StateStore], object], type[StateStoreError]]

HOSTILE_TASK = TaskScope("hostile_dag", "hostile_run", "hostile_task")
SEED_ASSET = "seed_asset"
TABLES = {"statestore_task_state", "statestore_asset", "statestore_asset_state"}


def _deep(depth: int, kind: type[list[Any]] | type[dict[str, Any]] = list) -> Any:
    value: Any = kind()
    for _ in range(depth - 1):  # iterative: far beyond the recursion limit is fine
        value = [value] if kind is list else {"k": value}
    return value


SQL_INJECTION = [
    "'; DROP TABLE statestore_task_state; --", '" OR 1=1 --', "' OR '1'='1", "\\", "/*",
    "\\'; DELETE FROM statestore_asset; --", "`; DROP DATABASE mysql; --", "%s", "%(x)s",
    "' UNION SELECT value FROM statestore_task_state --", "?", ":name", "$1", "%", "_",
]  # fmt: skip
FORMAT_STRINGS = [
    "{0}", "{}", "{0!r:>{1}}", "{__class__.__mro__}", "%n%n%x", "%%", "${HOME}", "{{", "}}",
    "\\u0000", "\\x00", "\\N{BULLET}", '{"a": 1}',
]  # fmt: skip
UNICODE_AND_CONTROL = [
    "ключ", "鍵", "مفتاح", "🔑", "👨\u200d👩\u200d👧", "e\u0301", "\u00e9", "Key", "key", "k", "k ",
    " k", "ß", "ss", "\u200b", "\u2028\u2029", "\ufeff", "\uffff", "\U0010ffff", "\u202eevil",
    "\t\n\r", "\x85", "\x01\x1b[31m\x7f", "\x1f",
]  # fmt: skip


class Write(NamedTuple):
    scope: TaskScope | str  # a task instance, or an asset name
    key: str
    value: Any
    clear: bool = False  # remove with clear() instead of delete()


def _accessor(store: StateStore, scope: TaskScope | str) -> TaskStateAccessor | AssetStateAccessor:
    return store.task_state(scope) if isinstance(scope, TaskScope) else store.asset_state(scope)


def _identity(write: Write) -> tuple[object, ...]:
    if isinstance(scope := write.scope, TaskScope):
        return (scope.dag_id, scope.run_id, scope.task_id, scope.map_index, write.key)
    return (scope, write.key)


def _exact(got: object, expected: object) -> bool:
    """Equal, and of the same type and repr: -0.0 is not 0.0, 1.0 is not 1 or True."""
    return type(got) is type(expected) and repr(got) == repr(expected)


class Db:
    """The store under test plus a raw view of every statestore table."""

    def __init__(self, url: URL, store: StateStore) -> None:
        self.store = store
        self.engine = create_engine(url)
        names = [n for n in inspect(self.engine).get_table_names() if n.startswith("statestore_")]
        assert set(names) >= TABLES
        metadata = MetaData()
        self.tables = [Table(name, metadata, autoload_with=self.engine) for name in sorted(names)]

    def snapshot(self) -> Snapshot:
        """Every row of every table, ordered by primary key, as (column, value) pairs."""
        snapshot: Snapshot = {}
        with self.engine.connect() as conn:
            for table in self.tables:
                order = list(table.primary_key.columns) or list(table.c)
                rows = conn.execute(select(table).order_by(*order))
                snapshot[table.name] = [tuple(zip(row._fields, row, strict=True)) for row in rows]
        return snapshot

    def checksum(self) -> str:
        return hashlib.sha256(repr(sorted(self.snapshot().items())).encode()).hexdigest()


def _seed(store: StateStore) -> None:
    for index in (-1, 0, 1):
        scope = TaskScope("seed_dag", "seed_run", "seed_task", index)
        store.task_state(scope).set(f"k{index}", {"n": index, "s": "seed"})
    store.task_state(HOSTILE_TASK).set("seed", [1, 2, 3], retention=NEVER_EXPIRE)
    store.asset_state(SEED_ASSET).set("watermark", 42)
    store.asset_state("seed_asset_2").set("w", "x")


@pytest.fixture
def db(migrated_url: URL) -> Iterator[Db]:
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        _seed(store)
        database = Db(migrated_url, store)
        yield database
        database.engine.dispose()


@contextmanager
def _no_io(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any backend call in this block fails the test: rejection must come first."""

    def trap(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("rejected input reached the backend")

    with monkeypatch.context() as patch:
        for name in ("get", "set", "delete", "clear", "aget", "aset", "adelete", "aclear"):
            patch.setattr(store.backend, name, trap)
        with pytest.raises(AssertionError, match="reached the backend"):
            store.task_state(HOSTILE_TASK).get("valid")  # the trap is armed
        yield


def _new_rows(before: Snapshot, after: Snapshot, table: str) -> list[dict[str, Any]]:
    old = set(before[table])
    assert old <= set(after[table]), f"{table}: a pre-existing row changed or vanished"
    return [dict(row) for row in after[table] if row not in old]


def _check_rows(before: Snapshot, after: Snapshot, writes: list[Write]) -> None:
    """The rows added are exactly the writes: ids and keys code point for code point."""
    names = {row["id"]: row["name"] for row in map(dict, after["statestore_asset"])}
    stored = {
        (r["dag_id"], r["run_id"], r["task_id"], r["map_index"], r["key"]): r["value"]
        for r in _new_rows(before, after, "statestore_task_state")
    }
    stored |= {
        (names[r["asset_id"]], r["key"]): r["value"]
        for r in _new_rows(before, after, "statestore_asset_state")
    }
    expected = {_identity(w): w.value for w in writes}
    assert len(expected) == len(writes), "test bug: duplicate writes"
    assert stored.keys() == expected.keys()  # str equality: the exact code points
    for identity, raw in stored.items():
        assert _exact(json.loads(raw), escape_value(expected[identity])), identity


def _round_trip(db: Db, writes: list[Write]) -> None:
    before = db.snapshot()
    for write in writes:
        _accessor(db.store, write.scope).set(write.key, write.value)
    for write in writes:
        got = _accessor(db.store, write.scope).get(write.key)
        assert _exact(got, write.value), _identity(write)
    _check_rows(before, db.snapshot(), writes)
    new_assets = {w.scope for w in writes if isinstance(w.scope, str) and w.scope != SEED_ASSET}
    for write in writes:
        accessor = _accessor(db.store, write.scope)
        accessor.clear() if write.clear else accessor.delete(write.key)
        assert accessor.get(write.key, "gone") == "gone"
    final = db.snapshot()
    for table in final:  # back to the seed, except the asset registry ...
        if table != "statestore_asset":
            assert final[table] == before[table], table
    # ... which keeps exactly the assets these writes registered, and nothing else.
    added = {dict(row)["name"] for row in _new_rows(before, final, "statestore_asset")}
    assert added == new_assets


def _string_writes(strings: list[str]) -> list[Write]:
    writes: list[Write] = []
    for index, text in enumerate(strings):
        writes.append(Write(HOSTILE_TASK, text, text))  # a key, with itself as value
        writes.append(Write(SEED_ASSET, text, {text: [text, index]}))  # and as a dict key
        writes.append(Write(TaskScope(text, text, text, index), "k", text, clear=True))
        writes.append(Write(text, "k", text, clear=True))  # an asset name: registers it
    return writes


ACCEPTED_WRITES = [  # at the documented limits: key 512, ids 250, asset 1500, 65535 bytes
    Write(HOSTILE_TASK, "🔑" * 512, "512 four-byte characters"),
    Write(HOSTILE_TASK, "'" * 512, "512 quotes"),
    Write(TaskScope("🔑" * 250, "'" * 250, "\\" * 250, 2**31 - 1), "k", 1, clear=True),
    Write("🔑" * 1500, "k", "a 1500-character asset name", clear=True),
    Write("'; DROP TABLE statestore_asset; --" * 44, "k", 1, clear=True),  # 1496 chars
    Write(HOSTILE_TASK, "ascii", "x" * 65533),  # 65535 bytes of JSON: the limit
    Write(HOSTILE_TASK, "utf8", "🔑" * 16383 + "a"),  # 4-byte characters, 65535 bytes too
]
ACCEPTED_VALUES: list[Any] = [10**400, -(10**400), 2**63, -(2**63) - 1, 2**63 - 1, -(2**63)]
ACCEPTED_VALUES += [2**64, 10**4299, -0.0, 5e-324, 1.7976931348623157e308, 1e-310, 0.1]
ACCEPTED_VALUES += [[0.0, -0.0, 1.0, 1, True], "a\x00b", "\x00", {"k\x00": "\x00"}, ["\x1b\x7f"]]
ACCEPTED_VALUES += [{"'; DROP TABLE x; --": ["%s", "?", ":name", "{0}"]}, "\\'\\\"%"]
ACCEPTED_VALUES += [_deep(200), _deep(200, dict), [False, 0, "", [], {}]]
ACCEPTED_VALUES += [{"$statestore": "ref", "ref": "s3://b/x"}, {"$statestore": None}]
ACCEPTED_VALUES += [{"$statestore": "data", "value": 1}, {"b": 1, "a": 2, "": 3}]
ACCEPTED_WRITES += [
    Write(scope, f"v{i}", value)
    for i, value in enumerate(ACCEPTED_VALUES)
    for scope in (HOSTILE_TASK, SEED_ASSET)
]


@pytest.mark.parametrize(
    "strings",
    [
        pytest.param(SQL_INJECTION, id="sql-injection"),
        pytest.param(FORMAT_STRINGS, id="format-strings"),
        pytest.param(UNICODE_AND_CONTROL, id="unicode-and-control"),
    ],
)
def test_hostile_strings_are_stored_exactly_everywhere(db: Db, strings: list[str]) -> None:
    assert len(set(strings)) == len(strings)
    _round_trip(db, _string_writes(strings))


def test_extreme_values_and_maximum_sizes_are_stored_exactly(db: Db) -> None:
    _round_trip(db, ACCEPTED_WRITES)


def _task(store: StateStore) -> TaskStateAccessor:
    return store.task_state(HOSTILE_TASK)


def _asset(store: StateStore) -> AssetStateAccessor:
    return store.asset_state(SEED_ASSET)


def _key_cases(label: str, key: Any, error: type[StateStoreError]) -> list[Reject]:
    return [
        (f"key {label}/task.get", lambda s: _task(s).get(key), error),
        (f"key {label}/task.set", lambda s: _task(s).set(key, 1), error),
        (f"key {label}/task.delete", lambda s: _task(s).delete(key), error),
        (f"key {label}/asset.get", lambda s: _asset(s).get(key), error),
        (f"key {label}/asset.set", lambda s: _asset(s).set(key, 1), error),
        (f"key {label}/asset.delete", lambda s: _asset(s).delete(key), error),
    ]


def _value_cases(label: str, value: Any, error: type[StateStoreError]) -> list[Reject]:
    return [
        (f"value {label}/task", lambda s: _task(s).set("seed", value), error),
        (f"value {label}/asset", lambda s: _asset(s).set("watermark", value), error),
    ]


def _id_cases(label: str, bad: Any, error: type[StateStoreError]) -> list[Reject]:
    return [
        (f"{label}/dag_id", lambda s: s.task_state(TaskScope(bad, "r", "t")).set("k", 1), error),
        (f"{label}/run_id", lambda s: s.task_state(TaskScope("d", bad, "t")).get("k"), error),
        (f"{label}/task_id", lambda s: s.task_state(TaskScope("d", "r", bad)).clear(), error),
        (f"{label}/asset", lambda s: s.asset_state(bad).set("k", 1), error),
        (f"{label}/uri", lambda s: s.asset_state(AssetScope(uri=bad)).get("k"), error),
    ]


def _retention_case(label: str, retention: Any, error: type[StateStoreError]) -> Reject:
    return (f"retention {label}", lambda s: _task(s).set("k", 1, retention=retention), error)


KEY, TYPE, VALUE = errors.InvalidKeyError, errors.InvalidTypeError, errors.InvalidValueError
SCOPE, RETENTION = errors.InvalidScopeError, errors.InvalidRetentionError
UNSERIALIZABLE, TOO_LARGE = errors.UnserializableValueError, errors.ValueTooLargeError
INJECTED = "'; DROP TABLE statestore_task_state; --"
BAD_KEYS: list[tuple[str, Any, type[StateStoreError]]] = [
    ("empty", "", KEY), ("513-chars", "k" * 513, KEY), ("513-emoji", "🔑" * 513, KEY),
    ("546-char-injection", INJECTED * 14, KEY), ("nul", "\x00", KEY),
    ("nul-injection", "a\x00" + INJECTED, KEY), ("lone-surrogate", "\ud800", KEY),
    ("surrogate-halves", "\ud83d\ude00", KEY), ("trailing-surrogate", "ok\udfff", KEY),
    ("bytes", INJECTED.encode(), TYPE), ("int", 1, TYPE), ("float", 1.5, TYPE),
    ("bool", True, TYPE), ("tuple", ("a", "b"), TYPE), ("list", ["a"], TYPE), ("none", None, TYPE),
]  # fmt: skip
BAD_VALUES: list[tuple[str, Any, type[StateStoreError]]] = [
    ("none", None, VALUE), ("nan", float("nan"), VALUE), ("inf", float("inf"), VALUE),
    ("-inf", float("-inf"), VALUE), ("nested-nan", [1, {"a": [float("nan")]}], VALUE),
    ("lone-surrogate", "\ud800", VALUE), ("nested-surrogate", ["ok", {"k": "\udfff"}], VALUE),
    ("surrogate-dict-key", {"\ud800": 1}, VALUE), ("list-201-deep", _deep(201), VALUE),
    ("list-100k-deep", _deep(100_000), VALUE),
    ("dict-100k-deep", _deep(100_000, dict), VALUE),
    ("int-4301-digits", 10**4300, VALUE), ("ascii-65536-bytes", "x" * 65534, TOO_LARGE),
    ("utf8-65538-bytes", "🔑" * 16384, TOO_LARGE), ("bytes", b"\x00'; DROP", UNSERIALIZABLE),
    ("bytearray", bytearray(b"x"), UNSERIALIZABLE), ("set", {1, 2}, UNSERIALIZABLE),
    ("frozenset", frozenset("a"), UNSERIALIZABLE), ("tuple", (1, 2), UNSERIALIZABLE),
    ("nested-tuple", [1, {"a": (2,)}], UNSERIALIZABLE), ("object", object(), UNSERIALIZABLE),
    ("complex", 1j, UNSERIALIZABLE), ("decimal", Decimal("1.1"), UNSERIALIZABLE),
    ("timedelta", timedelta(1), UNSERIALIZABLE), ("int-dict-key", {1: "a"}, UNSERIALIZABLE),
    ("none-dict-key", {None: 1}, UNSERIALIZABLE), ("float-dict-key", {1.5: 1}, UNSERIALIZABLE),
    ("bool-dict-key", {True: 1}, UNSERIALIZABLE), ("tuple-dict-key", {("a",): 1}, UNSERIALIZABLE),
    ("bytes-dict-key", {b"k": 1}, UNSERIALIZABLE),
    ("nested-int-key", [{"ok": {2: "x"}}], UNSERIALIZABLE),
]  # fmt: skip
BAD_IDS: list[tuple[str, Any, type[StateStoreError]]] = [
    ("empty", "", SCOPE), ("nul", "\x00", SCOPE), ("nul-injection", INJECTED + "\x00", SCOPE),
    ("lone-surrogate", "\ud800", SCOPE), ("1501-emoji", "🔑" * 1501, SCOPE),  # over every limit
    ("bytes", b"dag", TYPE), ("int", 7, TYPE),
]  # fmt: skip
BAD_SCOPES: list[Reject] = [
    ("dag_id-251", lambda s: TaskScope("d" * 251, "r", "t"), SCOPE),
    ("map_index-bool", lambda s: TaskScope("d", "r", "t", True), TYPE),
    ("map_index-str", lambda s: TaskScope("d", "r", "t", "0"), TYPE),  # type: ignore[arg-type]
    ("map_index-float", lambda s: TaskScope("d", "r", "t", 1.0), TYPE),  # type: ignore[arg-type]
    ("map_index--2", lambda s: TaskScope("d", "r", "t", -2), SCOPE),
    ("map_index--2**63-1", lambda s: TaskScope("d", "r", "t", -(2**63) - 1), SCOPE),
    ("asset-empty-scope", lambda s: s.asset_state(AssetScope()), SCOPE),
    ("asset_id-bool", lambda s: s.asset_state(AssetScope(asset_id=True)), TYPE),
    ("asset_id-str", lambda s: AssetScope(asset_id="1"), TYPE),  # type: ignore[arg-type]
    ("asset-none", lambda s: s.asset_state(None), TYPE),
    ("task_state-of-asset", lambda s: s.task_state(AssetScope(name="a")), TYPE),  # type: ignore[arg-type]
    _retention_case("zero", timedelta(0), RETENTION),
    _retention_case("negative", timedelta(seconds=-1), RETENTION),
    _retention_case("past-9999", NEVER_EXPIRE - timedelta(days=1), RETENTION),
    _retention_case("int", 5, TYPE),
    _retention_case("str", "1d", TYPE),
]
REJECTIONS: dict[str, list[Reject]] = {
    "keys": [case for args in BAD_KEYS for case in _key_cases(*args)],
    "values": [case for args in BAD_VALUES for case in _value_cases(*args)],
    "scopes-and-retention": [c for args in BAD_IDS for c in _id_cases(*args)] + BAD_SCOPES,
}


@pytest.mark.parametrize("group", list(REJECTIONS))
def test_rejected_before_any_io_and_nothing_changes(
    db: Db, monkeypatch: pytest.MonkeyPatch, group: str
) -> None:
    before = db.checksum()
    with _no_io(db.store, monkeypatch):
        for label, action, error in REJECTIONS[group]:
            outcome = _outcome(partial(action, db.store))
            assert type(outcome) is error, f"{label}: expected {error.__name__}, got {outcome!r}"
    assert db.checksum() == before


def _outcome(action: Callable[[], object]) -> object:
    """What ``action`` returned, or the exception it raised."""
    try:
        return action()
    except Exception as exc:  # noqa: BLE001 - the callers judge which ones are allowed
        return exc


def test_scope_integers_past_the_column_range_are_rejected(db: Db) -> None:
    # Map indices and asset ids live in 32-bit INTEGER columns on every database.
    before = db.checksum()
    for number in (2**31, 2**63, 10**400, -(2**31)):
        with pytest.raises(SCOPE):
            TaskScope("d", "r", "t", number)
        with pytest.raises(SCOPE):
            AssetScope(asset_id=number)
    edge = db.store.task_state(TaskScope("d", "r", "t", 2**31 - 1))
    edge.set("k", "v")
    assert edge.get("k") == "v"
    edge.clear()
    assert db.checksum() == before


async def test_async_twins_store_exactly_and_reject_first(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = [*SQL_INJECTION[:6], "%(x)s", "{0}", "🔑", "e\u0301", "k ", "\x01\x1f"]
    task, asset = db.store.task_state(HOSTILE_TASK), db.store.asset_state(SEED_ASSET)
    scoped = db.store.task_state(TaskScope(INJECTED, "%s", ":name", 3))
    accessors: dict[TaskScope | str, TaskStateAccessor | AssetStateAccessor] = {
        HOSTILE_TASK: task, SEED_ASSET: asset, scoped.scope: scoped
    }  # fmt: skip
    writes = [Write(HOSTILE_TASK, t, t) for t in sample]
    writes += [Write(SEED_ASSET, t, {t: "a\x00b"}) for t in sample]
    writes += [Write(scoped.scope, t, [t], clear=True) for t in sample]
    before = db.snapshot()
    try:
        for write in writes:
            await accessors[write.scope].aset(write.key, write.value)
        for write in writes:
            assert _exact(await accessors[write.scope].aget(write.key), write.value)
        _check_rows(before, db.snapshot(), writes)
        checksum = db.checksum()
        with _no_io(db.store, monkeypatch):
            bad_keys: list[Any] = ["", "\x00", "\ud800", "k" * 513, b"k", 1]
            for bad_key in bad_keys:
                for call in (task.aget, asset.adelete, partial(task.aset, value=1)):
                    with pytest.raises((KEY, TYPE)):
                        await call(bad_key)
            for bad, error in [
                (float("nan"), VALUE), (_deep(100_000), VALUE),
                ({1: "a"}, UNSERIALIZABLE), (b"x", UNSERIALIZABLE), ("x" * 65534, TOO_LARGE),
            ]:  # fmt: skip
                for call in (partial(task.aset, "seed"), partial(asset.aset, "watermark")):
                    with pytest.raises(error):
                        await call(bad)
        assert db.checksum() == checksum
        for write in writes:
            accessor = accessors[write.scope]
            await (accessor.aclear() if write.clear else accessor.adelete(write.key))
        assert db.snapshot() == before
    finally:
        await db.store.aclose()
