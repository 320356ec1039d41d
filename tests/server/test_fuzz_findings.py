"""What fuzzing the API found, one test per bug, each checked value by value.

The fuzz test (test_fuzz.py) found the first; running it with many more examples and
probing the limits it pointed at found the rest. Each was a 500 (an untyped driver or
datetime error), or a response the OpenAPI document does not describe.
"""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
from fastapi import FastAPI

from statestore import StateStore, wire
from statestore.cleanup import cleanup_task_states
from statestore.exceptions import InvalidValueError
from statestore.items import MAX_VERSION
from statestore.scopes import AssetScope
from statestore.server import create_app
from tests.server.conftest import ADMIN, TASK_A, Keys, Mint, bearer, task_grant

KEY = wire.key_params


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        (wire.TASK_KEY, "DELETE, GET, PUT"),
        (wire.TASK_STATE, "DELETE, GET"),
        (wire.ASSET_KEY, "DELETE, GET, PUT"),
        (wire.CLEANUP, "POST"),
        (wire.LIVEZ, "GET"),
    ],
)
async def test_405_names_every_method_of_the_path(
    client: httpx.AsyncClient, path: str, methods: str
) -> None:
    # Was: Allow named only the first route that matched the path (GET), or nothing.
    for method in ("OPTIONS", "PATCH", "GET" if "GET" not in methods else "POST"):
        answer = await client.request(method, path)
        assert answer.status_code == 405, method
        assert answer.headers["allow"] == methods, method
        assert answer.headers["content-type"] == wire.PROBLEM_CONTENT_TYPE
        assert answer.json()["status"] == 405


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+00:31"]
)
async def test_expires_at_beyond_the_utc_range_is_a_422(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore, text: str
) -> None:
    # Was: OverflowError converting to UTC, a 500.
    params = {**KEY(TASK_A, "k"), "expires_at": text}
    put = await client.put(wire.TASK_KEY, params=params, content=b"1", headers=bearer(mint(ADMIN)))
    assert put.status_code == 422
    assert put.json()["type"] == wire.PROBLEM_PREFIX + "InvalidValueError"
    assert put.json()["detail"] == f"expires_at {text!r} is outside the years 1-9999 in UTC"
    assert sqlite_store.backend.get_item(TASK_A, "k") is None  # nothing written


