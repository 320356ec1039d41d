"""The web UI in a real browser: Playwright driving the distribution's Chromium
(``/usr/bin/chromium``, launched by path) against a real ``create_app`` server process
on SQLite and PostgreSQL.

One walk-through per database: log in (by keyboard), browse to a key, edit it while a
second client changes it through the HTTP API (the conflict page shows the newer
value), save again, delete, clear, log out; then a task token is refused another
task's state, with nothing of it in the page. Every page gets a screenshot (a temp
dir; ``STATESTORE_TEST_UI_SCREENSHOTS=<dir>`` keeps them, e.g. ``docs/images``), is checked
for CSP violations and script errors, and is run through axe-core when it can be had
(``npm install axe-core`` into a cache outside the repository, at test time).

Locally the module skips without playwright or chromium; in CI (``CI=true``) it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import time_machine
from sqlalchemy.engine import make_url

from statestore import StateStore, TaskScope, wire
from statestore.metastore import upgrade
from statestore.server import Grant
from tests.integration import conftest as databases
from tests.integration.http_server import ServerProcess, start_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("STATESTORE_TEST_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
AXE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "statestore-axe"
TASK_A = TaskScope("etl/daily", "run 2026-11-24", "submit_job")
TASK_B = TaskScope("etl/daily", "run 2026-11-24", "load_orders")


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"browser tests need {reason} in CI")
    pytest.skip(f"no {reason}", allow_module_level=True)


try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    _unavailable("playwright (pip install playwright)")
if not Path(CHROMIUM).is_file():  # pragma: no cover
    _unavailable(f"chromium at {CHROMIUM} (apt-get install chromium)")


def _axe_source() -> str | None:
    """axe-core's script, installed from npm into a cache dir the first time."""
    script = AXE_CACHE / "node_modules" / "axe-core" / "axe.min.js"
    if not script.is_file() and shutil.which("npm"):
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix",
             str(AXE_CACHE), "axe-core@4"],
            check=False, capture_output=True, timeout=120,
        )  # fmt: skip
    return script.read_text() if script.is_file() else None


@pytest.fixture(scope="module")
def axe() -> str | None:
    source = _axe_source()
    if source is None and IN_CI:
        pytest.fail("axe-core could not be installed from npm (npm install axe-core)")
    return source


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real server process on a migrated database holding the walk-through's state."""
    dialect = str(request.param)
    workdir = tmp_path_factory.mktemp(f"ui-{dialect}")
    databases_server = None
    if dialect == "sqlite":
        url = make_url(f"sqlite:///{workdir / 'state.db'}")
    else:
        databases_server = databases._server(dialect)
        url = databases_server.create()
    upgrade(url)
    text_url = url.render_as_string(hide_password=False)
    with StateStore(text_url, updated_by="worker") as store:
        a = store.task_state(TASK_A)
        a.set("job_id", {"id": "spark-42", "cluster": "c-7", "attempts": [1, 2]})
        a.set("progress", {"done": 120, "of": 400}, retention=timedelta(hours=6))
        a.set("checkpoints", [{"offset": n, "ok": True} for n in range(300)])
        store.task_state(TASK_B).set("secret_offset", "value-of-task-b")
        with time_machine.travel(datetime.now(timezone.utc) - timedelta(days=2)):
            # expired a day ago, not cleaned up yet: marked in lists, listed by the dry run
            a.set("lock", "worker-3", retention=timedelta(days=1))
            store.task_state(TaskScope("reports", "run 2026-11-22", "pdf")).set(
                "render_job", "pdf-7", retention=timedelta(hours=6)
            )
        store.asset_state("orders").set("watermark", "2026-11-24")
        store.asset_state("customers").set("cursor", {"page": 17})
        for dag, task in (("billing/monthly", "invoice"), ("ml/train", "fit"), ("reports", "pdf")):
            store.task_state(TaskScope(dag, "run 2026-11-24", task)).set("job_id", f"{task}-1")
        for index in range(3):
            mapped = TaskScope(TASK_A.dag_id, TASK_A.run_id, TASK_A.task_id, index)
            store.task_state(mapped).set("partition", index)
    served = start_server(text_url, workdir)
    try:
        yield served
    finally:
        served.stop()
        if databases_server is not None:
            databases_server.drop(url)


