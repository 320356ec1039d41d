"""Every ```python block in README.md and docs/ runs, so no example can rot.

Blocks run in a fresh namespace each, in a temporary working directory. A block that is
deliberately not runnable on its own (an orchestrator's DAG, say) is written as
```text instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[Any]:
    found: list[Any] = []
    for path in FILES:
        for number, match in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8")), 1):
            line = path.read_text(encoding="utf-8")[: match.start()].count("\n") + 1
            found.append(
                pytest.param(match.group(1), id=f"{path.relative_to(ROOT)}:{line}#{number}")
            )
    return found


@pytest.mark.parametrize("code", _blocks())
def test_code_block_runs(code: str) -> None:
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})
