"""The web UI's browsing queries (statestore.metastore.browse) on every dialect:
pages in order, prefixes exact, pages that join up with no gap and no repeat."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from statestore.metastore import browse, search
from statestore.metastore.backend import MetastoreStateBackend


@pytest.fixture
def backend(migrated_url: URL) -> Iterator[MetastoreStateBackend]:
    store = StateStore(migrated_url.render_as_string(hide_password=False), updated_by="w")
    with store:
        backend = store.primary_backend
        assert isinstance(backend, MetastoreStateBackend)
        for dag in ("b_dag", "a_dag", "a_dag2", "é_dag"):
            for run in ("r1", "r2", "scheduled_1"):
                store.task_state(TaskScope(dag, run, "t1")).set("k", 1)
        scope = TaskScope("a_dag", "r1", "mapped")
        for index in (2, 0, 1):
            store.task_state(TaskScope("a_dag", "r1", "mapped", index)).set("k", index)
        store.task_state(TaskScope("a_dag", "r1", "mapped", 1, map_key="x")).set("k", "x")
        store.task_state(TaskScope("a_dag", "r1", "mapped", 1, map_key="w")).set("k", "w")
        state = store.task_state(scope)
        for key in ("b", "a/1", "a/2", "c"):
            state.set(key, {"key": key})
        state.set("old", 1, retention=timedelta(seconds=1))
        store.asset_state("orders").set("watermark", "2026-01-01")
        store.asset_state("customers").set("cursor", 7)
        store.asset_state("orders/eu").set("watermark", "2026-01-02")
        yield backend


def all_pages(backend: MetastoreStateBackend, make: object, limit: int) -> list[object]:
    """Walk every page of a listing; each page's ``after`` is the last item before it."""
    seen: list[object] = []
    after: object = None
    while True:
        page = browse.fetch(backend, make(after, limit))  # type: ignore[operator]
        assert len(page.items) <= limit
        seen.extend(page.items)
        if not page.more:
            return seen
        assert len(page.items) == limit
        after = page.items[-1]


def test_dags_runs_tasks_in_order_in_pages(backend: MetastoreStateBackend) -> None:
    every = ["a_dag", "a_dag2", "b_dag", "é_dag"]
    assert browse.fetch(backend, browse.dags()).items == tuple(every)
    for limit in (1, 2, 3, 4, 5):
        pages = all_pages(backend, lambda a, n: browse.dags(after=a or "", limit=n), limit)
        assert pages == every
    assert browse.fetch(backend, browse.dags(prefix="a_")).items == ("a_dag", "a_dag2")
    assert browse.fetch(backend, browse.dags(prefix="a_dag2")).items == ("a_dag2",)
    assert browse.fetch(backend, browse.dags(prefix="é")).items == ("é_dag",)
    assert browse.fetch(backend, browse.dags(prefix="A")).items == ()  # exact case
    runs = browse.fetch(backend, browse.runs("b_dag"))
    assert runs == browse.Page(("r1", "r2", "scheduled_1"), False)
    assert browse.fetch(backend, browse.runs("b_dag", prefix="r", limit=1)).more
    tasks = browse.fetch(backend, browse.tasks("a_dag", "r1"))
    assert tasks.items == ("mapped", "t1")
    assert browse.fetch(backend, browse.tasks("a_dag", "nope")).items == ()


def test_instances_by_index_then_key(backend: MetastoreStateBackend) -> None:
    expected = [
        browse.Instance(-1, None),
        browse.Instance(0, None),
        browse.Instance(1, None),
        browse.Instance(1, "w"),
        browse.Instance(1, "x"),
        browse.Instance(2, None),
    ]
    for limit in (1, 2, 4, 6, 10):
        pages = all_pages(
            backend,
            lambda a, n: browse.instances("a_dag", "r1", "mapped", after=a, limit=n),
            limit,
        )
        assert pages == expected, limit


def test_run_search_across_dags(backend: MetastoreStateBackend) -> None:
    found = browse.fetch(backend, browse.run_search("sch"))
    assert found == browse.Page(
        (("a_dag", "scheduled_1"), ("a_dag2", "scheduled_1"), ("b_dag", "scheduled_1"),
         ("é_dag", "scheduled_1")),
        False,
    )  # fmt: skip
    for limit in (1, 2, 3, 5):
        pages = all_pages(backend, lambda a, n: browse.run_search("r", after=a, limit=n), limit)
        assert pages == [(d, r) for d in ("a_dag", "a_dag2", "b_dag", "é_dag")
                         for r in ("r1", "r2")]  # fmt: skip
    assert browse.fetch(backend, browse.run_search("zzz")) == browse.Page((), False)


