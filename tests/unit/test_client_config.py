"""``[client]`` settings and choosing the HTTP backend by URL (no server needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from statestore import StateStore, StateStoreConfig
from statestore.backends.http import HttpStateBackend
from statestore.exceptions import ConfigError


def test_client_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__CLIENT__URL", "https://state.internal")
    monkeypatch.setenv("STATESTORE__CLIENT__TOKEN_FILE", "/run/secrets/statestore-token")
    monkeypatch.setenv("STATESTORE__CLIENT__TIMEOUT_SECONDS", "2.5")
    config = StateStoreConfig()
    assert config.client.url == "https://state.internal"
    assert config.client.token_file == "/run/secrets/statestore-token"
    assert config.client.token == ""
    assert config.client.timeout_seconds == 2.5
    assert config.describe_sources()["client.url"] == "env STATESTORE__CLIENT__URL"


def test_client_settings_from_the_ini_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ini = tmp_path / "statestore.cfg"
    ini.write_text("[client]\nurl = http://127.0.0.1:8765\ntoken = t0k3n\n")
    monkeypatch.setenv("STATESTORE_CONFIG", str(ini))
    config = StateStoreConfig()
    assert (config.client.url, config.client.token) == ("http://127.0.0.1:8765", "t0k3n")


def test_the_token_is_never_shown() -> None:
    config = StateStoreConfig(client={"url": "http://h", "token": "s3cret-value"})
    assert config.as_dict()["client"]["token"] == "***"
    assert config.as_dict(mask_secrets=False)["client"]["token"] == "s3cret-value"
    assert StateStoreConfig().as_dict()["client"]["token"] == ""


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"url": "postgresql://db/x"}, "not a state server URL"),
        ({"url": "http://"}, "not a state server URL"),
        ({"url": "http://h", "token": "a", "token_file": "/f"}, "not both"),
        ({"timeout_seconds": 0}, "greater than 0"),
    ],
)
def test_invalid_client_settings_fail_at_load(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        StateStoreConfig(client=settings)
    assert "[client]" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_an_http_url_selects_the_http_backend(tmp_path: Path) -> None:
    with StateStore("https://state.internal/base", token="t") as store:
        assert isinstance(store.backend, HttpStateBackend)
        assert store.backend.url == "https://state.internal/base"
        assert store.config.client.url == "https://state.internal/base"
        assert store.config.describe_sources()["client.token"] == "argument"
    token_file = tmp_path / "token"
    token_file.write_text("t\n")
    with StateStore("http://127.0.0.1:8765", token_file=str(token_file)) as store:
        assert isinstance(store.backend, HttpStateBackend)
        assert store.config.client.token_file == str(token_file)


def test_client_url_in_the_settings_selects_the_http_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATESTORE__CLIENT__URL", "http://127.0.0.1:1")
    monkeypatch.setenv("STATESTORE__CLIENT__TOKEN", "from-env")
    with StateStore() as store:
        assert isinstance(store.backend, HttpStateBackend)
    # A token given to StateStore replaces the configured one (file or inline).
    with StateStore(token="from-argument") as store:
        assert store.config.client.token == "from-argument"
        assert store.config.client.token_file == ""


def test_the_http_backend_named_as_the_backend_reads_client_settings() -> None:
    config = StateStoreConfig(
        state_store={"backend": "statestore.backends.http.HttpStateBackend"},
        client={"url": "http://127.0.0.1:1", "token": "t"},
    )
    with StateStore(config=config) as store:
        assert isinstance(store.backend, HttpStateBackend)
    without_url = StateStoreConfig(
        state_store={"backend": "statestore.backends.http.HttpStateBackend"}
    )
    with pytest.raises(ConfigError, match=r"\[client\] url is not set"):
        StateStore(config=without_url)


def test_conflicting_choices_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        StateStore("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="are for a state server"):
        StateStore("sqlite:///x.db", token="t")
    other = StateStoreConfig(
        state_store={"backend": "statestore.backends.memory.InMemoryStateBackend"},
        client={"url": "http://127.0.0.1:1", "token": "t"},
    )
    with pytest.raises(ConfigError, match="selects the HTTP backend"):
        StateStore(config=other)


def test_import_costs() -> None:
    """`import statestore` loads no httpx; a worker on a server loads no metastore."""
    code = (
        "import sys, statestore\n"
        "assert 'httpx' not in sys.modules, 'httpx imported by import statestore'\n"
        "store = statestore.StateStore('http://127.0.0.1:1', token='t')\n"
        "assert type(store.backend) is statestore.HttpStateBackend\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('statestore.metastore'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
