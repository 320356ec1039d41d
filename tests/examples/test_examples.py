"""Every script in examples/ runs and prints the lines that prove what it shows.

Each runs as ``sys.executable -W error examples/X.py [URL]`` in a temporary working
directory (the autouse fixture has removed ``STATESTORE*`` variables from the
environment the subprocess inherits), against a SQLite file there. The scripts check
their own outcome too; these tests check the narrated output, so a script that stops
showing its behaviour fails here even if it still exits 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from statestore.testing import AsyncBackendConformance, BackendConformance
from statestore.testing.batch_conformance import AsyncBatchConformance, BatchConformance
from statestore.testing.capabilities import AsyncCapabilityConformance, CapabilityConformance
from statestore.testing.mapping import MappingConformance

LISTING_MAPPING_TESTS = (
    "test_len_iter_and_views_follow_the_listing",
    "test_mapping_treats_expired_keys_as_absent",
)

VERSIONED_BATCH_TEST = "test_get_items_carry_versions_and_provenance"  # sync and async

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def check_external_job_id(out: str) -> None:
    submitted = re.search(r"^attempt 1: submitted (job-[0-9a-f]{8}), stored its id", out, re.M)
    assert submitted, out
    job = submitted[1]
    assert f"attempt 1: {job} is 25% done\nattempt 1: worker process died with exit code 1\n" in out
    assert f"attempt 2: resumed job {job} without resubmitting\n" in out
    assert f"attempt 2: {job} finished\n" in out
    assert f"jobs submitted to the cluster: 1 ({job})\n" in out
    assert "attempt 2: submitted" not in out


def check_checkpointing(out: str) -> None:
    assert "attempt 1 interrupted after item 13; rerunning\n" in out
    assert "attempt 2 starts at item 11 (checkpoint: 10 done)\n" in out
    assert "processed 30 distinct items in 33 steps\n" in out
    assert "processed twice: [11, 12, 13] (at most 4 with a checkpoint every 5)\n" in out


def check_incremental_load(out: str) -> None:
    runs = re.findall(r"^scheduled__(\S+): watermark (\S+) -> (\S+), loaded \[(.*)\]$", out, re.M)
    assert runs == [
        ("2026-11-21", "None", "2026-11-20T17:30", "'order-1', 'order-2'"),
        ("2026-11-22", "2026-11-20T17:30", "2026-11-21T08:15", "'order-3'"),
        ("2026-11-23", "2026-11-21T08:15", "2026-11-21T08:15", ""),  # nothing new
        ("2026-11-24", "2026-11-21T08:15", "2026-11-23T23:59", "'order-4', 'order-5'"),
    ], out
    assert "warehouse: 5 rows, 5 distinct\n" in out


def check_custom_backend(out: str) -> None:
    assert 'what the backend keeps: {"rows":1200,"status":"running"}\n' in out
    assert "asset state: watermark = 2026-11-24\n" in out
    # Every test of both suites ran against the dict backend: the required ones passed,
    # the optional capabilities it does not offer (versions, listing) were skipped, and
    # so were the two mapping tests that count and iterate (they need listing) and the
    # batch test of get_items, sync and async (it needs versions).
    suites = (BackendConformance, AsyncBackendConformance)
    optional = (CapabilityConformance, AsyncCapabilityConformance)
    total = sum(name.startswith("test_") for suite in suites for name in dir(suite))
    skipped = sum(name.startswith("test_") for suite in optional for name in dir(suite))
    skipped += len(LISTING_MAPPING_TESTS) + 2
    assert set(LISTING_MAPPING_TESTS) <= set(dir(MappingConformance))
    assert VERSIONED_BATCH_TEST in set(dir(BatchConformance)) & set(dir(AsyncBatchConformance))
    summary = rf"^{total - skipped} passed, {skipped} skipped in [\d.]+s$"
    assert re.search(summary, out, re.M), out


def check_async_worker(out: str) -> None:
    for partition in (0, 1, 3):
        assert f"round 1: partition {partition}: fetched pages 1-5\n" in out
    assert "round 1: partition 2: failed on page 3\n" in out
    assert "round 2 (retry): partition 2: fetched pages 3-5\n" in out
    assert "checkpoints by map index: [5, 5, 5, 5]\n" in out
    assert "after aclear(all_map_indices=True): [None, None, None, None]\n" in out
    assert re.search(r"^asset state: last_complete_run = run-[0-9a-f]{8}$", out, re.M), out
    assert "pages fetched: 20, distinct: 20\n" in out


def check_fork_pool(out: str) -> None:
    assert re.search(r"^parent \d+: watermark = 2026-11-30$", out, re.M), out
    assert "6 partitions in 3 forked workers: 0 wrong reads\n" in out
    assert "parent reads every partition's progress: [50, 50, 50, 50, 50, 50]\n" in out
    assert "parent: watermark = 2026-12-30\n" in out


def check_state_server_worker(out: str) -> None:
    assert "operator: key pair made (the server gets only the public key)\n" in out
    assert "operator: statestore serve is ready\n" in out
    job = "task spark_dag/run-2026-11-24/submit_job"
    assert f"operator: minted a 15-minute token for {job} writing 'orders'\n" in out
    for attempt, watermark in ((1, "1970-01-01"), (2, "2026-11-24")):
        worker = f"worker (attempt {attempt}):"
        # The worker's store is the HTTP backend: it has no database URL at all.
        assert re.search(
            rf"^{re.escape(worker)} StateStore\(HttpStateBackend\('http://127\.0\.0\.1:\d+'\)\)$",
            out,
            re.M,
        ), out
        assert f"{worker} job_id = job-42, watermark was {watermark}\n" in out
        assert f"{worker} another task's state: refused (AccessDeniedError)\n" in out
        assert f"{worker} an asset not granted: refused (AccessDeniedError)\n" in out
    assert (
        "database: job_id = 'job-42' (version 1), written by "
        "'task:spark_dag/run-2026-11-24/submit_job'; orders.watermark = '2026-11-24'\n"
    ) in out


# script -> (takes a database URL, the check of its output)
CHECKS: dict[str, tuple[bool, Callable[[str], None]]] = {
    "external_job_id.py": (True, check_external_job_id),
    "checkpointing.py": (True, check_checkpointing),
    "incremental_load.py": (True, check_incremental_load),
    "custom_backend.py": (False, check_custom_backend),
    "async_worker.py": (True, check_async_worker),
    "fork_pool.py": (True, check_fork_pool),
    "state_server_worker.py": (True, check_state_server_worker),
}


def test_every_example_is_covered() -> None:
    # orchestrator_*.py need their orchestrator: tests/integration/orchestrators runs them.
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("orchestrator_")}
    assert scripts == set(CHECKS)
    for path in EXAMPLES.glob("orchestrator_*.py"):
        runners = (ROOT / "tests" / "integration" / "orchestrators").glob("test_*.py")
        assert any(path.stem in r.read_text(encoding="utf-8") for r in runners), path.name
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name in CHECKS:
        assert f"python examples/{name}`" in readme, f"{name} missing from examples/README.md"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example(name: str, tmp_path: Path) -> None:
    takes_url, check = CHECKS[name]
    database = tmp_path / "state.db"
    args = [sys.executable, "-W", "error", str(EXAMPLES / name)]
    if takes_url:
        args.append(f"sqlite:///{database}")
    result = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    check(result.stdout)
    assert database.exists() is takes_url  # the URL given was the database used
    assert not (tmp_path / "statestore.db").exists()  # never the default ./statestore.db
