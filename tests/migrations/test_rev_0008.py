"""Revision 0008 (PostgreSQL: a task key's get, set and compare-and-set and an asset
key's set as functions): a filled 0007 database upgrades keeping every row; on
PostgreSQL exactly the four functions appear, elsewhere nothing changes; 0008
downgrades to 0007 (those four gone, 0007's kept, the rows kept) and upgrades again,
and a store then writes and reads through them."""

from __future__ import annotations

from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from statestore.metastore import current_revision, downgrade, upgrade
from tests.migrations.test_rev_0003 import _fill_0002, _indexes
from tests.migrations.test_rev_0004 import _rows
from tests.migrations.test_rev_0007 import FUNCTIONS as FUNCTIONS_0007
from tests.migrations.test_rev_0007 import _functions

FUNCTIONS_0008 = ["statestore_asset_write", "statestore_task_read", "statestore_task_replace",
                  "statestore_task_write"]  # fmt: skip


def _expected(url: URL, *names: str) -> list[str]:
    return sorted(names) if url.get_backend_name() == "postgresql" else []


def test_upgrade_from_filled_0007_adds_the_postgresql_functions_only(db_url: URL) -> None:
    upgrade(db_url, "0007")
    _fill_0002(db_url)
    indexes = _indexes(db_url)
    assert _functions(db_url) == _expected(db_url, *FUNCTIONS_0007)
    upgrade(db_url, "0008")
    assert current_revision(db_url) == "0008"
    assert _functions(db_url) == _expected(db_url, *FUNCTIONS_0007, *FUNCTIONS_0008)
    assert _indexes(db_url) == indexes
    assert _rows(db_url) == (40, 120, 1)


def test_0008_downgrade_drops_its_functions_and_upgrades_again(db_url: URL) -> None:
    upgrade(db_url, "0007")
    _fill_0002(db_url)
    upgrade(db_url, "0008")
    downgrade(db_url, "0007")
    assert current_revision(db_url) == "0007"
    assert _functions(db_url) == _expected(db_url, *FUNCTIONS_0007)
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url, "0008")
    assert current_revision(db_url) == "0008"
    upgrade(db_url)  # to this release's head, which the store needs
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        task = store.task_state(TaskScope("dag", "run", "task"))
        task.set("n", 1)
        task.set("n", 2)
        assert task.get("n") == 2
        assert task.update("n", lambda n: n + 1) == 3
        assert task.get_item("n").version == 3  # type: ignore[union-attr]
        orders = store.asset_state("orders_0008")
        orders.set("cursor", "a")
        orders.set("cursor", "b")
        assert orders.get("cursor") == "b"
