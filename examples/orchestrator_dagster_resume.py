"""A Dagster job whose ops resume after a crash instead of redoing their work.

``run_job`` submits a job to an external cluster and keeps its id in task state; if the
step process dies while polling, re-executing the run from failure finds the id and
polls the same job instead of submitting a second one. ``load_partition`` is mapped over
a dynamic output; each mapped step checkpoints the pages it has loaded under its own
mapping key, so the re-execution loads only what is missing.

Try it (docs/howto-dagster.md, "Try it on your machine"): with ``DAGSTER_HOME`` set,
``dagster job execute -f orchestrator_dagster_resume.py -c crash.yaml`` where crash.yaml
is ``ops: {run_job: {config: {crash_mid_poll: true}}}``; the run fails. Then
``python orchestrator_dagster_resume.py RUN_ID`` re-executes it from failure (the
``dagster`` CLI has no re-execute command; in ``dagster dev``, use the run's "Re-execute
from failure"). The re-execution keeps the failed run's config: the crash and the error
below happen only on an attempt that starts from scratch, so it resumes and succeeds.
"""

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    Config,
    ConfigurableResource,
    DagsterInstance,
    Definitions,
    DynamicOut,
    DynamicOutput,
    OpExecutionContext,
    ReexecutionOptions,
    execute_job,
    job,
    op,
    reconstructable,
)

from statestore import NEVER_EXPIRE
from statestore.integrations.dagster import StateStoreResource

PARTITIONS = ["eu", "us", "apac"]
PAGES = 4


class FakeCluster(ConfigurableResource):
    """Stands in for Spark, EMR, an API...: jobs and fetched pages are files under
    ``root``, so they outlive the step process that made them."""

    root: str = str(Path(tempfile.gettempdir()) / "statestore-dagster-cluster")

    def submit(self) -> str:
        job_id = f"job-{uuid.uuid4().hex[:8]}"
        Path(self.root).mkdir(parents=True, exist_ok=True)
        (Path(self.root) / job_id).write_text("0")
        return job_id

    def poll(self, job_id: str) -> int:
        """Percent done; each poll advances the job by 25 points."""
        done = min(int((Path(self.root) / job_id).read_text()) + 25, 100)
        (Path(self.root) / job_id).write_text(str(done))
        return done

    def fetch(self, partition: str, page: int) -> None:
        """Fetch one page; the log shows every fetch, so refetches are visible."""
        with (Path(self.root) / "fetched.log").open("a") as log:
            log.write(f"{partition}:{page}\n")


class RunJobConfig(Config):
    # Kill the step process (os._exit) at the first poll of the attempt that submitted
    # the job; an attempt that resumed it polls on.
    crash_mid_poll: bool = False


class LoadConfig(Config):
    # Raise in this partition at page 3 (a transient error), on an attempt that started
    # at page 1; an attempt that resumed from a checkpoint gets through.
    fail_partition: str = ""


@op
def run_job(
    context: OpExecutionContext,
    config: RunJobConfig,
    statestore: StateStoreResource,
    cluster: FakeCluster,
) -> str:
    state = statestore.task_state(context)
    job_id = state.get("job_id")
    submitted_here = job_id is None
    if submitted_here:  # first attempt: submit, and remember the job across attempts
        job_id = cluster.submit()
        state.set("job_id", job_id, retention=NEVER_EXPIRE)
        context.log.info(f"submitted {job_id}")
    else:
        context.log.info(f"resumed {job_id} without resubmitting")
    while (done := cluster.poll(job_id)) < 100:
        context.log.info(f"{job_id} is {done}% done")
        if config.crash_mid_poll and submitted_here:
            os._exit(1)  # the worker dies: no exception, nothing flushed or closed
    return str(job_id)


@op(out=DynamicOut(str))
def list_partitions() -> Iterator[DynamicOutput[str]]:
    for partition in PARTITIONS:
        # The mapping key is the partition, not its position: it is the step's identity
        # in Dagster, and the statestore integration makes it the task state's map_key.
        yield DynamicOutput(partition, mapping_key=partition)


@op
def load_partition(
    context: OpExecutionContext,
    config: LoadConfig,
    statestore: StateStoreResource,
    cluster: FakeCluster,
    partition: str,
) -> int:
    state = statestore.task_state(context)  # map_key = this step's mapping key
    start = state.get("pages_done", 0) + 1
    for page in range(start, PAGES + 1):
        if partition == config.fail_partition and page == 3 and start == 1:
            raise RuntimeError(f"{partition}: the source timed out at page {page}")
        cluster.fetch(partition, page)
        state.set("pages_done", page)  # a checkpoint per page
    context.log.info(f"{partition}: loaded pages {start}-{PAGES}")
    return PAGES


@op
def report(job_id: str, pages: list[int]) -> str:
    return f"{job_id}: {sum(pages)} pages"


@job(
    resource_defs={
        # No url: statestore's own configuration (STATESTORE__DATABASE__URL or
        # statestore.cfg); run config can set one: {statestore: {config: {url: ...}}}.
        "statestore": StateStoreResource(),
        "cluster": FakeCluster(),
    }
)
def resumable_load() -> None:
    report(run_job(), list_partitions().map(load_partition).collect())


defs = Definitions(jobs=[resumable_load])


if __name__ == "__main__":
    # python orchestrator_dagster_resume.py RUN_ID: re-execute a failed run from failure,
    # with its config, on the Dagster instance of DAGSTER_HOME (what the UI's "Re-execute
    # from failure" does). The job must be reconstructable: step processes import it.
    with DagsterInstance.get() as instance:
        options = ReexecutionOptions.from_failure(sys.argv[1], instance)
        recon = reconstructable(resumable_load)
        with execute_job(recon, instance, reexecution_options=options) as result:
            outcome = result.output_for_node("report") if result.success else "failed"
            print(f"re-execution {result.run_id} of {sys.argv[1]}: {outcome}")
