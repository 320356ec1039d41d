"""Every test the Guarantees page names exists, so no promise points at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_named_test_exists() -> None:
    page = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_\w+)`", page))
    sources = [*ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("src").rglob("*.py")]
    defined = set()
    for source in sources:
        defined |= set(re.findall(r"def (test_\w+)\(", source.read_text(encoding="utf-8")))
    assert len(named) > 20
    assert sorted(named - defined) == []
