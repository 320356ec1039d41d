"""The overview page in process: its numbers are what was written, a task token's page
holds nothing of other tasks or assets, and the cache serves an overview with its age."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from statestore import NEVER_EXPIRE, StateStore, TaskScope
from statestore.codec import encode_value
from statestore.metastore.overview import Overview, OverviewScope, afetch_overview
from statestore.server import Grant, create_app
from statestore.server.ui.overview import OverviewCache, scope_of
from tests.server.conftest import ADMIN, TASK_A, TASK_B, Keys, Mint, task_grant

BASE = "http://statestore"
SECRET_DAG = TaskScope("secret_dag", "run_9", "hidden_task")


def size(value: object) -> int:
    return len(encode_value(value, max_bytes=0).encode())


@pytest.fixture
async def app(sqlite_store: StateStore, keys: Keys) -> AsyncIterator[FastAPI]:
    state = sqlite_store.task_state
    state(TASK_A).set("a1", {"rows": 10}, retention=timedelta(hours=2))
    state(TASK_A).set("a2", "x" * 500, retention=NEVER_EXPIRE)
    state(TASK_B).set("task_b_key", [1, 2], retention=timedelta(days=3))
    state(SECRET_DAG).set("classified_key", "y" * 2000, retention=NEVER_EXPIRE)
    sqlite_store.asset_state("orders").set("watermark", "2026-12-01")
    sqlite_store.asset_state("private_asset").set("private_key", 7)
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    yield app
    cache = getattr(app.state, "statestore_ui_overview", None)
    if cache is not None:  # no background computation outlives the test's loop
        await cache.wait()


@pytest.fixture
async def ui(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def settled(app: FastAPI) -> None:
    """Let the background computation of the admin's overview finish."""
    await app.state.statestore_ui_overview.wait()


async def page(client: httpx.AsyncClient, token: str, query: str = "") -> str:
    login = await client.post("/ui/login", data={"token": token, "next": "/ui/overview"})
    assert login.status_code == 303
    answer = await client.get(f"/ui/overview{query}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    return answer.text


def attr(text: str, name: str, value: str) -> str:
    found = re.search(rf'{name}="{re.escape(value)}">([^<]*)<', text)
    assert found, f"no {name}={value!r} in the page"
    return found.group(1)


def rows(text: str, table: str) -> list[tuple[str, str]]:
    """(first cell's text, data-bytes) of each row of a table."""
    body = text.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr><td data-label="[^"]+">(?:<a [^>]+>)?([^<]+)<.*?data-bytes="(\d+)"',
                      body, re.S)  # fmt: skip