def test_keys_with_metadata_and_expired_ones(backend: MetastoreStateBackend) -> None:
    scope = TaskScope("a_dag", "r1", "mapped")
    page = browse.fetch(backend, browse.task_keys(scope))
    assert [row.key for row in page.items] == ["a/1", "a/2", "b", "c", "old"]
    assert all(row.version == 1 and row.updated_by == "w" for row in page.items)
    old = page.items[-1]
    assert old.expires_at is not None
    assert old.expires_at < datetime.now(timezone.utc) + timedelta(seconds=2)
    pages = all_pages(
        backend, lambda a, n: browse.task_keys(scope, after=a.key if a else "", limit=n), 2
    )
    assert [row.key for row in pages] == ["a/1", "a/2", "b", "c", "old"]  # type: ignore[attr-defined]
    prefixed = browse.fetch(backend, browse.task_keys(scope, prefix="a/"))
    assert [row.key for row in prefixed.items] == ["a/1", "a/2"]
    keyed = browse.fetch(
        backend, browse.task_keys(TaskScope("a_dag", "r1", "mapped", 1, map_key="x"))
    )
    assert [row.key for row in keyed.items] == ["k"]
    detail = browse.fetch(backend, browse.task_key(scope, "b"))
    assert detail is not None
    assert (detail.key, detail.value, detail.version) == ("b", '{"key":"b"}', 1)
    assert browse.fetch(backend, browse.task_key(scope, "nope")) is None


def test_assets_and_their_keys(backend: MetastoreStateBackend) -> None:
    page = browse.fetch(backend, browse.assets())
    assert [a.name for a in page.items] == ["customers", "orders", "orders/eu"]
    assert all(a.active for a in page.items)
    assert [a.name for a in browse.fetch(backend, browse.assets(prefix="orders")).items] == [
        "orders", "orders/eu"]  # fmt: skip
    second = browse.fetch(backend, browse.assets(after="customers", limit=1))
    assert ([a.name for a in second.items], second.more) == (["orders"], True)
    orders = browse.fetch(backend, browse.asset_by_name("orders"))
    assert orders is not None
    assert orders.name == "orders"
    assert browse.fetch(backend, browse.asset_by_name("nope")) is None
    keys = browse.fetch(backend, browse.asset_keys(orders.asset_id))
    assert [row.key for row in keys.items] == ["watermark"]
    detail = browse.fetch(backend, browse.asset_key(orders.asset_id, "watermark"))
    assert detail is not None
    assert detail.value == '"2026-01-01"'


async def test_the_async_twin_runs_the_same_plans(backend: MetastoreStateBackend) -> None:
    assert (await browse.afetch(backend, browse.dags(limit=2))) == browse.fetch(
        backend, browse.dags(limit=2)
    )
    keys = await browse.afetch(backend, browse.task_keys(TaskScope("b_dag", "r1", "t1")))
    assert [row.key for row in keys.items] == ["k"]


def test_prefix_end() -> None:
    assert browse.prefix_end("ab") == "ac"
    assert browse.prefix_end("a\U0010ffff") == "b"
    assert browse.prefix_end("\U0010ffff") is None
    assert browse.prefix_end("\ud7ff") == "\ue000"


def test_search_task_ids_and_keys_then_where_they_are(backend: MetastoreStateBackend) -> None:
    assert browse.fetch(backend, search.task_ids(prefix="ma")).items == ("mapped",)
    assert browse.fetch(backend, search.task_ids()).items == ("mapped", "t1")
    runs = all_pages(backend, lambda a, n: search.task_runs("t1", after=a, limit=n), 5)
    assert runs == [(d, r) for d in ("a_dag", "a_dag2", "b_dag", "é_dag")
                    for r in ("r1", "r2", "scheduled_1")]  # fmt: skip
    assert browse.fetch(backend, search.key_names(prefix="a/")).items == ("a/1", "a/2")
    assert browse.fetch(backend, search.key_names(asset_state=True)).items == (
        "cursor", "watermark")  # fmt: skip
    holders = all_pages(
        backend,
        lambda a, n: search.key_holders(
            "k", after=None if a is None else (*_identity(a.scope), a.row_id), limit=n
        ),
        3,
    )
    scopes = [h.scope for h in holders]  # type: ignore[attr-defined]
    assert len(scopes) == 12 + 5  # every t1 instance, and mapped's 0, 1, 1[w], 1[x], 2
    assert scopes[0] == TaskScope("a_dag", "r1", "mapped", 0)
    assert TaskScope("a_dag", "r1", "mapped", 1, map_key="x") in scopes
    assert len(set(scopes)) == len(scopes)
    assert browse.fetch(backend, search.asset_holders("watermark")).items == (
        "orders", "orders/eu")  # fmt: skip
    assert browse.fetch(backend, search.asset_holders("watermark", after="orders")).items == (
        "orders/eu",)  # fmt: skip


def _identity(scope: TaskScope) -> tuple[str, str, str, int]:
    return (scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
