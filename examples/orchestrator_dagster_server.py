"""Dagster asset steps that reach state through a state server, each with its own token.

No step holds database credentials. The processes that run steps get two settings:
``STATESTORE__CLIENT__URL`` (the state server) and ``STATESTORE_TOKEN_PRIVATE_KEY_FILE``
(the key that signs task tokens; the server holds only its public half). Each step
calls ``server_store(context)``, which mints a token for that step alone: its own task
state, the assets it materializes to write, their upstream assets to read. Anything
else is refused by the server (403).
"""

from dagster import AssetExecutionContext, Definitions, asset

from statestore.integrations.dagster import server_store, task_scope_for


@asset(key=["raw", "orders"])
def raw_orders(context: AssetExecutionContext) -> str:
    """Load new orders; raw/orders is this step's own asset, so its state is writable."""
    with server_store(context) as store:
        watermark = store.asset_state("raw/orders")
        until = "2026-12-01"  # ... load the orders after watermark.get("until") ...
        watermark.set("until", until)
    return until


@asset(key=["mart", "daily_report"], deps=[raw_orders])
def daily_report(context: AssetExecutionContext) -> int:
    """May read raw/orders (upstream), write mart/daily_report, keep its own task state."""
    with server_store(context) as store:
        state = store.task_state(task_scope_for(context))
        rows: int | None = state.get("rows")  # a re-execution finds what the first counted
        if rows is None:
            rows = len(store.asset_state("raw/orders").get("until", ""))  # ... count ...
            state.set("rows", rows)
        store.asset_state("mart/daily_report").set("rows", rows)
    return rows


defs = Definitions(assets=[raw_orders, daily_report])