@pytest.mark.parametrize(
    "text", ["2999-01-02T03:04:05Z", "2999-01-02t03:04:05z", "2999-01-02T04:04:05+01:00"]
)
async def test_expires_at_takes_every_rfc_3339_spelling(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore, text: str
) -> None:
    # Was: "Z" and a lower-case "t"/"z" refused on Python 3.10 (fromisoformat).
    params = {**KEY(TASK_A, "k"), "expires_at": text}
    put = await client.put(wire.TASK_KEY, params=params, content=b"1", headers=bearer(mint(ADMIN)))
    assert put.status_code == 204, put.text
    stored = sqlite_store.backend.get_item(TASK_A, "k")
    assert stored is not None
    assert stored.expires_at == datetime(2999, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


async def test_if_match_past_the_largest_version_is_a_422(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    # Was: OverflowError binding the version, a 500 (and the same from the library).
    auth = bearer(mint(task_grant()))
    assert (await client.put(wire.TASK_KEY, params=KEY(TASK_A, "k"), content=b"1",
                             headers=auth)).status_code == 204  # fmt: skip
    for version in (MAX_VERSION + 1, 10**30):
        headers = {**auth, "If-Match": wire.etag_for(version)}
        put = await client.put(
            wire.TASK_KEY, params=KEY(TASK_A, "k"), content=b"2", headers=headers
        )
        assert put.status_code == 422
        assert put.json()["detail"] == f"if_version must be at most {MAX_VERSION}, not {version}"
    at_max = {**auth, "If-Match": wire.etag_for(MAX_VERSION)}  # allowed, and loses
    lost = await client.put(wire.TASK_KEY, params=KEY(TASK_A, "k"), content=b"3", headers=at_max)
    assert lost.status_code == 412
    assert lost.json()["current_version"] == 1
    stored = sqlite_store.backend.get_item(TASK_A, "k")
    assert stored is not None
    assert (stored.value, stored.version) == ("1", 1)
    with pytest.raises(InvalidValueError, match="at most"):
        sqlite_store.task_state(TASK_A).set("k", 4, if_version=MAX_VERSION + 1)


async def test_if_match_with_superscript_digits_is_a_422(
    client: httpx.AsyncClient, mint: Mint
) -> None:
    # Was: a 500. Header bytes are Latin-1, and str.isdigit() is true for the
    # superscripts there, which int() refuses.
    tags: list[bytes] = [b'"\xb2"', b'"1\xb9"', b'"\xb3"']
    for tag in tags:
        headers = [(b"authorization", f"Bearer {mint(ADMIN)}".encode()), (b"if-match", tag)]
        put = await client.put(
            wire.TASK_KEY, params=KEY(TASK_A, "k"), content=b"1", headers=headers
        )
        assert put.status_code == 422, tag
        assert put.json()["type"] == wire.PROBLEM_PREFIX + "InvalidValueError"


async def test_cleanup_batch_size_past_the_limit_is_a_422(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    # Was: OverflowError binding the LIMIT, a 500 (and the same from the library).
    auth = bearer(mint(ADMIN))
    for size in ("2147483648", "99999999999999999999999", "-1"):
        answer = await client.post(wire.CLEANUP, params={"batch_size": size}, headers=auth)
        assert answer.status_code == 422, size
        assert answer.json()["detail"] == (
            f"batch_size must be between 0 and 2147483647, not {int(size)}"
        )
    ok = await client.post(wire.CLEANUP, params={"batch_size": "2147483647"}, headers=auth)
    assert ok.status_code == 200
    assert ok.json()["deleted"] == 0
    with pytest.raises(InvalidValueError, match="between 0 and"):
        cleanup_task_states(sqlite_store, batch_size=2**31)


@pytest.mark.parametrize("admin", [True, False])
async def test_updated_by_obeys_the_library_rules(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore, admin: bool
) -> None:
    # Was: an admin's updated_by went to the column unchecked (NUL, 300 characters):
    # SQLite kept it, PostgreSQL would fail untyped. A task's is ignored, still checked.
    auth = bearer(mint(ADMIN if admin else task_grant()))
    for writer, detail in (
        ("x" * 251, "updated_by is 251 characters; the limit is 250"),
        ("a\x00b", "updated_by must not contain NUL characters"),
    ):
        params = {**KEY(TASK_A, "k"), "updated_by": writer}
        put = await client.put(wire.TASK_KEY, params=params, content=b"1", headers=auth)
        assert put.status_code == 422
        assert put.json()["detail"] == detail
    assert sqlite_store.backend.get_item(TASK_A, "k") is None
    params = {**KEY(TASK_A, "k"), "updated_by": "y" * 250}
    put = await client.put(wire.TASK_KEY, params=params, content=b"1", headers=auth)
    assert put.status_code == 204
    stored = sqlite_store.backend.get_item(TASK_A, "k")
    assert stored is not None
    assert stored.updated_by == ("y" * 250 if admin else "task:task_a")


async def test_405_allow_when_mounted_in_a_host_app(sqlite_store: StateStore, keys: Keys) -> None:
    host = FastAPI()
    host.mount("/state", create_app(sqlite_store, public_key=keys.public_pem, close_store=False))
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
        answer = await client.patch("/state" + wire.TASK_KEY)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, GET, PUT"


async def test_cleanup_dry_run_checks_batch_size_too(client: httpx.AsyncClient, mint: Mint) -> None:
    # Was: a dry run ignored batch_size, so a negative one was a 200.
    params = {"dry_run": "true", "batch_size": "-1"}
    answer = await client.post(wire.CLEANUP, params=params, headers=bearer(mint(ADMIN)))
    assert answer.status_code == 422
    assert answer.json()["detail"] == "batch_size must be between 0 and 2147483647, not -1"


@pytest.mark.parametrize("text", ["", "1", "yes", "True", "no"])
async def test_a_flag_is_true_or_false_and_nothing_else(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore, text: str
) -> None:
    # Was: "" (a bare ?dry_run) read as false -- a real sweep for someone asking for a
    # dry run -- and 1/yes/no accepted where the document says boolean.
    auth = bearer(mint(ADMIN))
    sqlite_store.asset_state("gone").set("k", 1)
    assert sqlite_store.deactivate_assets("gone") == 1
    for path in (wire.SWEEP, wire.CLEANUP):
        answer = await client.post(path, params={"dry_run": text}, headers=auth)
        assert answer.status_code == 422, path
        assert answer.json()["detail"] == f"dry_run must be true or false, not {text!r}"
    assert sqlite_store.backend.get_item(AssetScope(name="gone"), "k") is not None  # not swept
    listing = await client.get(wire.ASSETS, params={"active": text}, headers=auth)
    assert listing.status_code == 422
    dry = await client.post(wire.SWEEP, params={"dry_run": "true"}, headers=auth)
    assert dry.status_code == 200
    assert dry.json()["would_delete"] == 1
