"""A task's token from its orchestrator context (issue 17): grant, key, store.

The shared core (``statestore.integrations._server_tokens``) is tested directly; each
adapter's context reading is tested with fake contexts and stand-in orchestrator
modules, so this runs where no orchestrator is installed (the real Airflow, Dagster and
Prefect runs are in tests/integration/orchestrators, the real server in
tests/integration/test_task_tokens.py).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from statestore import ConfigError, StateStore, TaskScope
from statestore.exceptions import InvalidTypeError
from statestore.integrations import _server_tokens as core
from statestore.server import SharedSecret, generate_keypair, load_public_key
from statestore.server.auth import TokenVerifier
from statestore.wire import Grant

SCOPE = TaskScope("etl", "r1", "load")


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return generate_keypair()


def _verified(token: str, public_pem: bytes) -> Grant:
    return TokenVerifier(load_public_key(public_pem)).verify(token)


def test_grant_names_one_task_its_inlets_and_outlets() -> None:
    grant = core.task_grant(SCOPE, inlets=["raw", "orders"], outlets=["orders", "report"])
    assert grant == Grant(
        "task:etl/r1/load",
        task=SCOPE,
        read_assets=frozenset({"raw"}),  # "orders" is written, which implies reading
        write_assets=frozenset({"orders", "report"}),
    )
    assert not grant.admin
    mapped = core.task_grant(TaskScope("etl", "r1", "load", 3), all_map_indices=True)
    assert (mapped.subject, mapped.all_map_indices) == ("task:etl/r1/load[3]", True)
    keyed = core.task_grant(TaskScope("etl", "r1", "load", map_key="p1"), inlets=None)
    assert (keyed.subject, keyed.read_assets, keyed.write_assets) == (
        "task:etl/r1/load[p1]",
        frozenset(),
        frozenset(),
    )


def test_grant_names_assets_by_name_else_uri() -> None:
    @dataclass
    class Asset:  # an orchestrator's asset object: name and/or uri
        name: str | None
        uri: str | None

    grant = core.task_grant(SCOPE, inlets=[Asset(None, "s3://b/raw")], outlets=[Asset("o", "x")])
    assert grant.read_assets == {"s3://b/raw"}
    assert grant.write_assets == {"o"}
    upper = core.task_grant(
        SCOPE, outlets=["a"], name_of=lambda a: str(a).upper()
    )  # an adapter's own rule
    assert upper.write_assets == {"A"}
    with pytest.raises(InvalidTypeError, match="must be a TaskScope"):
        core.task_grant(("etl", "r1", "load"))  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        core.task_grant(SCOPE, inlets=[42])


def test_mint_with_a_given_key_or_the_one_the_environment_names(
    keys: tuple[bytes, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private_pem, public_pem = keys
    grant = core.task_grant(SCOPE, inlets=["raw"], outlets=["orders"])
    assert _verified(core.mint_task_token(grant, private_key=private_pem), public_pem) == grant
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(private_pem)
    monkeypatch.setenv(core.PRIVATE_KEY_FILE_ENV, str(key_file))
    assert _verified(core.mint_task_token(grant), public_pem) == grant
    monkeypatch.setenv(core.ISSUER_ENV, "scheduler-1")
    issued = core.mint_task_token(grant)
    assert TokenVerifier(load_public_key(public_pem), issuer="scheduler-1").verify(issued) == grant
    monkeypatch.delenv(core.ISSUER_ENV)

    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 32)
    monkeypatch.setenv(core.SHARED_SECRET_FILE_ENV, str(secret))
    with pytest.raises(ConfigError, match="not both"):
        core.mint_task_token(grant)
    monkeypatch.delenv(core.PRIVATE_KEY_FILE_ENV)
    hs256 = core.mint_task_token(grant)
    assert TokenVerifier(SharedSecret(b"s" * 32)).verify(hs256) == grant


def test_no_key_or_a_bad_one_is_a_config_error_that_shows_no_key(
    keys: tuple[bytes, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = core.task_grant(SCOPE)
    with pytest.raises(ConfigError) as missing:
        core.mint_task_token(grant)
    assert core.PRIVATE_KEY_FILE_ENV in str(missing.value)
    assert "statestore token keygen" in str(missing.value)
    public_file = tmp_path / "public.pem"  # the wrong half of the pair
    public_file.write_bytes(keys[1])
    monkeypatch.setenv(core.PRIVATE_KEY_FILE_ENV, str(public_file))
    with pytest.raises(ConfigError) as wrong:
        core.mint_task_token(grant)
    assert f"${core.PRIVATE_KEY_FILE_ENV} ({public_file})" in str(wrong.value)
    assert "-----BEGIN" not in str(wrong.value)
    assert keys[1].decode().splitlines()[1] not in str(wrong.value)


def test_server_store_uses_the_url_given_or_configured(
    keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = core.task_grant(SCOPE)
    with pytest.raises(ConfigError, match="no state server URL"):
        core.server_store(grant, private_key=keys[0])
    with pytest.raises(ConfigError, match="http:// or https://"):
        core.server_store(grant, url="sqlite:///x.db", private_key=keys[0])
    monkeypatch.setenv("STATESTORE__CLIENT__URL", "http://state.invalid:8000")
    with core.server_store(grant, private_key=keys[0], updated_by="me") as store:
        assert isinstance(store, StateStore)
        assert "http://state.invalid:8000" in repr(store)
        token = store.config.client.token
        assert _verified(token, keys[1]) == grant  # the store presents the task's token
        assert token not in repr(store)
        assert token not in str(store.config.as_dict())  # shown masked, as every secret
    with core.server_store(grant, url="https://other.invalid", private_key=keys[0]) as store:
        assert "https://other.invalid" in repr(store)


# -- the adapters, with stand-in orchestrator modules -------------------------------------


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``stand_in(name, modules)``: import ``statestore.integrations.<name>`` over fake
    orchestrator modules; both are removed from ``sys.modules`` afterwards."""
    loaded: list[str] = []

    def load(name: str, modules: dict[str, types.ModuleType]) -> Any:
        for module_name, module in modules.items():
            monkeypatch.setitem(sys.modules, module_name, module)
        target = f"statestore.integrations.{name}"
        monkeypatch.delitem(sys.modules, target, raising=False)
        loaded.append(target)
        return importlib.import_module(target)

    yield load
    import statestore.integrations as package

    for target in loaded:
        sys.modules.pop(target, None)
        # `from statestore.integrations import airflow` would find the attribute first
        package.__dict__.pop(target.rsplit(".", 1)[1], None)


