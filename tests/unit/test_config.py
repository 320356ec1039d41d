"""Configuration: defaults, precedence per key, sources, and errors naming both."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from statestore.config import (
    DatabaseSettings,
    StateStoreConfig,
    StateStoreSettings,
    mask_url,
)
from statestore.exceptions import ConfigError, StateStoreError

RETENTION_ENV = "STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS"
ALL_KEYS = {
    "database.url",
    "database.auto_migrate_sqlite",
    "state_store.backend",
    "state_store.default_retention_days",
    "state_store.clear_on_success",
    "state_store.state_cleanup_batch_size",
    "state_store.max_value_bytes",
    "state_store.auto_register_assets",
    "workers.state_backend",
}


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Neither the developer's variables nor a ./statestore.cfg may leak into a test.
    for name in list(os.environ):
        if name.upper().startswith("STATESTORE"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_ini(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        StateStoreConfig(**kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, StateStoreError)
    return str(info.value)


# -- defaults and explicit arguments --------------------------------------------------


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
    sources = config.describe_sources()
    assert set(sources) >= ALL_KEYS
    assert set(sources.values()) == {"default"}


def test_explicit_mapping_per_section() -> None:
    config = StateStoreConfig(
        state_store={"default_retention_days": 7, "clear_on_success": True},
        database={"url": "postgresql+psycopg://u@h/db"},
        workers={"state_backend": "pkg.mod.Backend"},
    )
    assert config.state_store.default_retention_days == 7
    assert config.state_store.clear_on_success is True
    assert config.state_store.max_value_bytes == 65535  # untouched keys keep defaults
    assert config.database.url == "postgresql+psycopg://u@h/db"
    assert config.workers.state_backend == "pkg.mod.Backend"
    sources = config.describe_sources()
    assert sources["state_store.default_retention_days"] == "argument"
    assert sources["state_store.max_value_bytes"] == "default"


def test_section_model_counts_only_the_keys_set_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RETENTION_ENV, "4")
    config = StateStoreConfig(
        state_store=StateStoreSettings(clear_on_success=True),
        database=DatabaseSettings(url="sqlite:///m.db"),
    )
    assert config.state_store.clear_on_success is True
    assert config.state_store.default_retention_days == 4  # not reset to the default
    assert config.database.url == "sqlite:///m.db"


def test_zero_means_unlimited_and_is_accepted() -> None:
    config = StateStoreConfig(
        state_store={"default_retention_days": 0, "max_value_bytes": 0},
    )
    assert config.state_store.default_retention_days == 0
    assert config.state_store.max_value_bytes == 0


# -- precedence and sources -----------------------------------------------------------


def test_precedence_is_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ini = write_ini(
        tmp_path / "statestore.cfg",
        "[state_store]\ndefault_retention_days = 3\nmax_value_bytes = 100\n"
        "state_cleanup_batch_size = 9\n",
    )
    monkeypatch.setenv(RETENTION_ENV, "5")
    monkeypatch.setenv("STATESTORE__STATE_STORE__MAX_VALUE_BYTES", "200")
    config = StateStoreConfig(state_store={"clear_on_success": True, "max_value_bytes": 300})
    assert config.state_store.state_cleanup_batch_size == 9  # file
    assert config.state_store.default_retention_days == 5  # env beats file
    assert config.state_store.max_value_bytes == 300  # argument beats env
    assert config.state_store.clear_on_success is True  # argument
    assert config.state_store.auto_register_assets is True  # default
    assert config.describe_sources() == dict.fromkeys(config.describe_sources(), "default") | {
        "state_store.state_cleanup_batch_size": f"file {ini}",
        "state_store.default_retention_days": f"env {RETENTION_ENV}",
        "state_store.max_value_bytes": "argument",
        "state_store.clear_on_success": "argument",
    }


def test_environment_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("statestore__State_Store__max_value_bytes", "123")
    config = StateStoreConfig()
    assert config.state_store.max_value_bytes == 123
    assert config.describe_sources()["state_store.max_value_bytes"] == (
        "env statestore__State_Store__max_value_bytes"
    )


def test_environment_is_read_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    assert StateStoreConfig().state_store.default_retention_days == 30
    monkeypatch.setenv(RETENTION_ENV, "7")
    assert StateStoreConfig().state_store.default_retention_days == 7


def test_file_in_working_directory(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "statestore.cfg", "[State_Store]\nMAX_VALUE_BYTES = 10\n")
    config = StateStoreConfig()
    assert config.state_store.max_value_bytes == 10  # section and key names fold case
    assert config.describe_sources()["state_store.max_value_bytes"] == f"file {ini}"


def test_file_from_statestore_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ini(tmp_path / "statestore.cfg", "[state_store]\nmax_value_bytes = 1\n")
    ini = write_ini(
        tmp_path / "elsewhere.ini",
        "[database]\nurl = postgresql://u:p%40ss@h/db\n[workers]\nstate_backend = a.b.C\n",
    )
    monkeypatch.setenv("STATESTORE_CONFIG", str(ini))
    config = StateStoreConfig()
    assert config.database.url == "postgresql://u:p%40ss@h/db"  # '%' is not interpolation
    assert config.workers.state_backend == "a.b.C"
    assert config.state_store.max_value_bytes == 65535  # ./statestore.cfg not read
    assert config.describe_sources()["database.url"] == f"file {ini}"


def test_missing_named_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE_CONFIG", "/nonexistent/statestore.cfg")
    message = config_error()
    assert "STATESTORE_CONFIG=/nonexistent/statestore.cfg: no such file" in message


def test_default_section_does_not_leak_into_sections(tmp_path: Path) -> None:
    write_ini(tmp_path / "statestore.cfg", "[DEFAULT]\nurl = sqlite:///d.db\n")
    assert "[default]" in config_error()


def test_unparsable_file(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "statestore.cfg", "max_value_bytes = 1\n")
    message = config_error()
    assert f"file {ini}" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("no", False)],
)
def test_booleans_from_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: bool
) -> None:
    write_ini(tmp_path / "statestore.cfg", f"[state_store]\nauto_register_assets = {text}\n")
    monkeypatch.setenv("STATESTORE__STATE_STORE__CLEAR_ON_SUCCESS", text)
    config = StateStoreConfig()
    assert config.state_store.clear_on_success is expected
    assert config.state_store.auto_register_assets is expected


# -- invalid values, from every source ------------------------------------------------

INVALID = [
    ("state_store", "default_retention_days", "-1"),
    ("state_store", "default_retention_days", "abc"),
    ("state_store", "default_retention_days", "1.5"),
    ("state_store", "state_cleanup_batch_size", "-5"),
    ("state_store", "max_value_bytes", "-1"),
    ("state_store", "clear_on_success", "maybe"),
    ("state_store", "backend", "not a path"),
    ("state_store", "backend", "NoDots"),
    ("state_store", "backend", ""),
    ("workers", "state_backend", "x..y"),
    ("workers", "state_backend", "1pkg.mod"),
    ("database", "url", "::::"),
    ("state_store", "no_such_key", "1"),
]


@pytest.mark.parametrize(("section", "key", "value"), INVALID)
def test_invalid_argument(section: str, key: str, value: str) -> None:
    message = config_error(**{section: {key: value}})
    assert f"[{section}] {key} (argument): " in message


@pytest.mark.parametrize("value", [-1, True, 1.5, 2.0, "abc", None])
def test_invalid_int_argument(value: object) -> None:
    message = config_error(state_store={"max_value_bytes": value})
    assert "[state_store] max_value_bytes (argument): " in message


@pytest.mark.parametrize(("section", "key", "value"), INVALID)
def test_invalid_env(monkeypatch: pytest.MonkeyPatch, section: str, key: str, value: str) -> None:
    name = f"STATESTORE__{section.upper()}__{key.upper()}"
    monkeypatch.setenv(name, value)
    assert f"[{section}] {key} (env {name}): " in config_error()


@pytest.mark.parametrize(("section", "key", "value"), INVALID)
def test_invalid_file(tmp_path: Path, section: str, key: str, value: str) -> None:
    ini = write_ini(tmp_path / "statestore.cfg", f"[{section}]\n{key} = {value}\n")
    assert f"[{section}] {key} (file {ini}): " in config_error()


def test_text_that_is_a_whole_number_is_accepted(tmp_path: Path) -> None:
    write_ini(tmp_path / "statestore.cfg", "[state_store]\nstate_cleanup_batch_size = 500\n")
    config = StateStoreConfig(state_store={"max_value_bytes": "7"})
    assert config.state_store.max_value_bytes == 7
    assert config.state_store.state_cleanup_batch_size == 500


def test_unknown_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ini = write_ini(tmp_path / "statestore.cfg", "[task_state]\nx = 1\n")
    assert f"[task_state] (file {ini}): unknown section" in config_error()
    ini.unlink()
    monkeypatch.setenv("STATESTORE__NOPE__X", "1")
    assert "[nope] (env STATESTORE__NOPE__X): unknown section" in config_error()
    monkeypatch.delenv("STATESTORE__NOPE__X")
    assert "[nope] (argument): unknown section" in config_error(nope={})


def test_malformed_arguments_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "[database] (argument): expected a mapping" in config_error(database="sqlite://")
    monkeypatch.setenv("STATESTORE__DATABASE", "sqlite://")
    assert "STATESTORE__DATABASE: expected a name like" in config_error()


def test_every_problem_in_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_ini(tmp_path / "statestore.cfg", "[extra]\na = 1\n")
    monkeypatch.setenv(RETENTION_ENV, "-1")
    message = config_error(state_store={"max_value_bytes": -1}, workers={"typo": 1})
    first, *lines = message.splitlines()
    assert first == "invalid configuration (4 problems):"
    assert len(lines) == 4
    assert any("[extra]" in line for line in lines)
    assert any(f"(env {RETENTION_ENV})" in line for line in lines)
    assert any("[state_store] max_value_bytes (argument)" in line for line in lines)
    assert any("[workers] typo (argument): unknown setting" in line for line in lines)


# -- secrets --------------------------------------------------------------------------


def test_passwords_never_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__DATABASE__URL", "postgresql://app:hunter2@db:port/app")
    message = config_error(database={"auto_migrate_sqlite": "maybe"})
    assert "[database] url (env STATESTORE__DATABASE__URL)" in message
    assert "[database] auto_migrate_sqlite (argument)" in message
    assert "hunter2" not in message
    assert "hunter2" not in config_error(database={"url": "mysql://u:hunter2@h:x/db"})


def test_passwords_masked_in_as_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__DATABASE__URL", "postgresql://app:hunter2@db/app")
    config = StateStoreConfig(workers={"object_store_url": "s3://key:hunter2@bucket/values"})
    shown = config.as_dict()
    assert "hunter2" not in str(shown)
    assert shown["workers"]["object_store_url"] == "s3://key:***@bucket/values"
    assert shown["database"]["url"] == "postgresql://app:***@db/app"
    assert shown["state_store"]["max_value_bytes"] == 65535
    assert config.as_dict(mask_secrets=False)["database"]["url"] == (
        "postgresql://app:hunter2@db/app"
    )
    assert set(shown) == {"database", "state_store", "workers", "client"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:pw@h/db", "mysql://u:***@h/db"),
        ("postgresql+psycopg://u:p%40ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # unescaped '@'
        ("postgresql://u@h/db?password=pw&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("not a url://u:pw@h", "not a url://u:***@h"),
        ("postgresql://u:pw@h:port/db", "postgresql://u:***@h:port/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("", ""),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


# -- immutability and copies ----------------------------------------------------------


def test_frozen() -> None:
    config = StateStoreConfig()
    with pytest.raises(ValidationError):
        config.state_store.max_value_bytes = 1
    with pytest.raises(ValidationError):
        config.database = DatabaseSettings(url="sqlite:///other.db")
    assert config.state_store.max_value_bytes == 65535


def test_with_database_url() -> None:
    config = StateStoreConfig(database={"auto_migrate_sqlite": False})
    other = config.with_database_url("sqlite:///other.db")
    assert other.database.url == "sqlite:///other.db"
    assert other.database.auto_migrate_sqlite is False
    assert other.describe_sources()["database.url"] == "argument"
    assert config.database.url == "sqlite:///statestore.db"
    assert config.describe_sources()["database.url"] == "default"
    with pytest.raises(ConfigError, match=r"\[database\] url \(argument\)"):
        config.with_database_url("::::")
