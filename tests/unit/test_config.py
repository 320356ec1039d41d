"""Configuration: defaults, precedence per key, sources, and errors naming both."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from statestore import ConfigError, StateStoreConfig
from statestore.config import mask_url

ENV = "STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS"


def write_ini(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = StateStoreConfig()
    assert config.database.url == "sqlite:///statestore.db"
    assert config.database.auto_migrate_sqlite is True
    assert config.state_store.backend == "statestore.metastore.MetastoreStateBackend"
    assert config.state_store.default_retention_days == 30
    assert config.state_store.clear_on_success is False
    assert config.state_store.state_cleanup_batch_size == 0
    assert config.state_store.max_value_bytes == 65535
    assert config.state_store.auto_register_assets is True
    assert config.workers.state_backend == ""
    assert set(config.describe_sources().values()) == {"default"}


def test_explicit_mapping_per_section() -> None:
    config = StateStoreConfig(
        state_store={"default_retention_days": 7}, database={"url": "sqlite:///x.db"}
    )
    assert config.state_store.default_retention_days == 7
    assert config.state_store.max_value_bytes == 65535
    assert config.database.url == "sqlite:///x.db"
    assert config.describe_sources()["state_store.default_retention_days"] == "argument"


def test_precedence_is_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ini(
        tmp_path / "statestore.cfg",
        "[state_store]\ndefault_retention_days = 3\nmax_value_bytes = 100\n"
        "state_cleanup_batch_size = 9\n",
    )
    monkeypatch.setenv(ENV, "5")
    monkeypatch.setenv("statestore__state_store__max_value_bytes", "200")  # any case
    config = StateStoreConfig(state_store={"clear_on_success": True, "max_value_bytes": 300})
    assert config.state_store.state_cleanup_batch_size == 9  # file
    assert config.state_store.default_retention_days == 5  # env beats file
    assert config.state_store.max_value_bytes == 300  # argument beats env
    assert config.state_store.clear_on_success is True
    sources = config.describe_sources()
    assert sources["state_store.state_cleanup_batch_size"] == "file statestore.cfg"
    assert sources["state_store.default_retention_days"] == f"env {ENV}"
    assert sources["state_store.max_value_bytes"] == "argument"


def test_file_from_statestore_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ini = write_ini(
        tmp_path / "elsewhere.ini",
        "[database]\nurl = postgresql://u:p%40ss@h/db\n[workers]\nstate_backend = a.b.C\n",
    )
    monkeypatch.setenv("STATESTORE_CONFIG", str(ini))
    config = StateStoreConfig()
    assert config.database.url == "postgresql://u:p%40ss@h/db"  # '%' is not interpolation
    assert config.workers.state_backend == "a.b.C"


def test_missing_named_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE_CONFIG", "/nonexistent/statestore.cfg")
    with pytest.raises(ConfigError, match="no such file"):
        StateStoreConfig()


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("state_store", "default_retention_days", -1),
        ("state_store", "default_retention_days", True),
        ("state_store", "default_retention_days", 1.5),
        ("state_store", "default_retention_days", "abc"),
        ("state_store", "state_cleanup_batch_size", -5),
        ("state_store", "max_value_bytes", -1),
        ("state_store", "backend", "not a path"),
        ("state_store", "backend", ""),
        ("workers", "state_backend", "x..y"),
        ("database", "url", "::::"),
        ("state_store", "no_such_key", 1),
    ],
)
def test_invalid_argument_names_key_and_source(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        StateStoreConfig(**{section: {key: value}})
    assert isinstance(info.value, ValueError)
    assert f"[{section}] {key}" in str(info.value)
    assert "(argument)" in str(info.value)


def test_invalid_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "-3")
    with pytest.raises(ConfigError, match=ENV):
        StateStoreConfig()


def test_invalid_file_value_names_the_file(tmp_path: Path) -> None:
    write_ini(tmp_path / "statestore.cfg", "[state_store]\nmax_value_bytes = lots\n")
    with pytest.raises(ConfigError, match=r"\[state_store\] max_value_bytes \(file statestore"):
        StateStoreConfig()


def test_unknown_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ini(tmp_path / "statestore.cfg", "[task_state]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"unknown configuration section \[task_state\]"):
        StateStoreConfig()
    (tmp_path / "statestore.cfg").unlink()
    monkeypatch.setenv("STATESTORE__NOPE__X", "1")
    with pytest.raises(ConfigError, match="STATESTORE__NOPE__X"):
        StateStoreConfig()


def test_booleans_from_text(monkeypatch: pytest.MonkeyPatch) -> None:
    for text, expected in [("true", True), ("0", False), ("yes", True), ("off", False)]:
        monkeypatch.setenv("STATESTORE__STATE_STORE__CLEAR_ON_SUCCESS", text)
        assert StateStoreConfig().state_store.clear_on_success is expected


def test_several_errors_in_one_message() -> None:
    with pytest.raises(ConfigError) as info:
        StateStoreConfig(state_store={"max_value_bytes": -1, "default_retention_days": -1})
    assert str(info.value).count("\n") == 2


def test_passwords_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__DATABASE__URL", "postgresql://app:hunter2@db/app")
    config = StateStoreConfig()
    assert "hunter2" not in str(config.as_dict())
    assert str(config.as_dict(mask_secrets=False)["database"]["url"]).endswith("hunter2@db/app")
    assert mask_url("mysql://u:pw@h/db") == "mysql://u:***@h/db"
    assert mask_url("not a url://u:pw@h") == "not a url://u:***@h"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_frozen_and_url_override() -> None:
    config = StateStoreConfig()
    with pytest.raises(ValidationError):
        config.state_store.max_value_bytes = 1
    other = config.with_database_url("sqlite:///other.db")
    assert other.database.url == "sqlite:///other.db"
    assert other.describe_sources()["database.url"] == "argument"
    assert config.database.url == "sqlite:///statestore.db"
    with pytest.raises(ConfigError, match="database"):
        config.with_database_url("::::")
