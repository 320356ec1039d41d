"""``statestore demo``: the seed's use cases, end to end, on the embedded SQLite default.

Everything runs for real — a SQLite file, the metastore backend, cleanup — in a
temporary directory unless ``--dir`` says otherwise. Each step checks its own outcome,
so a demo that prints "resumed" really did resume.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from statestore.cli.common import console, echo_json, plural, state_of
from statestore.retention import NEVER_EXPIRE, utcnow
from statestore.scopes import TaskScope
from statestore.store import StateStore

__all__ = ["demo"]

Say = Callable[[str], None]


class _StagedCrashError(Exception):
    """A staged failure: the 'worker' dies mid-task."""


def _check(condition: bool, failure: str) -> None:
    # Not `assert`: the demo's promises must hold under `python -O` too.
    if not condition:
        raise RuntimeError(f"demo check failed: {failure}")


def _say(json_out: bool, text: str) -> None:
    if not json_out:
        console.print(text)


def _external_job(store: StateStore, say: Say) -> dict[str, object]:
    scope = TaskScope("spark_job_dag", "run-1", "run_spark_job")
    submitted: list[str] = []

    def attempt(number: int, *, crash: bool) -> str:
        state = store.task_state(scope)
        job_id = state.get("job_id")
        if job_id is None:
            job_id = f"spark-job-{len(submitted) + 1}"
            submitted.append(job_id)
            state.set("job_id", job_id, retention=NEVER_EXPIRE)
            say(f"  attempt {number}: no job yet, submitted [bold]{job_id}[/]")
        else:
            say(f"  attempt {number}: found [bold]{job_id}[/] in task state, re-attached")
        if crash:
            raise _StagedCrashError
        return str(job_id)

    try:
        attempt(1, crash=True)
    except _StagedCrashError:
        say("  attempt 1: [red]worker crashed[/] while waiting for the job")
    job = attempt(2, crash=False)
    _check(submitted == [job], "the retry must not submit a second job")
    say(f"  attempt 2: job {job} finished — submitted once, not twice")
    return {"submitted": len(submitted), "job_id": job}


def _checkpoint(store: StateStore, say: Say) -> dict[str, object]:
    scope = TaskScope("paginated_ingest", "run-1", "ingest_pages")
    loaded: list[int] = []

    def attempt(crash_at: int | None) -> None:
        state = store.task_state(scope)
        start = state.get("last_page", 0) + 1
        say(f"  attempt starts at page {start}")
        for page in range(start, 11):
            if page == crash_at:
                raise _StagedCrashError
            loaded.append(page)
            state.set("last_page", page)

    try:
        attempt(crash_at=7)
    except _StagedCrashError:
        say("  [red]crashed[/] while loading page 7")
    attempt(crash_at=None)
    _check(loaded == list(range(1, 11)), f"pages loaded: {loaded}")
    say(f"  loaded pages {loaded[0]}..{loaded[-1]}, each exactly once")
    return {"pages_loaded": len(loaded)}


def _watermark(store: StateStore, say: Say) -> dict[str, object]:
    days = ["2026-11-21", "2026-11-22", "2026-11-23"]
    batches = {day: [f"order-{day}-{i}" for i in range(3)] for day in days}
    loaded: list[str] = []
    for run, day in enumerate(days, start=1):
        state = store.asset_state("orders")
        watermark = state.get("watermark", "")
        new = [o for d, orders in batches.items() if watermark < d <= day for o in orders]
        loaded.extend(new)
        state.set("watermark", day)
        say(f"  run {run}: watermark {watermark or '(none)'} -> {day}, loaded {len(new)} rows")
    _check(len(loaded) == len(set(loaded)) == 9, f"rows loaded: {loaded}")
    return {"watermark": store.asset_state("orders").get("watermark"), "rows": len(loaded)}


def _retention(store: StateStore, say: Say) -> dict[str, object]:
    state = store.task_state(TaskScope("row_ingest", "run-1", "ingest_rows"))
    state.set("progress", {"rows": 1200, "status": "done"}, retention=timedelta(hours=6))
    state.set("job_id", "spark-job-1", retention=NEVER_EXPIRE)
    later = utcnow() + timedelta(hours=7)
    from statestore.cleanup import cleanup  # noqa: PLC0415 - SQLAlchemy on use

    report = cleanup(store, now=later)
    say(f"  7 hours later, cleanup deleted {plural(report.deleted, 'expired key')}")
    _check(state.get("job_id") == "spark-job-1", "NEVER_EXPIRE key must survive cleanup")
    say("  the NEVER_EXPIRE job id is still there")
    return {"deleted": report.deleted, "kept": state.get("job_id")}


# Every scope the story writes: a second run in the same folder clears them first.
_TASKS = (
    TaskScope("spark_job_dag", "run-1", "run_spark_job"),
    TaskScope("paginated_ingest", "run-1", "ingest_pages"),
    TaskScope("row_ingest", "run-1", "ingest_rows"),
)
_ASSETS = ("orders",)


def _start_fresh(store: StateStore) -> None:
    for scope in _TASKS:
        store.task_state(scope).clear()
    store.activate_assets(*_ASSETS)  # a reader may have tried `assets deactivate orders`
    for name in _ASSETS:
        store.asset_state(name).clear()


def _hints(url: str) -> list[str]:
    """The commands that show what the demo left behind."""
    base = f"statestore --url '{url}'"
    return [
        f"{base} task-state list --dag spark_job_dag",
        f"{base} task-state list --dag row_ingest --run run-1",
        f"{base} asset-state list --asset orders",
        f"{base} assets list",
        f"{base} cleanup --dry-run",
    ]


def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", metavar="DIR", help="Keep the demo database here (default: a temp dir)."
        ),
    ] = None,
) -> None:
    """Run the use cases end to end on an embedded SQLite database, narrating them.

    With --dir the database (DIR/demo.db) is kept, and a second run in the same
    folder starts the story fresh: it clears the demo's own keys first and says so.
    """
    json_out = state_of(ctx).json

    def say(text: str) -> None:
        _say(json_out, text)

    with tempfile.TemporaryDirectory(prefix="statestore-demo-") as tmp:
        where = directory or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        path = (where / "demo.db").absolute()  # the hints must work from any folder
        again = path.exists()
        url = f"sqlite:///{path}"
        from statestore.config import StateStoreConfig  # noqa: PLC0415 - pydantic: not for --help

        config = StateStoreConfig(database={"url": url})
        results: dict[str, object] = {"database": url, "fresh_start": again}
        with StateStore(config=config) as store:
            steps = [
                ("external_job", "1. An external job id survives a crash", _external_job),
                ("checkpoint", "2. A long loop checkpoints and resumes", _checkpoint),
                ("watermark", "3. An incremental load keeps a watermark", _watermark),
                ("retention", "4. Retention, NEVER_EXPIRE and cleanup", _retention),
            ]
            say(f"[bold]statestore demo[/] on {url}\n")
            if again:
                _start_fresh(store)
                say("demo.db is there from an earlier run: starting the story fresh\n")
            for name, title, step in steps:
                say(f"[bold cyan]{title}[/]")
                results[name] = step(store, say)
                say("")
        if directory is not None:
            results["inspect"] = _hints(url)
        if json_out:
            echo_json(results)
            return
        console.print("[green]All four use cases behaved as promised.[/]")
        if directory is None:
            console.print(
                "\nThe database was in a temporary folder and is gone; keep it with --dir DIR."
            )
            return
        console.print(f"\nThe database is kept at {path}. See what the demo left behind:")
        for line in _hints(url):
            console.print(f"  {line}", soft_wrap=True)
