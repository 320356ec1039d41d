"""The web UI's pages and actions in process: what each page shows, what each action
stores (checked in the database), and what a task token or a read-only server refuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import time_machine

from statestore import ReadOnlyServerError, StateStore, TaskScope, wire
from statestore.backends.worker import ref_envelope
from statestore.server import create_app
from tests.server.conftest import ADMIN, TASK_A, TASK_B, Keys, Mint, bearer, task_grant
from tests.server.test_ui import BASE, csrf_of, login

# An hour ago, whole minutes: live under the default retention, and times print evenly.
T0 = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(second=0, microsecond=0)
Q_A = wire.scope_params(TASK_A)
Q_B = wire.scope_params(TASK_B)


@pytest.fixture
def filled(sqlite_store: StateStore) -> StateStore:
    with time_machine.travel(T0, tick=False):
        a = sqlite_store.task_state(TASK_A, updated_by="worker-a")
        a.set("job_id", {"id": "job-42", "tries": [1, 2]})
        a.set("soon", 1, retention=timedelta(hours=3))
        a.set("gone", 2, retention=timedelta(minutes=1))
        a.set("big", "x" * 6000)
        sqlite_store.task_state(TASK_B).set("secret_b", "value-of-b")
        sqlite_store.task_state(TaskScope("dag", "run_1", "task_a", 2)).set("m", 2)
        sqlite_store.asset_state("orders").set("watermark", "2026-05-31")
        sqlite_store.asset_state("customers").set("cursor", 7)
        sqlite_store.asset_state("hidden_asset").set("h", "value-of-hidden")
    backend = sqlite_store.primary_backend
    backend.set(TASK_A, "blob", ref_envelope("task/" + "0" * 64 + "/m-1/" + "1" * 64 + ".json"))
    return sqlite_store


def app_client(store: StateStore, keys: Keys, **options: object) -> httpx.AsyncClient:
    app = create_app(store, public_key=keys.public_pem, close_store=False, **options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture
async def admin(filled: StateStore, keys: Keys, mint: Mint) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(filled, keys) as client:
        await login(client, mint(ADMIN))
        yield client


async def page(client: httpx.AsyncClient, path: str, **params: str) -> str:
    answer = await client.get(path, params=params) if params else await client.get(path)
    assert answer.status_code == 200, answer.text
    return answer.text


async def test_browse_from_dags_to_a_key(admin: httpx.AsyncClient) -> None:
    home = await page(admin, "/ui/")
    assert '<a href="/ui/runs?dag_id=dag">dag</a>' in home
    runs = await page(admin, "/ui/runs", dag_id="dag")
    assert "/ui/tasks?dag_id=dag&amp;run_id=run_1" in runs
    tasks = await page(admin, "/ui/tasks", dag_id="dag", run_id="run_1")
    assert ">task_a</a>" in tasks
    assert ">task_b</a>" in tasks
    instances = await page(admin, "/ui/instances", dag_id="dag", run_id="run_1", task_id="task_a")
    assert "not mapped (-1)" in instances
    assert "map index 2" in instances
    keys = await page(admin, "/ui/task", **Q_A)
    for key in ("big", "blob", "gone", "job_id", "soon"):
        assert f"<code>{key}</code>" in keys
    assert "expired" in keys  # "gone" expired long ago (T0 + 1 min)
    key = await page(admin, "/ui/task/key", **Q_A, key="job_id")
    assert "&#34;job-42&#34;" in key  # pretty JSON, escaped
    assert '"tries": [\n' in key.replace("&#34;", '"')
    assert "worker-a" in key
    assert "<dt>Version</dt><dd>1</dd>" in key


async def test_a_large_value_is_folded_with_its_size(admin: httpx.AsyncClient) -> None:
    key = await page(admin, "/ui/task/key", **Q_A, key="big")
    assert "<details>" in key
    assert "5.9 KiB of JSON" in key


async def test_an_object_store_reference_is_shown_as_such(admin: httpx.AsyncClient) -> None:
    key = await page(admin, "/ui/task/key", **Q_A, key="blob")
    assert "object-store reference" in key
    assert "<code>task/" + "0" * 64 in key
    assert "/ui/task/key/edit" not in key  # edited from a worker only
    refused = await admin.get("/ui/task/key/edit", params={**Q_A, "key": "blob"})
    assert refused.status_code == 422


async def test_expiry_relative_absolute_and_expired(admin: httpx.AsyncClient) -> None:
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        soon = await page(admin, "/ui/task/key", **Q_A, key="soon")
        gone = await page(admin, "/ui/task/key", **Q_A, key="gone")
    assert "in 2 h" in soon
    assert (T0 + timedelta(hours=3)).isoformat() in soon
    assert "expired" not in soon
    assert 'class="badge expired"' in gone
    assert "59 min ago" in gone


async def test_an_absent_key_is_a_404_page(admin: httpx.AsyncClient) -> None:
    answer = await admin.get("/ui/task/key", params={**Q_A, "key": "nope"})
    assert answer.status_code == 404
    assert "No such key" in answer.text


async def test_edit_is_a_compare_and_set(admin: httpx.AsyncClient, filled: StateStore) -> None:
    form = await page(admin, "/ui/task/key/edit", **Q_A, key="job_id")
    assert 'name="version" value="1"' in form
    csrf = csrf_of(form)
    saved = await admin.post(
        "/ui/task/key/edit", params={**Q_A, "key": "job_id"},
        data={"csrf": csrf, "version": "1", "value": '{"id": "job-43"}', "expires_at": ""},
    )  # fmt: skip
    assert saved.status_code == 303
    item = filled.primary_backend.get_item(TASK_A, "job_id")
    assert item is not None
    assert (item.value, item.version, item.updated_by) == ('{"id":"job-43"}', 2, "admin:test")
    assert item.expires_at is None


async def test_a_concurrent_change_is_a_conflict_not_an_overwrite(
    admin: httpx.AsyncClient, filled: StateStore
) -> None:
    form = await page(admin, "/ui/task/key/edit", **Q_A, key="job_id")  # at version 1
    filled.task_state(TASK_A, updated_by="the-worker").set("job_id", "newer")  # version 2
    answer = await admin.post(
        "/ui/task/key/edit", params={**Q_A, "key": "job_id"},
        data={"csrf": csrf_of(form), "version": "1", "value": '"mine"', "expires_at": ""},
    )  # fmt: skip
    assert answer.status_code == 409
    assert "Not saved" in answer.text
    assert "&#34;newer&#34;" in answer.text  # the newer value
    assert "the-worker" in answer.text
    assert "&#34;mine&#34;" in answer.text  # the text that was not saved
    assert 'name="version" value="2"' in answer.text  # edit again from the newer version
    item = filled.primary_backend.get_item(TASK_A, "job_id")
    assert item is not None
    assert (item.value, item.version) == ('"newer"', 2)


async def test_a_deleted_key_is_a_conflict_too(
    admin: httpx.AsyncClient, filled: StateStore
) -> None:
    form = await page(admin, "/ui/task/key/edit", **Q_A, key="job_id")
    filled.task_state(TASK_A).delete("job_id")
    answer = await admin.post(
        "/ui/task/key/edit", params={**Q_A, "key": "job_id"},
        data={"csrf": csrf_of(form), "version": "1", "value": '"mine"', "expires_at": ""},
    )  # fmt: skip
    assert answer.status_code == 409
    assert "deleted meanwhile" in answer.text
    assert filled.primary_backend.get_item(TASK_A, "job_id") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("null", "must not be None"),
        ("NaN", "NaN"),
        ("", "empty"),
        ("[" * 300 + "]" * 300, "deep"),
        ('"' + "x" * 70_000 + '"', "over the limit"),
    ],
    ids=["not-json", "null", "nan", "empty", "too-deep", "too-large"],
)
async def test_values_are_checked_by_the_library_rules(
    admin: httpx.AsyncClient, filled: StateStore, text: str, message: str
) -> None:
    form = await page(admin, "/ui/task/key/edit", **Q_A, key="job_id")
    answer = await admin.post(
        "/ui/task/key/edit", params={**Q_A, "key": "job_id"},
        data={"csrf": csrf_of(form), "version": "1", "value": text, "expires_at": ""},
    )  # fmt: skip
    assert answer.status_code == 422
    assert "Not saved" in answer.text
    assert message in answer.text
    item = filled.primary_backend.get_item(TASK_A, "job_id")
    assert item is not None
    assert item.version == 1  # nothing written


async def test_a_marker_dict_is_stored_as_data(
    admin: httpx.AsyncClient, filled: StateStore
) -> None:
    form = await page(admin, "/ui/task/key/edit", **Q_A, key="job_id")
    value = '{"$statestore": "ref", "ref": "task/evil"}'
    expires = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    answer = await admin.post(
        "/ui/task/key/edit", params={**Q_A, "key": "job_id"},
        data={"csrf": csrf_of(form), "version": "1", "value": value, "expires_at": expires},
    )  # fmt: skip
    assert answer.status_code == 303
    assert filled.task_state(TASK_A).get("job_id") == {"$statestore": "ref", "ref": "task/evil"}
    item = filled.primary_backend.get_item(TASK_A, "job_id")
    assert item is not None
    assert item.expires_at == datetime.fromisoformat(expires)


async def test_delete_asks_first_and_needs_csrf(
    admin: httpx.AsyncClient, filled: StateStore
) -> None:
    confirm = await page(admin, "/ui/task/key/delete", **Q_A, key="job_id")
    assert "Delete <code>job_id</code>?" in confirm
    assert filled.task_state(TASK_A).get("job_id") is not None  # the GET deleted nothing
    no_csrf = await admin.post("/ui/task/key/delete", params={**Q_A, "key": "job_id"}, data={})
    assert no_csrf.status_code == 403
    assert filled.task_state(TASK_A).get("job_id") is not None
    done = await admin.post(
        "/ui/task/key/delete", params={**Q_A, "key": "job_id"}, data={"csrf": csrf_of(confirm)}
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith("/ui/task?")
    assert filled.task_state(TASK_A).get("job_id") is None
    assert "The key was deleted." in await page(admin, done.headers["location"])


async def test_clear_one_instance_or_all(admin: httpx.AsyncClient, filled: StateStore) -> None:
    confirm = await page(admin, "/ui/task/clear", **Q_A)
    assert "Clear task dag/run_1/task_a?" in confirm
    assert (await admin.post("/ui/task/clear", params=Q_A, data={})).status_code == 403
    done = await admin.post("/ui/task/clear", params=Q_A, data={"csrf": csrf_of(confirm)})
    assert done.status_code == 303
    assert list(filled.task_state(TASK_A).keys()) == []
    mapped = TaskScope("dag", "run_1", "task_a", 2)
    assert filled.task_state(mapped).get("m") == 2  # another map index: kept
    params = {"dag_id": "dag", "run_id": "run_1", "task_id": "task_a", "all_map_indices": "true"}
    confirm = await page(admin, "/ui/task/clear", **params)
    assert "every map index" in confirm
    done = await admin.post("/ui/task/clear", params=params, data={"csrf": csrf_of(confirm)})
    assert done.status_code == 303
    assert filled.task_state(mapped).get("m") is None
    assert filled.task_state(TASK_B).get("secret_b") == "value-of-b"


async def test_deactivate_and_activate_an_asset(
    admin: httpx.AsyncClient, filled: StateStore
) -> None:
    confirm = await page(admin, "/ui/asset/deactivate", name="orders")
    assert "next asset sweep deletes its state" in confirm
    done = await admin.post(
        "/ui/asset/deactivate", params={"name": "orders"}, data={"csrf": csrf_of(confirm)}
    )
    assert done.status_code == 303
    assert [a.active for a in filled.list_assets() if a.name == "orders"] == [False]
    assert "inactive" in await page(admin, "/ui/asset", name="orders")
    confirm = await page(admin, "/ui/asset/activate", name="orders")
    await admin.post(
        "/ui/asset/activate", params={"name": "orders"}, data={"csrf": csrf_of(confirm)}
    )
    assert [a.active for a in filled.list_assets() if a.name == "orders"] == [True]


async def test_assets_and_their_keys(admin: httpx.AsyncClient) -> None:
    assets = await page(admin, "/ui/assets")
    assert assets.index(">customers<") < assets.index(">hidden_asset<") < assets.index(">orders<")
    orders = await page(admin, "/ui/asset", name="orders")
    assert "<code>watermark</code>" in orders
    key = await page(admin, "/ui/asset/key", name="orders", key="watermark")
    assert "&#34;2026-05-31&#34;" in key


async def test_the_cleanup_dry_run_lists_what_would_go(
    admin: httpx.AsyncClient, filled: StateStore
) -> None:
    before = await page(admin, "/ui/cleanup")
    assert "would be deleted" not in before
    ran = await page(admin, "/ui/cleanup", dry_run="true")
    assert "<strong>1</strong> expired key would be deleted" in ran
    assert "<code>gone</code>" in ran
    assert "<code>soon</code>" not in ran
    assert filled.primary_backend.get_item(TASK_A, "soon") is not None  # nothing deleted


async def test_the_dry_run_links_a_map_key_instance_to_itself(
    admin: httpx.AsyncClient, filled: StateStore
) -> None:
    keyed = TaskScope("dag", "run_1", "task_a", 3, map_key="region-eu")
    with time_machine.travel(T0, tick=False):
        filled.task_state(keyed).set("stale", 1, retention=timedelta(minutes=1))
    ran = await page(admin, "/ui/cleanup", dry_run="true")
    assert "<strong>2</strong> expired keys would be deleted" in ran
    link = "/ui/task/key?dag_id=dag&amp;run_id=run_1&amp;task_id=task_a&amp;map_key=region-eu"
    assert f'href="{link}&amp;key=stale"' in ran  # its own instance, not map index 3's
    assert "dag / run_1 / task_a [region-eu]</td>" in ran


async def test_search_runs_tasks_and_keys_in_every_dag(admin: httpx.AsyncClient) -> None:
    found = await page(admin, "/ui/search", what="run", q="run_")
    assert "dag / run_1" in found
    assert "Nothing found" in await page(admin, "/ui/search", what="run", q="zzz")
    tasks = await page(admin, "/ui/search", what="task", q="task_")
    assert '<a href="/ui/search?task=task_a">task_a</a>' in tasks
    assert ">task_b</a>" in tasks
    places = await page(admin, "/ui/search", task="task_a")
    assert "/ui/instances?dag_id=dag&amp;run_id=run_1&amp;task_id=task_a" in places
    keys = await page(admin, "/ui/search", what="key", q="wat")
    assert '<a href="/ui/search?key=watermark">watermark</a>' in keys  # an asset's key
    job = await page(admin, "/ui/search", key="job_id")
    assert "task dag/run_1/task_a</a>" in job
    assert "/ui/task/key?dag_id=dag&amp;run_id=run_1&amp;task_id=task_a" in job
    watermark = await page(admin, "/ui/search", key="watermark")
    assert '<a href="/ui/asset/key?name=orders&amp;key=watermark">asset orders</a>' in watermark


# -- a task token --------------------------------------------------------------------


@pytest.fixture
async def task_a(filled: StateStore, keys: Keys, mint: Mint) -> AsyncIterator[httpx.AsyncClient]:
    grant = task_grant(read_assets=frozenset({"customers"}), write_assets=frozenset({"orders"}))
    async with app_client(filled, keys) as client:
        await login(client, mint(grant))
        yield client


async def test_a_task_token_sees_only_its_grant(task_a: httpx.AsyncClient) -> None:
    home = await page(task_a, "/ui/")
    assert "task dag/run_1/task_a" in home
    assert '>orders</a> <span class="badge">read and write' in home
    assert '>customers</a> <span class="badge">read only' in home
    assert "task_b" not in home
    assert "hidden_asset" not in home
    assert "job_id" in await page(task_a, "/ui/task", **Q_A)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/ui/task", Q_B),
        ("/ui/task/key", {**Q_B, "key": "secret_b"}),
        ("/ui/task/key/edit", {**Q_B, "key": "secret_b"}),
        ("/ui/task/key/delete", {**Q_B, "key": "secret_b"}),
        ("/ui/task/clear", Q_B),
        ("/ui/task/clear", {**Q_A, "all_map_indices": "true"}),
        ("/ui/instances", {"dag_id": "dag", "run_id": "run_1", "task_id": "task_b"}),
        ("/ui/instances", {"dag_id": "dag", "run_id": "run_1", "task_id": "task_a"}),
        ("/ui/runs", {"dag_id": "dag"}),
        ("/ui/tasks", {"dag_id": "dag", "run_id": "run_1"}),
        ("/ui/search", {"run": "run"}),
        ("/ui/asset", {"name": "hidden_asset"}),
        ("/ui/asset/key", {"name": "hidden_asset", "key": "h"}),
        ("/ui/asset/key/edit", {"name": "customers", "key": "cursor"}),
        ("/ui/asset/deactivate", {"name": "orders"}),
        ("/ui/cleanup", {"dry_run": "true"}),
    ],
)
async def test_a_task_token_cannot_see_another_scope(
    task_a: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    answer = await task_a.get(path, params=params)
    assert answer.status_code == 403
    for other in ("secret_b", "value-of-b", "value-of-hidden", "job-42", "watermark"):
        if other not in params.values():
            assert other not in answer.text, (path, other)


async def test_a_task_token_cannot_write_another_scope(
    task_a: httpx.AsyncClient, filled: StateStore
) -> None:
    csrf = csrf_of(await page(task_a, "/ui/"))
    posts = [
        ("/ui/task/key/edit", {**Q_B, "key": "secret_b"}, {"version": "1", "value": '"x"'}),
        ("/ui/task/key/delete", {**Q_B, "key": "secret_b"}, {}),
        ("/ui/task/clear", Q_B, {}),
        (
            "/ui/asset/key/edit",
            {"name": "customers", "key": "cursor"},
            {"version": "1", "value": "8"},
        ),
        ("/ui/asset/key/delete", {"name": "customers", "key": "cursor"}, {}),
    ]
    for path, params, data in posts:
        answer = await task_a.post(path, params=params, data={"csrf": csrf, **data})
        assert answer.status_code == 403, path
    assert filled.task_state(TASK_B).get("secret_b") == "value-of-b"
    assert filled.asset_state("customers").get("cursor") == 7


async def test_an_inlet_is_shown_read_only(task_a: httpx.AsyncClient) -> None:
    key = await page(task_a, "/ui/asset/key", name="customers", key="cursor")
    assert "may read this asset but not write it" in key
    assert "/key/edit" not in key
    outlet = await page(task_a, "/ui/asset/key", name="orders", key="watermark")
    assert "/ui/asset/key/edit?name=orders" in outlet


# -- a read-only server --------------------------------------------------------------


async def test_a_read_only_server_refuses_writes_in_the_ui_and_the_api(
    filled: StateStore, keys: Keys, mint: Mint
) -> None:
    async with app_client(filled, keys, read_only=True) as client:
        csrf = await login(client, mint(ADMIN))
        key = await page(client, "/ui/task/key", **Q_A, key="job_id")
        assert "read-only" in key
        assert "/key/edit" not in key
        assert "/key/delete" not in key
        assert "Clear this task instance" not in await page(client, "/ui/task", **Q_A)
        assert (
            await client.get("/ui/task/key/edit", params={**Q_A, "key": "job_id"})
        ).status_code == 403
        answer = await client.post(
            "/ui/task/key/edit", params={**Q_A, "key": "job_id"},
            data={"csrf": csrf, "version": "1", "value": '"x"'},
        )  # fmt: skip
        assert answer.status_code == 403
        assert "ReadOnlyServerError" in answer.text
        auth = bearer(mint(ADMIN))
        put = await client.put(
            wire.TASK_KEY, params={**Q_A, "key": "job_id"}, content=b"1", headers=auth
        )
        assert put.status_code == 403
        assert put.json()["type"] == wire.PROBLEM_PREFIX + "ReadOnlyServerError"
        raised = wire.error_from_problem(403, put.json())  # what HttpStateBackend raises
        assert isinstance(raised, ReadOnlyServerError)
        assert isinstance(raised, PermissionError)
        deleted = await client.delete(wire.TASK_KEY, params={**Q_A, "key": "job_id"}, headers=auth)
        assert deleted.status_code == 403
        cleanup = await client.post(wire.CLEANUP, headers=auth)
        assert cleanup.status_code == 403
        dry = await client.post(wire.CLEANUP, params={"dry_run": "true"}, headers=auth)
        assert dry.status_code == 200
        got = await client.get(wire.TASK_KEY, params={**Q_A, "key": "job_id"}, headers=auth)
        assert got.status_code == 200
        assert "dry run" in (await page(client, "/ui/cleanup"))
    item = filled.primary_backend.get_item(TASK_A, "job_id")
    assert item is not None
    assert item.version == 1
