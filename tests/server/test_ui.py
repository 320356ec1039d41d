"""The web UI in process (httpx.ASGITransport): login, cookie, CSRF, headers, read-only.

Pages are checked by what they contain (and, for other scopes, by what they must not);
the real-browser walk-through is tests/server/test_ui_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from statestore import StateStore, TaskScope
from statestore.server import create_app
from tests.server.conftest import ADMIN, Keys, Mint, task_grant

BASE = "http://statestore"
TASK = TaskScope("d", "r", "t")


@pytest.fixture
async def ui(sqlite_store: StateStore, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def login(client: httpx.AsyncClient, token: str) -> str:
    """Log in; return the CSRF value of the session (from a page's form)."""
    answer = await client.post("/ui/login", data={"token": token, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/"
    home = await client.get("/ui/")
    assert home.status_code == 200
    return csrf_of(home.text)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def test_pages_need_a_login(ui: httpx.AsyncClient) -> None:
    answer = await ui.get("/ui/")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2F&reason=session"
    form = await ui.get(answer.headers["location"])
    assert form.status_code == 200
    assert 'name="token"' in form.text
    assert "Log in with a token" in form.text


async def test_login_sets_a_strict_httponly_cookie(ui: httpx.AsyncClient, mint: Mint) -> None:
    token = mint(ADMIN)
    answer = await ui.post("/ui/login", data={"token": token, "next": "/ui/"})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"statestore_ui={token};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # served over http here; over https it is Secure


async def test_login_over_https_sets_a_secure_cookie(
    sqlite_store: StateStore, keys: Keys, mint: Mint
) -> None:
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://statestore") as client:
        answer = await client.post("/ui/login", data={"token": mint(ADMIN)})
    assert "Secure" in answer.headers["set-cookie"]


async def test_a_bad_token_is_refused_with_the_reason(ui: httpx.AsyncClient, mint: Mint) -> None:
    answer = await ui.post("/ui/login", data={"token": "not-a-token"})
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert "the token is not valid" in answer.text


async def test_login_never_redirects_off_the_ui(ui: httpx.AsyncClient, mint: Mint) -> None:
    for target in ("https://evil.example/", "//evil.example/ui", "/ui//evil.example"):
        answer = await ui.post("/ui/login", data={"token": mint(ADMIN), "next": target})
        assert answer.headers["location"] == "/ui/", target


async def test_the_login_page_shows_no_text_from_the_link(ui: httpx.AsyncClient) -> None:
    answer = await ui.get("/ui/login", params={"reason": "Paste your token at evil.example"})
    assert "evil.example" not in answer.text


async def test_security_headers_on_every_page(ui: httpx.AsyncClient, mint: Mint) -> None:
    await login(ui, mint(ADMIN))
    for path in ("/ui/", "/ui/login"):
        headers = (await ui.get(path)).headers
        csp = headers["content-security-policy"]
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"


async def test_static_files_come_from_the_package(ui: httpx.AsyncClient) -> None:
    css = await ui.get("/ui/static/ui.css")
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert b"--accent" in css.content
    js = await ui.get("/ui/static/ui.js")
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await ui.get("/ui/static/..%2Fsession.py")).status_code == 404
    assert (await ui.get("/ui/static/session.py")).status_code == 404


async def test_logout_needs_the_csrf_token(ui: httpx.AsyncClient, mint: Mint) -> None:
    csrf = await login(ui, mint(ADMIN))
    refused = await ui.post("/ui/logout", data={"csrf": "0" * 64})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert (await ui.get("/ui/")).status_code == 200  # still logged in
    other_site = await ui.post(
        "/ui/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    assert "another origin" in other_site.text
    cross = await ui.post(
        "/ui/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    done = await ui.post("/ui/logout", data={"csrf": csrf}, headers={"Origin": BASE})
    assert done.status_code == 303
    assert 'statestore_ui=""' in done.headers["set-cookie"]
    assert (await ui.get("/ui/")).status_code == 303  # logged out


async def test_a_task_token_logs_in_too(ui: httpx.AsyncClient, mint: Mint) -> None:
    await login(ui, mint(task_grant()))
    page = await ui.get("/ui/")
    assert "task:task_a" in page.text
    assert "task token" in page.text


def test_serve_read_only_builds_a_read_only_app(
    monkeypatch: pytest.MonkeyPatch, keys: Keys, tmp_path: Path
) -> None:
    from statestore.cli import server_cmds

    monkeypatch.setenv("STATESTORE_SERVE_URL", f"sqlite:///{tmp_path / 'ro.db'}")
    monkeypatch.setenv("STATESTORE_SERVE_PUBLIC_KEY_FILE", str(keys.public_file))
    for value, expected in (("1", True), ("", False)):
        monkeypatch.setenv("STATESTORE_SERVE_READ_ONLY", value)
        app = server_cmds.app_from_environment()
        assert app.state.statestore.read_only is expected
        app.state.statestore.store.close()


def test_serve_has_a_read_only_flag() -> None:
    from typer.testing import CliRunner

    from statestore.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--read-only" in result.output


async def test_behind_a_root_path(sqlite_store: StateStore, keys: Keys, mint: Mint) -> None:
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    transport = httpx.ASGITransport(app=app, root_path="/state")
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        first = await client.get("/state/ui/assets?prefix=o")
        assert first.status_code == 303
        login_url = first.headers["location"]
        assert login_url.startswith("/state/ui/login?next=%2Fui%2Fassets%3Fprefix%3Do")
        form = await client.get(login_url)
        assert 'action="/state/ui/login"' in form.text
        assert 'href="/state/ui/static/ui.css"' in form.text
        answer = await client.post(
            "/state/ui/login", data={"token": mint(ADMIN), "next": "/ui/assets?prefix=o"}
        )
        assert answer.headers["location"] == "/state/ui/assets?prefix=o"
        assert "Path=/state/ui" in answer.headers["set-cookie"]
        page = await client.get("/state/ui/assets")
        assert page.status_code == 200
        assert 'href="/state/ui/"' in page.text


async def test_an_unknown_page_is_a_page(ui: httpx.AsyncClient, mint: Mint) -> None:
    await login(ui, mint(ADMIN))
    answer = await ui.get("/ui/no-such-page")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "/ui/no-such-page: Not Found" in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    api = await ui.get("/api/v1/no-such-route")
    assert api.headers["content-type"] == "application/problem+json"


_PAGES = ["/ui/", "/ui/runs", "/ui/tasks", "/ui/instances", "/ui/task", "/ui/task/key",
          "/ui/task/key/edit", "/ui/task/key/delete", "/ui/task/clear", "/ui/assets",
          "/ui/asset", "/ui/asset/key", "/ui/asset/deactivate", "/ui/cleanup",
          "/ui/search"]  # fmt: skip
_FIELDS = ["dag_id", "map_index", "map_key", "key", "name", "prefix", "after", "after_index",
           "after_key", "after_dag", "run", "dry_run", "all_map_indices", "q", "what", "task",
           "after_row"]  # fmt: skip


async def test_hostile_query_values_are_refused_never_a_500(
    ui: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    """Every page and field with NUL, over-long, non-numeric and out-of-range values:
    a typed 4xx page (or the page itself), never a server error."""
    sqlite_store.task_state(TASK).set("k", 1)
    await login(ui, mint(ADMIN))
    base = {"dag_id": "d", "run_id": "r", "task_id": "t", "key": "k", "name": "a"}
    for path in _PAGES:
        for name in _FIELDS:
            for value in ("\x00", "x" * 3000, "-5", "99999999999999999999", "abc"):
                answer = await ui.get(path, params={**base, name: value})
                assert answer.status_code < 500, (path, name, value, answer.text[:300])


async def test_origin_check_behind_a_proxy(ui: httpx.AsyncClient, mint: Mint) -> None:
    csrf = await login(ui, mint(ADMIN))
    cases = [
        ("state.internal", "https://state.internal", True),  # nginx's $host: no port
        ("state.internal", "https://state.internal:8443", True),  # name only, then
        ("state.internal:8443", "https://state.internal:8443", True),
        ("state.internal:443", "https://state.internal", True),  # the default port
        ("state.internal:8443", "https://state.internal:9443", False),
        ("state.internal", "https://evil.example", False),
        ("state.internal", "https://state.internal.evil.example", False),
        ("state.internal", "null", False),
    ]
    for host, origin, allowed in cases:
        answer = await ui.post(
            "/ui/task/clear", params={"dag_id": "d", "run_id": "r", "task_id": "t"},
            data={"csrf": csrf}, headers={"Host": host, "Origin": origin},
        )  # fmt: skip
        assert (answer.status_code == 303) is allowed, (host, origin, answer.status_code)


async def test_secure_cookie_behind_a_tls_proxy(ui: httpx.AsyncClient, mint: Mint) -> None:
    answer = await ui.post(
        "/ui/login", data={"token": mint(ADMIN)}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "Secure" in answer.headers["set-cookie"]
