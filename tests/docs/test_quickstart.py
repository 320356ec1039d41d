"""The quick start's snippets can be pasted twice: each block, run again in the same
directory (its SQLite file kept), passes again. Its install step names the checkout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "quickstart.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_the_quick_start_has_python_blocks() -> None:
    assert len(BLOCK.findall(PAGE.read_text(encoding="utf-8"))) >= 4


@pytest.mark.parametrize("number", range(len(BLOCK.findall(PAGE.read_text(encoding="utf-8")))))
def test_each_block_runs_twice_in_one_directory(number: int) -> None:
    code = BLOCK.findall(PAGE.read_text(encoding="utf-8"))[number]
    for run in (1, 2):  # the autouse fixture gives one temporary working directory
        exec(
            compile(code, f"<quickstart block {number + 1}, run {run}>", "exec"),
            {"__name__": "__docs__"},
        )


def test_install_is_from_a_checkout_not_the_index() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert "not on the public package index" in text
    assert "pip install -e ." in text
    assert not re.search(r"^pip install statestore\b", text, re.M)
