"""TEMPORARY minimal configuration (being replaced by the full pydantic-settings module)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str = "sqlite:///statestore.db"
    auto_migrate_sqlite: bool = True


class StateStoreSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    backend: str = "statestore.metastore.MetastoreStateBackend"
    default_retention_days: int = 30
    clear_on_success: bool = False
    state_cleanup_batch_size: int = 0
    max_value_bytes: int = 65535
    auto_register_assets: bool = True


class WorkersSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    state_backend: str = ""


class StateStoreConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    database: DatabaseSettings = DatabaseSettings()
    state_store: StateStoreSettings = StateStoreSettings()
    workers: WorkersSettings = WorkersSettings()
