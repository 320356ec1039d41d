"""An Airflow DAG whose tasks reach state through a state server, each with its own token.

No task holds database credentials. The workers get two settings: Airflow's
``[statestore] server_url`` (``AIRFLOW__STATESTORE__SERVER_URL``, the state server) and
``STATESTORE_TOKEN_PRIVATE_KEY_FILE`` (the key that signs task tokens; the server holds
only its public half). Each task calls ``server_store(context)``, which mints a token
for that task instance alone: its own task state, its ``inlets`` to read, its
``outlets`` to write. Anything else is refused by the server (403).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, task

from statestore.integrations.airflow import asset_states, server_store, task_state

ORDERS = Asset(name="orders", uri="s3://warehouse/orders")
REPORT = Asset(name="daily_report", uri="s3://warehouse/daily_report")


def load_orders(**context: Any) -> str:
    """ORDERS is this task's outlet: its state is writable here."""
    with server_store(context) as store:
        watermark = asset_states(context, store=store)[ORDERS]
        until = str(context["run_id"])  # ... load the orders after watermark.get("until") ...
        watermark.set("until", until)
    return until


def build_report(**context: Any) -> int:
    """Reads ORDERS (an inlet), writes REPORT (an outlet), keeps its own task state."""
    with server_store(context) as store:
        state = task_state(context, store=store)
        rows: int | None = state.get("rows")  # a retry finds what the first try counted
        assets = asset_states(context, store=store)
        if rows is None:
            rows = len(assets[ORDERS].get("until", ""))  # ... count ...
            state.set("rows", rows)
        assets[REPORT].set("rows", rows)
    return rows


with DAG(
    dag_id="orchestrator_airflow_server",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
):
    loaded = task(load_orders, outlets=[ORDERS])()
    loaded >> task(build_report, inlets=[ORDERS], outlets=[REPORT])()
