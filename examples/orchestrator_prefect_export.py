"""Prefect tasks that resume their external jobs after task and flow retries.

``export`` maps ``run_job`` over partitions. Each instance submits a (simulated) job to
a cluster, stores the job id in task state, and polls it. The cluster's API times out
on the first poll of every job, so Prefect retries the task: the retry finds the job id
and polls the same job instead of submitting a second one. Then ``publish`` fails once,
so Prefect retries the whole flow: the map runs again as new task runs, over the
partitions in another order, and each partition still finds its own job by its
``map_key``. ``load_orders`` keeps a watermark in asset state from one flow run to the
next, so each run loads only the orders newer than the last one.

Run it (needs ``pip install "statestore[prefect]"`` and a Prefect API: a server, or
Prefect's ephemeral one)::

    python examples/orchestrator_prefect_export.py [DATABASE_URL]

Without a URL it uses the configured store: ``$STATESTORE__DATABASE__URL``, else
``statestore.db`` in the working directory. A server database must be migrated first:
``statestore --url URL db upgrade``. At the end it prints the ``statestore`` commands
that show the state it left.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from statestore import StateStore, set_default_store
from statestore.integrations.prefect import asset_state, task_state

ORDERS_ASSET = "examples.prefect.orders"


class FakeCluster:
    """Stands in for Spark, EMR, ...: a job is a file holding how often it was polled, so
    it outlives any worker. The API is flaky: the first poll of every job times out."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def submit(self, partition: str) -> str:
        job_id = f"job-{partition}-{uuid.uuid4().hex[:6]}"
        (self.root / job_id).write_text("0")
        return job_id

    def poll(self, job_id: str) -> str:
        polls = int((self.root / job_id).read_text()) + 1
        (self.root / job_id).write_text(str(polls))
        if polls == 1:
            raise ConnectionError(f"cluster API timed out polling {job_id}")
        return "finished"

    def jobs(self) -> dict[str, int]:
        """Every job ever submitted, with how often it was polled."""
        return {path.name: int(path.read_text()) for path in sorted(self.root.glob("job-*"))}


@task(retries=2, retry_delay_seconds=0)
def run_job(partition: str, cluster_dir: str) -> str:
    logger = get_run_logger()
    cluster = FakeCluster(cluster_dir)
    # One instance per partition, whatever its position in the mapped list.
    state = task_state(map_over="partition")
    job_id: str | None = state.get("job_id")
    if job_id is None:
        job_id = cluster.submit(partition)
        state.set("job_id", job_id)  # before anything can fail: the retry needs it
        logger.info("%s: submitted %s", partition, job_id)
    else:
        logger.info("%s: resumed %s without resubmitting", partition, job_id)
    cluster.poll(job_id)  # the first poll fails: Prefect retries this task run
    return job_id


@task
def publish(job_ids: list[str]) -> None:
    if flow_run.run_count == 1:  # the first flow attempt fails here: Prefect retries it
        raise RuntimeError("warehouse unavailable")
    get_run_logger().info("published %s", job_ids)


@flow(retries=1, retry_delay_seconds=0)
def export(partitions: list[str], cluster_dir: str) -> list[str]:
    if flow_run.run_count > 1:
        partitions = partitions[::-1]  # a listing with no guaranteed order
    job_ids = run_job.map(partitions, cluster_dir).result()
    publish(job_ids)
    return sorted(job_ids)


@task
def load_new_orders(orders: list[dict[str, str]]) -> list[str]:
    state = asset_state(ORDERS_ASSET)
    watermark: str = state.get("watermark", "")
    new = [order for order in orders if order["at"] > watermark]
    if new:
        state.set("watermark", max(order["at"] for order in new))
    get_run_logger().info("watermark %r: loading %s", watermark, [o["id"] for o in new])
    return [order["id"] for order in new]


@flow
def load_orders(orders: list[dict[str, str]]) -> list[str]:
    loaded: list[str] = load_new_orders(orders)
    return loaded


def run_all(cluster_dir: str) -> str:
    """Both flows, as the tests run them; prints what happened, checks it, and returns
    the export flow run's id (the ``run_id`` of its task state)."""
    state = export(["eu", "us", "apac"], cluster_dir, return_state=True)
    job_ids: list[str] = state.result()
    jobs = FakeCluster(cluster_dir).jobs()
    print(f"export finished: {job_ids}")
    print(f"jobs submitted: {len(jobs)}, polls per job: {sorted(set(jobs.values()))}")
    if sorted(jobs) != job_ids or set(jobs.values()) != {3}:
        sys.exit("a retry submitted a second job")  # 3 polls: 2 task attempts + flow retry

    orders = [{"id": "order-1", "at": "2026-11-20T17:30"}]
    first = load_orders(orders)
    second = load_orders([*orders, {"id": "order-2", "at": "2026-11-21T08:15"}])
    print(f"flow run 1 loaded {first}, flow run 2 loaded {second}")
    if (first, second) != (["order-1"], ["order-2"]):
        sys.exit("the watermark did not carry over between flow runs")
    return str(state.state_details.flow_run_id)


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else None
    # No URL: the configuration's store, as the CLI opens it (statestore.db by default).
    with tempfile.TemporaryDirectory() as tmp, StateStore(url) as store:
        set_default_store(store)  # what task_state() and asset_state() use
        store.asset_state(ORDERS_ASSET).clear()  # rerunnable on the same database
        run_id = run_all(tmp)
    cli = "statestore" + (f" --url '{url}'" if url else "")
    print("the state it left:")
    print(f"  {cli} task-state list --dag export --run {run_id} --task run_job")
    print(f"  {cli} asset-state get --asset {ORDERS_ASSET} watermark")


if __name__ == "__main__":
    main()
