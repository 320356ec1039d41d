"""Prefect task runs that reach state through a state server, each with its own token.

No task holds database credentials. The processes that run flows get two settings:
``STATESTORE__CLIENT__URL`` (the state server) and ``STATESTORE_TOKEN_PRIVATE_KEY_FILE``
(the key that signs task tokens; the server holds only its public half). Each task run
calls ``server_store()``, which mints a token for that task run alone: its own task
state, the assets it materializes to write, its ``asset_deps`` and the assets of its
upstream tasks to read. Anything else is refused by the server (403).
"""

from __future__ import annotations

from prefect import flow
from prefect.assets import Asset, materialize

from statestore.integrations.prefect import asset_state, server_store, task_state

ORDERS = Asset(key="s3://warehouse/orders")
REPORT = Asset(key="s3://warehouse/daily_report")


@materialize(ORDERS)
def load_orders(until: str) -> str:
    """Load new orders; ORDERS is this task's outlet, so its state is writable here."""
    with server_store() as store:
        watermark = asset_state(ORDERS, store=store)
        # ... load the orders after watermark.get("until") ...
        watermark.set("until", until)
    return until


@materialize(REPORT)
def build_report(loaded_until: str) -> int:
    """ORDERS reaches this task as an upstream asset (an input from load_orders): it may
    read ORDERS' state, write REPORT's, and keep its own task state across retries."""
    with server_store() as store:
        state = task_state(store=store)
        rows: int | None = state.get("rows")  # a retry finds what the first try counted
        if rows is None:
            rows = len(asset_state(ORDERS, store=store).get("until", ""))  # ... count ...
            state.set("rows", rows)
        asset_state(REPORT, store=store).set("built_from", loaded_until)
    return rows


@flow(name="daily_report")
def daily_report(until: str = "2026-12-01") -> int:
    rows: int = build_report(load_orders(until))
    return rows


if __name__ == "__main__":
    print(daily_report())
