"""``import statestore`` stays cheap: the heavy dependencies load only when used.

Code that only builds scopes and accessors over the in-memory (or any given) backend
must not import SQLAlchemy, Alembic, pydantic-settings, typer or rich. Each check runs
``python -X importtime`` in a fresh interpreter and reads which modules it loaded; it
fails on a forbidden module, never on time (docs/performance.md gives the figures).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

FORBIDDEN = ("sqlalchemy", "alembic", "pydantic_settings", "typer", "rich")


def _imported(code: str, *, argv: tuple[str, ...] | None = None) -> set[str]:
    """The top-level packages a fresh interpreter imports while running ``code``
    (or, with ``argv``, ``python -m <argv>``)."""
    run = ("-m", *argv) if argv is not None else ("-c", textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *run],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) > 20, done.stderr[-2000:]  # -X importtime did report
    names = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # [0] is the header
    assert "statestore" in names
    return {name.split(".")[0] for name in names}


def test_import_alone_loads_no_heavy_dependency() -> None:
    imported = _imported("import statestore")
    assert not imported & {*FORBIDDEN, "pydantic"}, sorted(imported)


def test_scopes_and_accessors_over_the_memory_backend_load_none() -> None:
    imported = _imported(
        """
        import statestore
        from statestore import AssetScope, InMemoryStateBackend, StateStore, TaskScope

        store = StateStore(backend=InMemoryStateBackend())
        state = store.task_state(TaskScope("dag", "run", "task"))
        state.set("k", {"n": 1})
        state["j"] = 2
        assert state.get("k") == {"n": 1} and state["j"] == 2 and len(state) == 2
        assert list(state.keys()) == ["j", "k"]
        assets = store.asset_states(inlets=[AssetScope(name="a")], outlets=["b"])
        assets["b"].set("watermark", 3)
        assert statestore.asset_state("b", store=store).get("watermark") == 3
        assert statestore.task_state("dag", "run", "task", store=store)["j"] == 2
        store.close()
        """
    )
    assert not imported & set(FORBIDDEN), sorted(imported & set(FORBIDDEN))


@pytest.mark.parametrize("name", ["StateStoreConfig", "MetastoreStateBackend"])
def test_lazy_names_still_resolve(name: str) -> None:
    # The lazy names are the real classes, importable as before.
    code = f"import statestore; from statestore import {name}; assert {name}.__name__ == {name!r}"
    assert "statestore" in _imported(code)


def test_the_command_tree_loads_no_database_layer() -> None:
    # `statestore --help` builds every command; none may pull in the metastore until it
    # runs (SQLAlchemy and Alembic took ~2 s of a 2.7 s --help before).
    imported = _imported(
        """
        from statestore.cli.app import app
        import typer.main

        assert typer.main.get_command(app).name
        """
    )
    assert "typer" in imported
    assert not imported & {"sqlalchemy", "alembic", "fastapi", "uvicorn"}, sorted(imported)


# What `statestore --help` and `--version` may not load: the database layer, the settings
# model (pydantic, whose plugin loader scans entry points), rich (typer's help renderer
# and its Markdown parser; plain help when stdout is not a terminal, as here), the server
# and client stacks. Together they took ~0.3 s of a 0.54-0.74 s --help.
HELP_FORBIDDEN = {
    "sqlalchemy", "alembic", "pydantic", "pydantic_core", "pydantic_settings", "rich",
    "markdown_it", "pygments", "fastapi", "starlette", "uvicorn", "jwt", "httpx",
}  # fmt: skip


@pytest.mark.parametrize("argv", [("--help",), ("--version",), ("task-state", "--help")])
def test_help_and_version_load_no_heavy_module(argv: tuple[str, ...]) -> None:
    imported = _imported("", argv=("statestore", *argv))
    assert "typer" in imported  # the command tree was built
    forbidden = set(HELP_FORBIDDEN)
    if len(argv) > 1:
        # Running the root callback on the way to a sub-command makes typer itself
        # (0.29's value coercion) import pydantic; only the root's help avoids it.
        forbidden -= {"pydantic", "pydantic_core"}
    assert not imported & forbidden, sorted(imported & forbidden)
