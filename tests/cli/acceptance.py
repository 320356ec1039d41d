"""The acceptance tier's runner: the installed ``statestore`` console script, for real.

Each acceptance test runs one behaviour of issue 18 (points 4-11) once, in a fresh
process, as a user's shell or a cron job would: the console script the package
installs (``python -m statestore`` where a test says so), stdin not a terminal
(``/dev/null``), a scrubbed environment, a given terminal width. Set-up and checks go
through the library in the test process, so each behaviour costs one subprocess
(~0.3 s for help, ~1 s for a command that opens SQLite). SQLite only: none of these
behaviours depends on the dialect (tests/cli/test_db_commands.py and
test_commands.py run the commands on every database).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Done", "Statestore", "statestore"]

SCRIPT = Path(sys.executable).with_name("statestore")


@dataclass(frozen=True)
class Done:
    """What a run left: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json_error(self) -> dict[str, Any]:
        """The ``--json`` error document on stderr (checked to be the only output)."""
        assert self.out == "", self.out
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err  # one line, no traceback
        payload: dict[str, Any] = json.loads(lines[0])
        assert payload["exit_code"] == self.code != 0
        return payload


class Statestore:
    """Runs ``statestore ARGS`` in a subprocess in ``cwd``; ``columns`` sets COLUMNS."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STATESTORE")}
        self.env.pop("COLUMNS", None)
        self.env.pop("LINES", None)

    def __call__(self, *args: str, columns: int | None = None, module: bool = False) -> Done:
        command = [sys.executable, "-m", "statestore"] if module else [str(SCRIPT)]
        env = dict(self.env)
        if columns is not None:
            env["COLUMNS"] = str(columns)
        done = subprocess.run(
            [*command, *args],
            stdin=subprocess.DEVNULL,  # not a terminal: what cron and CI give a command
            capture_output=True,
            text=True,
            env=env,
            cwd=self.cwd,
            timeout=120,
            check=False,
        )
        return Done(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def statestore(tmp_path: Path) -> Statestore:
    if not SCRIPT.is_file():  # pragma: no cover - an install without console scripts
        pytest.fail(f"no statestore console script beside {sys.executable}: pip install -e .")
    return Statestore(tmp_path)
