"""How an Airflow asset id maps onto statestore's asset registry (the Airflow backend's).

Airflow hands a backend its integer asset id only; statestore keys asset state by name.
The backend reads the asset's name and uri from Airflow's ``asset`` table, and
:func:`reconcile` makes statestore's registry entry for that name agree -- or reports
that the name still belongs to an older Airflow asset (same name, another uri).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from statestore.exceptions import InvalidScopeError, UnknownAssetError
from statestore.metastore.digests import ref_digest
from statestore.metastore.tables import asset as asset_table
from statestore.metastore.tables import asset_state as asset_state_table
from statestore.retention import utcnow
from statestore.scopes import AssetScope, StateScope

__all__ = [
    "AirflowAsset",
    "NameHeld",
    "airflow_asset_query",
    "as_airflow_asset",
    "reconcile",
    "writable",
]


@dataclass(frozen=True, slots=True)
class AirflowAsset:
    """An asset as Airflow's ``asset`` table has it (``active``: some DAG declares it)."""

    name: str
    uri: str
    active: bool


def airflow_asset_query(asset_id: int) -> Any:
    """Name, uri and active flag of one Airflow asset, for the session Airflow passes."""
    from airflow.models.asset import AssetModel  # noqa: PLC0415 - server side only

    return select(AssetModel.name, AssetModel.uri, AssetModel.active.has()).where(
        AssetModel.id == asset_id
    )


def as_airflow_asset(row: Any, asset_id: int) -> AirflowAsset:
    if row is None:
        raise UnknownAssetError(f"Airflow has no asset with id {asset_id}")
    return AirflowAsset(name=row[0], uri=row[1], active=bool(row[2]))


@dataclass(frozen=True, slots=True)
class NameHeld:
    """An Airflow asset whose name statestore's registry still holds for another uri.

    Airflow gave the asset a new id, so nothing is stored for it yet: reads find
    nothing and deletes remove nothing, as in Airflow's own backend. Only a write is
    refused, because the name's entry still holds the old asset's state.
    """

    name: str
    uri: str | None
    held_uri: str | None

    def error(self) -> InvalidScopeError:
        return InvalidScopeError(
            f"statestore holds state of an asset named {self.name!r} with uri "
            f"{self.held_uri!r}, but Airflow's asset of that name now has uri {self.uri!r}. "
            "Run StatestoreBackend().cleanup() to retire the old asset's state; the "
            "new asset then starts empty, as it would in Airflow."
        )


def writable(target: StateScope | NameHeld) -> StateScope:
    """The scope to write to, or the refusal of a write to a name held by an old asset."""
    if isinstance(target, NameHeld):
        raise target.error()
    return target


def reconcile(conn: Connection, scope: AssetScope, airflow_active: bool) -> str | None:
    """Make statestore's registry entry for ``scope.name`` agree with Airflow, if it can.

    * no entry: nothing to do (the first write registers name and uri);
    * same uri (or none recorded): re-activate it if Airflow says the asset is active;
    * another uri: that is another Airflow asset which had this name before. Once its
      state has been swept, the entry is re-pointed at the new asset (which then starts
      empty, as in Airflow); until then the entry is left alone and its uri returned,
      so the new asset's state is never mixed with the old one's.

    Returns the uri the entry still holds when the name belongs to the old asset, else
    ``None``.
    """
    assert scope.name is not None
    row = conn.execute(
        select(asset_table.c.id, asset_table.c.uri, asset_table.c.active).where(
            asset_table.c.name_digest == ref_digest(scope.name)
        )
    ).first()
    if row is None:
        return None
    same = row.uri is None or row.uri == scope.uri
    if same and (row.active or not airflow_active):
        return None
    if not same:
        keys = conn.execute(
            select(func.count()).where(asset_state_table.c.asset_id == row.id)
        ).scalar_one()
        if row.active or keys:
            return str(row.uri)
        if not airflow_active:
            return None
    values: dict[str, Any] = {"active": True, "updated_at": utcnow()}
    if not same:
        assert scope.uri is not None
        values.update(uri=scope.uri, uri_digest=ref_digest(scope.uri))
    conn.execute(update(asset_table).where(asset_table.c.id == row.id).values(**values))
    conn.commit()  # a no-op on statestore's own autocommit engine, needed on a host's
    return None
