"""CLI tests run the real ``statestore`` command in a subprocess, on real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.conftest import db_url, dialect, migrated_url, pytest_sessionfinish

__all__ = ["Cli", "cli", "db_url", "dialect", "migrated_url", "pytest_sessionfinish"]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``python -m statestore …`` with a scrubbed environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "statestore", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli() -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE")}
    return Cli(env)