@dataclass
class Shots:
    """Screenshots of every page, and what each page's checks found."""

    folder: Path
    axe: str | None
    problems: list[str] = field(default_factory=list)
    keep: bool = False
    pages: bool = True
    """Screenshots and axe on this run (SQLite's): the pages are the same HTML on every
    database, so the PostgreSQL run checks behaviour only and stays quick."""

    def take(self, page: Page, name: str) -> None:
        if not self.pages:
            return
        page.screenshot(path=str(self.folder / f"ui-{name}.png"), full_page=False)
        if self.axe is not None:
            page.evaluate(self.axe + "\n;undefined")  # evaluated by the driver: not CSP-bound
            found: list[dict[str, Any]] = page.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']}))"
                ".violations.filter(v => v.impact === 'serious' || v.impact === 'critical')"
                ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.html)}))"
            )
            self.problems.extend(f"{name}: axe {v['id']} ({v['impact']}): {v['nodes'][:3]}"
                                 for v in found)  # fmt: skip


@pytest.fixture
def shots(server: ServerProcess, axe: str | None, tmp_path: Path) -> Shots:
    keep = os.environ.get("STATESTORE_TEST_UI_SCREENSHOTS")
    is_sqlite = server.log.parent.name.startswith("ui-sqlite")
    folder = Path(keep) if keep and is_sqlite else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return Shots(folder, axe, keep=bool(keep), pages=is_sqlite)


