"""An Airflow DAG whose task checkpoints into statestore and resumes after a crash.

``export`` writes five batches and records each one in its task state. Its first try
crashes after the third batch; the retry (same dag, run, task and map index, so the same
task state) skips the three finished batches. The finished run's watermark goes to the
state of the ``orders_export`` asset, which the next task reads back through Airflow's own
``asset_state_store``: with ``StatestoreBackend`` configured both see the same state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, task

from statestore.integrations.airflow import asset_states, task_state

BATCHES = 5
CRASH_AFTER = 3  # batches written by the first try before it "crashes"
ORDERS_EXPORT = Asset(name="orders_export", uri="file:///tmp/statestore-demo/orders_export")


def export(**context: Any) -> int:
    """Write the batches the task has not written yet; the first try crashes midway."""
    state = task_state(context)  # this task instance's state, in statestore
    try_number = context["ti"].try_number
    done: int = state.get("batches_done", 0)
    for batch in range(done, BATCHES):
        # ... write batch `batch` somewhere ...
        state.set(f"batch-{batch}", {"written_by_try": try_number})
        state.set("batches_done", batch + 1)  # the checkpoint
        if try_number == 1 and batch + 1 == CRASH_AFTER:
            raise RuntimeError(f"simulated crash after {CRASH_AFTER} batches")
    asset_states(context)[ORDERS_EXPORT].set("watermark", context["run_id"])
    return BATCHES - done  # batches this try wrote


def report(**context: Any) -> str:
    """Read the watermark back through Airflow's own accessor: the same asset state."""
    watermark: str | None = context["asset_state_store"][ORDERS_EXPORT].get("watermark")
    if watermark is None:  # export wrote it through the helpers: another database?
        raise RuntimeError(
            "no watermark in Airflow's asset state: the helpers and Airflow's state-store "
            "backend use different databases. Set STATESTORE__DATABASE__URL for the API "
            "server and the workers, and AIRFLOW__STATE_STORE__BACKEND="
            "statestore.integrations.airflow.StatestoreBackend"
        )
    task_state(context).set("watermark_seen", watermark)
    return watermark


with DAG(
    dag_id="orchestrator_airflow_resume",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
):
    # task(fn, ...) is @task(...) applied by hand (which keeps the functions typed).
    export_task = task(export, retries=1, retry_delay=timedelta(seconds=1), outlets=[ORDERS_EXPORT])
    report_task = task(report, inlets=[ORDERS_EXPORT])
    export_task() >> report_task()