class _Base:
    pass


def test_airflow_grant_from_the_task_context(stand_in: Any, keys: tuple[bytes, bytes]) -> None:
    state = _module("airflow.state", AssetScope=_Base, BaseStoreBackend=_Base, TaskScope=_Base)
    airflow = stand_in(
        "airflow", {"airflow": _module("airflow", state=state), "airflow.state": state}
    )

    @dataclass
    class Asset:
        name: str
        uri: str

    ti = types.SimpleNamespace(dag_id="etl", run_id="r1", task_id="load", map_index=2)
    context = {"ti": ti, "inlets": [Asset("raw", "s3://b/raw")], "outlets": [Asset("o", "s3://o")]}
    grant = airflow.task_grant(context)
    assert grant == Grant(
        "task:etl/r1/load[2]",
        task=TaskScope("etl", "r1", "load", 2),
        read_assets=frozenset({"raw"}),
        write_assets=frozenset({"o"}),
    )
    assert _verified(airflow.mint_task_token(context, private_key=keys[0]), keys[1]) == grant
    with airflow.server_store(context, url="http://s.invalid", private_key=keys[0]) as store:
        assert _verified(store.config.client.token, keys[1]) == grant
    bare = airflow.task_grant({"ti": ti}, all_map_indices=True)  # no inlets or outlets
    assert (bare.read_assets, bare.write_assets, bare.all_map_indices) == (set(), set(), True)


