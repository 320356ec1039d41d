"""Small factories for scopes in tests."""

from __future__ import annotations

from typing import Any

from statestore.scopes import AssetScope, TaskScope

__all__ = ["make_asset_scope", "make_task_scope"]


def make_task_scope(**overrides: Any) -> TaskScope:
    """A ``TaskScope("dag", "run", "task", -1)`` with any field overridden."""
    fields: dict[str, Any] = {"dag_id": "dag", "run_id": "run", "task_id": "task", "map_index": -1}
    fields.update(overrides)
    return TaskScope(**fields)


def make_asset_scope(name: str = "asset", uri: str | None = None) -> AssetScope:
    """An ``AssetScope`` named ``name`` (with an optional uri)."""
    return AssetScope(name=name, uri=uri)