@pytest.fixture
def slow_complete(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The complete overview waits for the returned event: the index-only one comes first."""
    from statestore.server.ui import overview as page_module

    gate = asyncio.Event()
    real = afetch_overview

    async def fetch(*args: Any, complete: bool = True, **kw: Any) -> Overview:
        if complete:
            await gate.wait()
        return await real(*args, complete=complete, **kw)

    monkeypatch.setattr(page_module, "afetch_overview", fetch)
    return gate


async def test_admin_overview_first_answers_from_the_indexes(
    ui: httpx.AsyncClient, app: FastAPI, mint: Mint, slow_complete: asyncio.Event
) -> None:
    text = await page(ui, mint(ADMIN))
    assert 'id="computing"' in text
    assert "being\ncomputed in the background" in text
    assert attr(text, "data-total", "keys") == "6"
    assert attr(text, "data-total", "task") == "4 keys"
    assert 'data-total="bytes"' not in text
    assert [name for name, _ in rows(text, "dag-table")] == ["dag", "secret_dag"]  # by keys
    assert attr(text, "data-expiry", "never expire") == "4"
    assert 'id="largest-table"' not in text
    again = await ui.get("/ui/overview")  # still computing: the same counts, from memory
    assert "s old, from the cache" in again.text
    assert 'id="computing"' in again.text
    slow_complete.set()
    await settled(app)
    done = (await ui.get("/ui/overview")).text
    assert 'id="computing"' not in done
    assert 'data-total="bytes"' in done


async def test_a_first_overview_past_the_budget_says_it_is_being_computed(
    ui: httpx.AsyncClient, app: FastAPI, mint: Mint, slow_complete: asyncio.Event
) -> None:
    from statestore.server.ui.overview import OverviewCache

    cache = OverviewCache(budget=0)
    app.state.statestore_ui_overview = cache
    text = await page(ui, mint(ADMIN))
    assert "The overview is being computed" in text
    assert 'data-total="keys"' not in text
    for _ in range(1000):  # the index-only one finishes behind the answer
        if not any(not complete for _, complete in cache._running):
            break
        await asyncio.sleep(0.01)
    counts = (await ui.get("/ui/overview")).text
    assert attr(counts, "data-total", "keys") == "6"
    slow_complete.set()


async def test_admin_overview_shows_what_was_written(
    ui: httpx.AsyncClient, app: FastAPI, mint: Mint
) -> None:
    await page(ui, mint(ADMIN))
    await settled(app)
    answer = await ui.get("/ui/overview")
    text = answer.text
    assert "s old, from the cache" in text
    a = size({"rows": 10}) + size("x" * 500)
    b = size([1, 2])
    secret = size("y" * 2000)
    assets = size("2026-12-01") + size(7)
    assert attr(text, "data-total", "keys") == "6"
    assert f"({a + b + secret + assets} bytes)" in attr(text, "data-total", "bytes")
    assert attr(text, "data-total", "task").startswith("4 keys")
    assert attr(text, "data-total", "asset").startswith("2 keys")
    # One dag holds TASK_A and TASK_B; the secret dag is larger, so listed first.
    assert rows(text, "dag-table") == [("secret_dag", str(secret)), ("dag", str(a + b))]
    assert [name for name, _ in rows(text, "asset-table")] == ["orders", "private_asset"]
    assert attr(text, "data-expiry", "never expire") == "4"  # 2 task keys + 2 asset keys
    assert attr(text, "data-expiry", "already expired") == "0"
    today = re.search(r'data-writes="(\d{4}-\d\d-\d\d)">6<', text)
    assert today, "all six keys were written today"
    largest = text.split('id="largest-table"', 1)[1]
    assert largest.index("classified_key") < largest.index("a2") < largest.index("watermark")
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"' in text
    assert '<title id="expiry-title">When keys expire</title>' in text
    assert "style=" not in text  # the CSP refuses style attributes


async def test_a_task_tokens_overview_holds_nothing_of_others(
    ui: httpx.AsyncClient, mint: Mint
) -> None:
    token = mint(task_grant(TASK_A, read_assets=frozenset({"orders"})))
    text = await page(ui, token)
    assert attr(text, "data-total", "keys") == "3"  # a1, a2 and the asset's watermark
    assert attr(text, "data-total", "task").startswith("2 keys")
    assert rows(text, "dag-table") == [("dag", str(size({"rows": 10}) + size("x" * 500)))]
    for other in ("secret_dag", "classified_key", "hidden_task", "task_b_key",
                  "private_asset", "private_key", "run_9"):  # fmt: skip
        assert other not in text, other
    assert "Only what this token grants" in text
    assert attr(text, "data-expiry", "never expire") == "2"


async def test_the_overview_needs_a_login(ui: httpx.AsyncClient) -> None:
    answer = await ui.get("/ui/overview")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?next=%2Fui%2Foverview")


async def test_a_task_tokens_page_is_cached_with_its_age_and_refresh_is_bounded(
    ui: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    first = await page(ui, mint(task_grant(TASK_B)))
    assert "computed on this request" in first
    assert attr(first, "data-total", "keys") == "1"
    sqlite_store.task_state(TASK_B).set("b2", 1)
    cached = await ui.get("/ui/overview")
    assert attr(cached.text, "data-total", "keys") == "1"  # served from the cache
    assert "s old, from the cache" in cached.text
    again = await ui.get("/ui/overview?refresh=1")  # younger than MIN_REFRESH_SECONDS
    assert attr(again.text, "data-total", "keys") == "1"


def keys_of(found: tuple[Overview | None, float | None]) -> tuple[int, float | None]:
    assert found[0] is not None
    return found[0].task_keys, found[1]


def _overview(keys: int) -> Overview:
    from datetime import datetime, timezone

    from statestore.metastore.overview import ExpiryHistogram

    return Overview(datetime.now(timezone.utc), keys, 0, 0, 0, (), (),
                    ExpiryHistogram(0, (), 0, 0), (), (), 0)  # fmt: skip


async def test_cache_computes_once_per_scope_and_again_when_old() -> None:
    now = [100.0]
    cache = OverviewCache(ttl=60, clock=lambda: now[0])
    calls: list[int] = []

    async def compute(complete: bool) -> Overview:
        assert complete
        calls.append(1)
        return _overview(len(calls))

    scope = OverviewScope(everything=True)
    assert keys_of(await cache.get(scope, compute)) == (1, None)
    now[0] += 30
    assert keys_of(await cache.get(scope, compute)) == (1, 30)
    assert keys_of(await cache.get(scope, compute, refresh=True)) == (2, None)  # older than 5 s
    now[0] += 2
    assert keys_of(await cache.get(scope, compute, refresh=True)) == (2, 2)  # too recent
    now[0] += 61
    assert keys_of(await cache.get(scope, compute)) == (3, None)
    other = OverviewScope(task=TASK_A)
    assert keys_of(await cache.get(other, compute)) == (4, None)  # scopes never share
    assert len(calls) == 4


async def test_concurrent_requests_share_one_computation() -> None:
    import asyncio

    cache = OverviewCache()
    started = asyncio.Event()
    calls: list[int] = []

    async def compute(complete: bool) -> Overview:
        calls.append(1)
        started.set()
        await asyncio.sleep(0)
        return _overview(len(calls))

    scope = OverviewScope(everything=True)
    results = await asyncio.gather(*(cache.get(scope, compute) for _ in range(5)))
    assert calls == [1]
    assert {keys_of(r)[0] for r in results} == {1}
    assert [r[1] is None for r in results].count(True) == 1  # the others waited for it


def test_scope_of_a_grant() -> None:
    assert scope_of(ADMIN) == OverviewScope(everything=True)
    grant = Grant("task:a", task=TASK_A, all_map_indices=True,
                  read_assets=frozenset({"r"}), write_assets=frozenset({"w"}))  # fmt: skip
    assert scope_of(grant) == OverviewScope(
        task=TASK_A, all_map_indices=True, assets=frozenset({"r", "w"})
    )


async def test_background_cache_answers_within_its_budget_and_refreshes_behind() -> None:
    import asyncio

    now = [0.0]
    cache = OverviewCache(ttl=60, budget=5, clock=lambda: now[0])
    gate = asyncio.Event()
    calls: list[bool] = []

    async def compute(complete: bool) -> Overview:
        calls.append(complete)
        if complete:
            await gate.wait()  # the complete one is slow
            now[0] += 20  # ... and takes 20 s
        return _overview(len(calls))

    scope = OverviewScope(everything=True)
    quick, age = await cache.get(scope, compute, background=True)
    assert quick is not None
    assert (quick.task_keys, age) == (2, None)  # the index-only one, waited for
    assert sorted(calls) == [False, True]
    assert cache.computing(scope)
    again, age = await cache.get(scope, compute, background=True)  # no second computation
    assert (again, age, len(calls)) == (quick, 0.0, 2)
    gate.set()
    await cache.wait()
    assert not cache.computing(scope)
    now[0] += 30
    found, age = await cache.get(scope, compute, background=True)
    assert found is not None
    assert (found.complete, age) == (True, 30)  # the complete one, from the cache
    now[0] += 100  # past the ttl, but not 10 x the 20 s it took: not stale yet
    assert (await cache.get(scope, compute, background=True))[1] == 130
    assert len(calls) == 2
    now[0] += 80  # 210 s: stale; answered from the cache, refreshed behind it
    found, age = await cache.get(scope, compute, background=True)
    assert (found, age) == (found, 210)
    await cache.wait()
    assert len(calls) == 3
    assert (await cache.get(scope, compute, background=True))[1] == 0.0


async def test_past_its_budget_the_first_answer_is_none_then_the_counts() -> None:
    import asyncio

    cache = OverviewCache(budget=0.01)
    gate = asyncio.Event()

    async def compute(complete: bool) -> Overview:
        await gate.wait()
        return _overview(0 if complete else 1)

    scope = OverviewScope(everything=True)
    assert await cache.get(scope, compute, background=True) == (None, None)
    gate.set()
    await asyncio.sleep(0)  # both finish; the complete one wins
    await cache.wait()
    found, age = await cache.get(scope, compute, background=True)
    assert found is not None
    assert found.task_keys == 0
    assert age is not None


async def test_a_failed_background_computation_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = OverviewCache()
    calls: list[bool] = []

    async def compute(complete: bool) -> Overview:
        calls.append(complete)
        if complete and calls.count(True) == 1:
            raise RuntimeError("database gone")
        return _overview(len(calls))

    scope = OverviewScope(everything=True)
    first, _ = await cache.get(scope, compute, background=True)
    await cache.wait()
    assert "computing the overview failed" in caplog.text
    assert first is not None  # the index-only answer still came
    assert not cache.computing(scope)
    again, _ = await cache.get(scope, compute, background=True)  # no complete one: again
    assert again == first
    await cache.wait()
    assert sorted(calls) == [False, True, True]
    assert (await cache.get(scope, compute, background=True))[1] is not None


async def test_without_the_metastore_the_page_says_so(keys: Keys, mint: Mint) -> None:
    from statestore import InMemoryStateBackend

    with StateStore(backend=InMemoryStateBackend()) as store:
        app = create_app(store, public_key=keys.public_pem, close_store=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            await client.post("/ui/login", data={"token": mint(ADMIN)})
            answer = await client.get("/ui/overview")
    assert answer.status_code >= 400
    assert "the overview needs the database backend" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


async def test_shutdown_cancels_a_background_overview(sqlite_store: StateStore, keys: Keys) -> None:
    """A complete overview of a large database takes seconds; the lifespan stops it
    before the store closes instead of waiting for it or leaving it running."""
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    cache = OverviewCache()
    app.state.statestore_ui_overview = cache
    never = asyncio.Event()

    async def endless(complete: bool) -> Overview:
        await never.wait()
        raise AssertionError("cancelled before it could finish")

    async with app.router.lifespan_context(app):
        task = cache._start(scope_of(ADMIN), True, endless)
        await asyncio.sleep(0)
        assert cache.computing(scope_of(ADMIN))
    assert task.cancelled()
    assert not cache.computing(scope_of(ADMIN))