def test_dagster_grant_from_the_step_context(stand_in: Any, keys: tuple[bytes, bytes]) -> None:
    from pydantic import BaseModel

    class AssetKey:
        def __init__(self, path: list[str]) -> None:
            self.path = list(path)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, AssetKey) and other.path == self.path

        def __hash__(self) -> int:
            return hash(tuple(self.path))

        def to_user_string(self) -> str:
            return "/".join(self.path)

    class AssetExecutionContext:
        pass

    dagster = stand_in("dagster", {"dagster": _module(
        "dagster", AssetExecutionContext=AssetExecutionContext, AssetKey=AssetKey,
        ConfigurableResource=BaseModel, InitResourceContext=_Base,
    )})  # fmt: skip
    orders, raw = AssetKey(["mart", "orders"]), AssetKey(["raw", "orders"])
    step = types.SimpleNamespace(key="orders")
    context = types.SimpleNamespace(
        job_name="nightly", run_id="run-2", run=types.SimpleNamespace(root_run_id="run-1"),
        op_handle="orders", get_mapping_key=lambda: None, selected_asset_keys={orders},
        has_assets_def=True, assets_def=types.SimpleNamespace(asset_deps={orders: {raw}}),
        get_step_execution_context=lambda: types.SimpleNamespace(step=step),
    )  # fmt: skip
    grant = dagster.task_grant(context, reads=["lookup"])
    assert grant.task == TaskScope("nightly", "run-1", "orders")  # the root run: resumable
    assert (grant.read_assets, grant.write_assets) == ({"raw/orders", "lookup"}, {"mart/orders"})
    with dagster.server_store(context, url="http://s.invalid", private_key=keys[0]) as store:
        assert _verified(store.config.client.token, keys[1]) == dagster.task_grant(context)
    op = types.SimpleNamespace(**{**vars(context), "selected_asset_keys": set(),
                                  "has_assets_def": False})  # fmt: skip
    assert dagster.task_grant(op, writes=[raw]).write_assets == {"raw/orders"}


def test_prefect_grant_from_the_running_task(stand_in: Any, keys: tuple[bytes, bytes]) -> None:
    @dataclass(frozen=True)
    class Asset:
        key: str
        name: None = None

    running = types.SimpleNamespace(
        task=types.SimpleNamespace(asset_deps=[Asset("s3://b/raw")], assets=[Asset("s3://b/o")])
    )

    class TaskRunContext:
        @staticmethod
        def get() -> Any:
            return running

    class AssetContext:
        @staticmethod
        def get() -> Any:
            return types.SimpleNamespace(upstream_assets={Asset("s3://b/up")})

    flow_run = types.SimpleNamespace(flow_name="nightly", id="fr-1", name="bouncing-fox")
    task_run = types.SimpleNamespace(task_name="export", id="tr-1", name="export-1", run_count=1,
                                     parameters={"day": "2026-12-01"})  # fmt: skip
    runtime = _module("prefect.runtime", flow_run=flow_run, task_run=task_run)
    prefect = stand_in("prefect", {
        "prefect": _module("prefect", runtime=runtime), "prefect.runtime": runtime,
        "prefect.context": _module("prefect.context", AssetContext=AssetContext,
                                   TaskRunContext=TaskRunContext),
    })  # fmt: skip
    grant = prefect.task_grant(map_over="day", writes=["extra"])
    assert grant.task == prefect.task_scope(map_over="day")
    assert grant.task.map_key is not None
    assert (grant.read_assets, grant.write_assets) == (
        {"s3://b/raw", "s3://b/up"},
        {"s3://b/o", "extra"},
    )
    with prefect.server_store(url="http://s.invalid", private_key=keys[0]) as store:
        assert _verified(store.config.client.token, keys[1]).task == TaskScope(
            "nightly", "fr-1", "export"
        )
    running.task = types.SimpleNamespace()  # a plain task: no assets of its own
    plain = prefect.task_grant()
    assert (plain.read_assets, plain.write_assets) == ({"s3://b/up"}, set())
