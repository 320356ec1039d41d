"""The client's cheap request building is the same request the plain way builds.

``http_messages.build_request`` skips work httpx would repeat on every request (parsing
the server's URL, escaping ids that need no escaping, building the fixed headers); each
shortcut must give exactly what the long way gives, for any id, key and server URL.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from statestore import wire
from statestore.backends import http_messages as messages
from statestore.scopes import AssetScope, TaskScope

SERVERS = [
    "http://127.0.0.1:8000",
    "https://state.internal",
    "https://state.internal:8443/prefix/state",
    "http://[::1]:9000",
    "http://localhost",
]
TEXT = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), min_size=1, max_size=40)


@given(st.dictionaries(st.sampled_from(["dag_id", "key", "name", "a b", "ü"]), TEXT))
def test_the_query_is_what_urlencode_makes(params: dict[str, str]) -> None:
    assert messages.encode_query(params) == urlencode(params, quote_via=quote, safe="")


@pytest.mark.parametrize("server", SERVERS)
@given(dag=TEXT, key=TEXT)
def test_the_url_is_what_parsing_the_whole_text_gives(server: str, dag: str, key: str) -> None:
    call = messages.get_call(TaskScope(dag, "run/1", "t", map_key="€"), key)
    query = messages.encode_query(call.params)
    built = messages.build_request(server, call, "token", 5.0).url
    parsed = httpx.URL(f"{server}{call.path}?{query}")
    assert built == parsed
    assert (built.raw_path, built.host, built.port, built.scheme) == (
        parsed.raw_path, parsed.host, parsed.port, parsed.scheme,
    )  # fmt: skip


@pytest.mark.parametrize("server", SERVERS)
def test_the_short_way_is_taken_with_this_httpx(server: str) -> None:
    assert messages._urls(server)._fast  # if this fails, httpx changed: URLs still work


def test_a_url_without_query_and_the_long_way_agree() -> None:
    urls = messages._Urls("https://state.internal/p")
    fast = urls.url(wire.ASSETS, "")
    urls._fast = False
    assert fast == urls.url(wire.ASSETS, "") == httpx.URL("https://state.internal/p/api/v1/assets")
    assert "?" not in str(fast)


def test_headers_are_the_fixed_ones_the_call_s_and_the_token() -> None:
    scope = AssetScope(name="orders")
    put = messages.set_call(scope, "k", '{"a":1}', expires_at=None, if_version=3)
    request = messages.build_request("http://h", put, "tok-1", 2.5)
    assert dict(request.headers) == {
        "host": "h", "accept": "application/json", "user-agent": "statestore-http-backend",
        "authorization": "Bearer tok-1", "content-type": "application/json",
        "if-match": '"3"', "idempotency-key": put.headers["Idempotency-Key"],
        "content-length": "7",
    }  # fmt: skip
    assert request.content == b'{"a":1}'
    assert request.extensions["timeout"] == httpx.Timeout(2.5).as_dict()
    # the cached fixed headers are not changed by a call's own
    get = messages.build_request("http://h", messages.get_call(scope, "k"), "tok-1", 1.0)
    assert "if-match" not in get.headers
    assert "idempotency-key" not in get.headers
    assert "content-type" not in get.headers
    renewed = messages.build_request("http://h", messages.get_call(scope, "k"), "tok-2", 1.0)
    assert renewed.headers["authorization"] == "Bearer tok-2"
