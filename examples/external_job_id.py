"""An external job id survives a worker crash and a retry.

Attempt 1 runs in a child process: it submits a (simulated) job, stores the job id in
task state, polls once and then dies on the spot (``os._exit(1)``: no exception, no
cleanup, like a killed worker). Attempt 2, in this process, finds the id and resumes
polling that job instead of submitting a second one.

Run it (default database: a SQLite file in a temporary directory)::

    python examples/external_job_id.py [DATABASE_URL]

A server database must be migrated first: ``statestore --url DATABASE_URL db upgrade``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from statestore import NEVER_EXPIRE, StateStore, TaskScope


class FakeCluster:
    """Stands in for Spark, EMR, ...: a job is a file, so it outlives the worker process."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def submit(self) -> str:
        job_id = f"job-{uuid.uuid4().hex[:8]}"
        (self.root / job_id).write_text("0")
        return job_id

    def poll(self, job_id: str) -> int:
        """Percent done; each poll advances the job by 25 points."""
        done = min(int((self.root / job_id).read_text()) + 25, 100)
        (self.root / job_id).write_text(str(done))
        return done


def attempt(number: int, url: str, run_id: str, cluster: FakeCluster) -> None:
    with StateStore(url) as store:
        state = store.task_state(TaskScope("spark_dag", run_id, "run_job"))
        job_id = state.get("job_id")
        if job_id is None:  # first attempt: submit, and remember the job across retries
            job_id = cluster.submit()
            state.set("job_id", job_id, retention=NEVER_EXPIRE)
            print(f"attempt {number}: submitted {job_id}, stored its id in task state")
        else:
            print(f"attempt {number}: resumed job {job_id} without resubmitting")
        while (done := cluster.poll(job_id)) < 100:
            print(f"attempt {number}: {job_id} is {done}% done", flush=True)
            if number == 1:
                os._exit(1)  # the worker dies mid-poll: nothing is flushed or closed
        print(f"attempt {number}: {job_id} finished")


def database_url(tmp: str) -> str:
    """argv[1], else $STATESTORE__DATABASE__URL, else a SQLite file in ``tmp``."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("STATESTORE__DATABASE__URL", f"sqlite:///{Path(tmp) / 'example.db'}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url(tmp)
        print(f"database: {make_url(url)!r}")
        cluster, run_id = FakeCluster(Path(tmp)), f"run-{uuid.uuid4().hex[:8]}"
        # "spawn" starts a fresh interpreter: attempt 1 shares no memory with attempt 2.
        child = multiprocessing.get_context("spawn").Process(
            target=attempt, args=(1, url, run_id, cluster)
        )
        child.start()
        child.join()
        print(f"attempt 1: worker process died with exit code {child.exitcode}")
        attempt(2, url, run_id, cluster)
        jobs = sorted(p.name for p in Path(tmp).glob("job-*"))
        print(f"jobs submitted to the cluster: {len(jobs)} ({', '.join(jobs)})")
        if len(jobs) != 1:
            sys.exit("the retry submitted a second job")


if __name__ == "__main__":
    main()
