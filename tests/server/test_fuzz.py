"""Fuzz the state server from its own OpenAPI document (schemathesis, in process).

Every operation the document describes is called with requests generated from it --
schema-valid ones and deliberately invalid ones -- against the ASGI app over a migrated
SQLite store, once with an admin token and once with a task token. Each response must be
one the document describes: no 500, a documented status code and content type, a body
that matches its schema (problem details for every error), valid data accepted and
invalid data refused. Bounded and derandomized so it runs the same way every time.

What OpenAPI cannot say about query parameters, the document says in words and the
hook below encodes: ``map_index`` or ``map_key`` (not both), at least one of ``name``,
``uri``, ``asset_id`` for asset state (and a ``uri`` beside a ``name`` only if it is
that asset's), ``If-Match`` or ``If-None-Match`` (not both), and for the admin
task-state listing a ``task_id`` only with a ``run_id``, a ``map_index`` or ``map_key``
only with a ``task_id``.

The task token's requests are steered half into its grant (its own task instance, its
inlet and its outlet) so the fuzzer reaches the routes' own checks, not only the 403.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from statestore import StateStore, wire
from statestore.metastore import upgrade
from statestore.server import Grant, create_app, mint_token
from tests.server.conftest import ADMIN, TASK_A, Keys

pytestmark = pytest.mark.slow

INLET, OUTLET = "fuzz.inlet", "fuzz.outlet"
TASK_GRANT = Grant(
    f"task:{TASK_A.task_id}",
    task=TASK_A,
    read_assets=frozenset({INLET}),
    write_assets=frozenset({OUTLET}),
)
Case = schemathesis.Case[Any]  # generic in its operation type
ETAG = re.compile(r'"[0-9]+"')
MAX_EXAMPLES = 12  # per operation and token: 18 operations x 2 tokens, < 60 s in all
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same requests every run: CI failures reproduce
    deadline=None,  # a loaded 2-core machine; time is bounded by the example count
    database=None,  # nothing remembered between runs (and no .hypothesis/ written)
    suppress_health_check=list(HealthCheck),
)


# Valid requests may also lose a conditional write (412) or name an asset the registry
# has deactivated (409): documented outcomes of valid requests, not refusals of them.
# Query parameters the document does not name are ignored, as HTTP APIs do (the
# document does not forbid them), so requests that add some are not "invalid" ones.
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"allow-extra-parameters": False},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "412"]
            }
        },
    }
)


def _positive(case: Case) -> bool:
    return case.meta is None or not case.meta.generation.mode.is_negative


def _within_documented_rules(context: Any, case: Case) -> bool:
    """Valid requests keep the cross-parameter rules the descriptions state."""
    query = case.query
    if not _positive(case) or not isinstance(query, dict):
        return True  # invalid requests may break them too
    headers = {name.lower() for name in case.headers or {}}
    if {"if-match", "if-none-match"} <= headers:
        return False
    if case.operation.path == wire.TASK_STATE_LISTING:
        if "task_id" in query and "run_id" not in query:
            return False
        return "task_id" in query or not ({"map_index", "map_key"} & query.keys())
    if case.operation.path.startswith(wire.TASK_STATE):
        return not ("map_index" in query and "map_key" in query)
    if case.operation.path.startswith(wire.ASSET_STATE):
        # A uri given with a name must be that asset's uri, or a fresh one: which uris
        # earlier requests registered to other names, a generator cannot know.
        return any(name in query for name in ("name", "uri", "asset_id")) and not (
            "name" in query and "uri" in query
        )
    return True


def _quoted_etag(context: Any, case: Case) -> Case:
    """schemathesis builds header values of letters and digits only, so it cannot meet
    the documented ``If-Match`` pattern (``"7"``, quotes included) and sends ``7`` in a
    request it calls valid; quote it, as the document says a client must."""
    value = case.headers.get("If-Match") if case.headers else None
    if _positive(case) and isinstance(value, str) and not ETAG.fullmatch(value):
        case.headers["If-Match"] = wire.etag_for(int(value) if value.isdigit() else 1)
    return case


def _into_the_grant(context: Any, case: Case) -> Case:
    """Half the task token's valid requests name its own task instance or its assets."""
    query = case.query
    if not _positive(case) or not isinstance(query, dict):
        return case
    if len(repr(sorted(query.items(), key=str))) % 2:
        return case  # the other half stays where the fuzzer put it: mostly 403
    if "dag_id" in query:
        query.update(dag_id=TASK_A.dag_id, run_id=TASK_A.run_id, task_id=TASK_A.task_id)
        query.pop("map_key", None)
        query["map_index"] = TASK_A.map_index
    elif any(name in query for name in ("name", "uri", "asset_id")):
        for name in ("uri", "asset_id"):
            query.pop(name, None)
        reads = case.method.upper() == "GET" and len(query) % 2
        query["name"] = INLET if reads else OUTLET
    return case


def _schema(tmp_path: Path, keys: Keys, *, task: bool) -> Iterator[OpenApiSchema]:
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    upgrade(url)
    with StateStore(url) as store:
        app = create_app(store, public_key=keys.public_pem, close_store=False)
        schema = schemathesis.openapi.from_asgi(
            f"{wire.API_PREFIX}/openapi.json", app, config=CONFIG
        )
        schema.hook("filter_case")(_within_documented_rules)
        schema.hook("map_case")(_quoted_etag)
        if task:
            schema.hook("map_case")(_into_the_grant)
        yield schema


@pytest.fixture
def admin_api(tmp_path: Path, keys: Keys) -> Iterator[OpenApiSchema]:
    yield from _schema(tmp_path, keys, task=False)


@pytest.fixture
def task_api(tmp_path: Path, keys: Keys) -> Iterator[OpenApiSchema]:
    yield from _schema(tmp_path, keys, task=True)


def _token(grant: Grant, keys: Keys) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {mint_token(grant, keys.private_pem, ttl=timedelta(hours=1))}"
    }


admin_schema = schemathesis.pytest.from_fixture("admin_api")
task_schema = schemathesis.pytest.from_fixture("task_api")


@admin_schema.parametrize()
@FUZZ
def test_fuzz_with_an_admin_token(case: Case, keys: Keys) -> None:
    case.call_and_validate(headers=_token(ADMIN, keys))


@task_schema.parametrize()
@FUZZ
def test_fuzz_with_a_task_token(case: Case, keys: Keys) -> None:
    case.call_and_validate(headers=_token(TASK_GRANT, keys))
