"""Revision 0007 (PostgreSQL: update()'s asset read and replace as two functions): a
filled 0006 database upgrades keeping every row; on PostgreSQL exactly the two
functions appear, elsewhere nothing changes; 0007 downgrades to 0006 (the functions
gone, the rows kept) and upgrades again, and update() then runs through them."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from statestore import StateStore
from statestore.metastore import current_revision, downgrade, upgrade
from tests.migrations.test_rev_0003 import _fill_0002, _indexes
from tests.migrations.test_rev_0004 import _rows

FUNCTIONS = ["statestore_asset_read", "statestore_asset_replace"]


def _functions(url: URL) -> list[str]:
    """statestore's functions in the schema the URL's connections use (PostgreSQL)."""
    if url.get_backend_name() != "postgresql":
        return []
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema() AND p.proname LIKE 'statestore%'"
            " ORDER BY p.proname"
        )).scalars().all()  # fmt: skip
    engine.dispose()
    return list(found)


def test_upgrade_from_filled_0006_adds_the_postgresql_functions_only(db_url: URL) -> None:
    upgrade(db_url, "0006")
    _fill_0002(db_url)
    indexes = _indexes(db_url)
    assert _functions(db_url) == []
    upgrade(db_url, "0007")
    assert current_revision(db_url) == "0007"
    on_postgresql = db_url.get_backend_name() == "postgresql"
    assert _functions(db_url) == (FUNCTIONS if on_postgresql else [])
    assert _indexes(db_url) == indexes
    assert _rows(db_url) == (40, 120, 1)


def test_0007_downgrade_drops_the_functions_and_upgrades_again(db_url: URL) -> None:
    upgrade(db_url, "0006")
    _fill_0002(db_url)
    upgrade(db_url, "0007")
    downgrade(db_url, "0006")
    assert current_revision(db_url) == "0006"
    assert _functions(db_url) == []
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url, "0007")
    assert current_revision(db_url) == "0007"
    assert _functions(db_url) == (FUNCTIONS if db_url.get_backend_name() == "postgresql" else [])
    upgrade(db_url)  # to this release's head, which the store needs
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        state = store.asset_state("counter")
        state.set("n", 0)
        assert state.get("n") == 0  # the asset's id known: update() takes the short steps
        assert [state.update("n", lambda n: n + 1) for _ in range(3)] == [1, 2, 3]
        assert state.get_item("n").version == 4  # type: ignore[union-attr]
