"""Every ```python block in README.md and docs/ runs, so no example can rot.

Blocks run in a fresh namespace each, in a temporary working directory. A block that is
deliberately not runnable on its own is written as ```text instead. A block that only
includes files (``--8<-- "examples/x.py"``, an orchestrator's pipeline, say) is not run
here: the included file must exist and be run by a test of its own, which this checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$')
TESTS = ROOT / "tests"


def _blocks() -> list[Any]:
    found: list[Any] = []
    for path in FILES:
        for number, match in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8")), 1):
            line = path.read_text(encoding="utf-8")[: match.start()].count("\n") + 1
            found.append(
                pytest.param(match.group(1), id=f"{path.relative_to(ROOT)}:{line}#{number}")
            )
    return found


def _included_files(code: str) -> list[str] | None:
    """The files a block only includes, or None for a block of real code."""
    lines = [line.strip() for line in code.splitlines() if line.strip()]
    matches = [SNIPPET.match(line) for line in lines]
    if not lines or not all(matches):
        return None
    return [match[1] for match in matches if match]


def _tests_naming(name: str) -> list[Path]:
    return [path for path in TESTS.rglob("test_*.py") if name in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("code", _blocks())
def test_code_block_runs(code: str) -> None:
    included = _included_files(code)
    if included is not None:
        for relative in included:
            assert (ROOT / relative).is_file(), f"{relative} is included but does not exist"
            name = Path(relative).name
            assert _tests_naming(name), f"{relative} is shown in the docs but no test runs it"
        return
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})