def open_page(browser: Browser, problems: list[str], width: int = 1280) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    # A page answered 403/404/409 on purpose logs "Failed to load resource": a failed
    # stylesheet, script or icon is caught by its response instead.
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") and "Failed to load resource" not in m.text
            else None)  # fmt: skip
    page.on("response", lambda r: problems.append(f"{r.status} for {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)  # fmt: skip
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    return page


def log_in(page: Page, server: ServerProcess, token: str, shots: Shots | None = None) -> None:
    page.goto(server.url + "/ui/")
    assert "/ui/login" in page.url
    page.keyboard.press("Tab")  # the first stop is the skip link: keyboard users come first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.focus("#token")
    page.keyboard.insert_text(token)
    if shots is not None:
        shots.take(page, "login")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the Log in button, by keyboard
    page.wait_for_url(server.url + "/ui/")


def api_put(server: ServerProcess, scope: TaskScope, key: str, body: bytes) -> None:
    answer = httpx.put(
        server.url + wire.TASK_KEY, params=wire.key_params(scope, key), content=body,
        headers={"Authorization": f"Bearer {server.admin_token()}"},
    )  # fmt: skip
    assert answer.status_code == 204, answer.text


def test_admin_walks_through_browse_edit_conflict_delete_clear_logout(
    browser: Browser, server: ServerProcess, shots: Shots
) -> None:
    page = open_page(browser, shots.problems)
    log_in(page, server, server.admin_token(), shots)
    assert page.locator("h1").inner_text() == "DAGs"
    shots.take(page, "dags")
    page.get_by_role("link", name="etl/daily").click()
    assert page.locator("h1").inner_text() == "Runs of etl/daily"
    page.get_by_role("link", name="run 2026-11-24").click()
    shots.take(page, "tasks")
    page.get_by_role("link", name="submit_job").click()
    shots.take(page, "instances")
    page.get_by_role("link", name="not mapped (-1)").click()
    table = page.locator("table").inner_text()
    assert table.count("worker") == 4  # each key's writer
    assert "expired" in table
    shots.take(page, "keys")
    page.get_by_role("link", name="job_id").click()
    value = page.locator("pre.value").inner_text()
    assert '"id": "spark-42"' in value
    shots.take(page, "key")
    for _ in range(40):  # by keyboard alone: Tab reaches the value, then Edit
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Edit":
            break
    else:
        raise AssertionError("Tab never reached the Edit button")

    page.keyboard.press("Enter")  # follows the focused Edit link
    editor = page.locator("textarea#value")
    editor.fill('{"id": "spark-43"}')
    assert "Valid JSON" in page.locator("#value-validity").inner_text()  # the script's hint
    shots.take(page, "edit")
    # A second client changes the key between opening the editor and saving.
    api_put(server, TASK_A, "job_id", b'{"id": "spark-99", "by": "the worker"}')
    page.get_by_role("button", name="Save").click()
    assert "Not saved" in page.locator("h1").inner_text()
    newer = page.locator("#newer-value").inner_text()
    assert '"spark-99"' in newer
    assert '"spark-43"' in page.locator("#mine").inner_text()
    shots.take(page, "conflict")
    page.get_by_role("button", name="Save over version 2").click()
    assert page.get_by_role("status").inner_text() == "The value was saved."
    assert '"spark-43"' in page.locator("pre.value").inner_text()
    stored = httpx.get(
        server.url + wire.TASK_KEY, params=wire.key_params(TASK_A, "job_id"),
        headers={"Authorization": f"Bearer {server.admin_token()}"},
    )  # fmt: skip
    assert (stored.json(), stored.headers["etag"]) == ({"id": "spark-43"}, '"3"')

    page.get_by_role("link", name="Delete…").click()
    shots.take(page, "delete")
    page.get_by_role("button", name="Delete the key").click()
    assert page.get_by_role("status").inner_text() == "The key was deleted."
    assert page.get_by_role("link", name="job_id").count() == 0
    page.get_by_role("link", name="checkpoints").click()
    assert "KiB of JSON" in page.locator("summary").inner_text()  # a large value, folded
    page.go_back()

    page.get_by_role("link", name="Clear this task instance…").click()
    shots.take(page, "clear")
    page.get_by_role("button", name="Clear this task instance").click()
    assert page.get_by_role("status").inner_text() == "The task instance's state was cleared."
    assert "No keys." in page.locator("main").inner_text()

    page.get_by_role("link", name="Assets").click()
    page.get_by_role("link", name="orders").click()
    shots.take(page, "asset")
    page.get_by_role("link", name="Cleanup").click()
    page.get_by_role("button", name="Run a dry run").click()
    assert "1 expired key would be deleted" in page.get_by_role("status").inner_text()
    assert page.get_by_role("link", name="render_job").count() == 1
    shots.take(page, "cleanup")

    page.get_by_role("link", name="Overview").click()
    for _ in range(50):  # the complete overview is computed behind the first answer
        if page.locator('[data-total="bytes"]').count():
            break
        page.wait_for_timeout(100)
        page.reload()
    keys = int(page.locator('[data-total="keys"]').inner_text())
    live = httpx.get(
        f"{server.url}{wire.TASK_STATE}", params=wire.scope_params(TASK_B),
        headers={"Authorization": f"Bearer {server.admin_token()}"},
    ).json()["items"]  # fmt: skip
    assert keys >= len(live) > 0  # every key of the database, TASK_B's among them
    assert page.locator('svg[role="img"]').count() >= 2  # charts drawn on the server
    shots.take(page, "overview")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + "/ui/task/key?" + httpx.QueryParams(
        {**wire.scope_params(TASK_B), "key": "secret_offset"}).__str__())  # fmt: skip
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    shots.take(page, "key-390")
    page.get_by_role("button", name="Log out").click()
    assert "/ui/login" in page.url
    assert "Logged out" in page.locator("main").inner_text()
    page.goto(server.url + "/ui/")
    assert "/ui/login" in page.url  # the cookie is gone
    page.context.close()
    assert shots.problems == []


def test_a_task_token_cannot_see_another_tasks_state(
    browser: Browser, server: ServerProcess, shots: Shots
) -> None:
    grant = Grant("task:load_orders", task=TASK_B, write_assets=frozenset({"orders"}))
    page = open_page(browser, shots.problems)
    log_in(page, server, server.token(grant))
    assert "task etl/daily/run 2026-11-24/load_orders" in page.locator("main").inner_text()
    shots.take(page, "task-token")
    other = httpx.QueryParams(wire.scope_params(TASK_A))
    page.goto(f"{server.url}/ui/task?{other}")
    text = page.locator("body").inner_text()
    assert "Refused: AccessDeniedError" in text
    for secret in ("spark", "job_id", "progress", "checkpoints"):
        assert secret not in page.content()
    shots.take(page, "refused")
    page.goto(f"{server.url}/ui/task?{httpx.QueryParams(wire.scope_params(TASK_B))}")
    assert "value-of-task-b" not in page.content()  # a list shows keys, not values
    assert page.get_by_role("link", name="secret_offset").count() == 1
    page.goto(f"{server.url}/ui/runs?dag_id=etl%2Fdaily")
    assert "this page needs an admin token" in page.locator("main").inner_text()
    page.context.close()
    assert shots.problems == []


def test_everything_works_without_javascript(browser: Browser, server: ServerProcess) -> None:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 800}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(server.url + "/ui/")
    page.fill("#token", server.admin_token())
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="reports").click()
    page.get_by_role("link", name="run 2026-11-24").click()
    page.get_by_role("link", name="pdf").click()
    page.get_by_role("link", name="not mapped (-1)").click()
    page.get_by_role("link", name="job_id").click()
    page.get_by_role("link", name="Edit").click()
    assert page.locator("#value-validity").inner_text() == ""  # no script: no hint
    page.fill("textarea#value", '{"job": "pdf-2"}')
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("status").inner_text() == "The value was saved."
    assert '"job": "pdf-2"' in page.locator("pre.value").inner_text()
    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("button", name="Delete the key").click()
    assert page.get_by_role("status").inner_text() == "The key was deleted."
    page.get_by_role("button", name="Log out").click()
    assert "Logged out" in page.locator("main").inner_text()
    context.close()
