"""A Dagster asset that loads incrementally: a watermark in asset state spans runs.

Each materialization of ``warehouse/orders`` loads only the source rows newer than the
asset's watermark and up to the run's ``until``, then advances the watermark. The
watermark belongs to the asset, not to a run, so every later run (scheduled, manual,
backfill) continues where the last one stopped.

Try it: ``dagster asset materialize -f orchestrator_dagster_watermark.py --select
warehouse/orders -c until.yaml`` with ``ops: {warehouse__orders: {config: {until: ...}}}``
in until.yaml, then again without ``-c``: the second run starts at the first one's
watermark (docs/howto-dagster.md, "Try it on your machine").
"""

from dagster import AssetExecutionContext, Config, Definitions, asset

from statestore.integrations.dagster import StateStoreResource

# The source system: (order id, updated at). A real asset would query it with the
# watermark as its lower bound.
SOURCE = [
    ("order-1", "2026-11-20T09:00"),
    ("order-2", "2026-11-20T17:30"),
    ("order-3", "2026-11-21T08:15"),
    ("order-4", "2026-11-22T12:00"),
    ("order-5", "2026-11-23T23:59"),
]


class LoadWindow(Config):
    until: str = "9999-12-31"  # load rows updated before this moment (the run's end)


@asset(key=["warehouse", "orders"])
def orders(
    context: AssetExecutionContext, config: LoadWindow, statestore: StateStoreResource
) -> list[str]:
    state = statestore.asset_state(context)  # the asset named "warehouse/orders"
    watermark = state.get("watermark")
    rows = [
        (order, at)
        for order, at in SOURCE
        if (watermark is None or at > watermark) and at < config.until
    ]
    if rows:
        state.set("watermark", max(at for _, at in rows))
    context.log.info(f"watermark {watermark} -> {state.get('watermark')}: loaded {len(rows)}")
    return [order for order, _ in rows]


defs = Definitions(
    assets=[orders],
    # No url: statestore's own configuration (STATESTORE__DATABASE__URL or statestore.cfg).
    resources={"statestore": StateStoreResource()},
)
