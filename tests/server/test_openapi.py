"""The committed OpenAPI document is the one the app serves."""

from __future__ import annotations

import json
from pathlib import Path

from statestore import wire
from statestore.server.openapi import document_text

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_document_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == document_text(), (
        "docs/openapi.json is stale: run python -m statestore.server.openapi docs/openapi.json"
    )


def test_document_describes_every_wire_path() -> None:
    paths = json.loads(document_text())["paths"]
    for path in (
        wire.TASK_KEY,
        wire.TASK_STATE,
        wire.ASSET_KEY,
        wire.ASSET_STATE,
        wire.ASSETS,
        wire.CLEANUP,
        wire.SWEEP,
        wire.LIVEZ,
        wire.READYZ,
    ):
        assert path in paths, path
    put = paths[wire.TASK_KEY]["put"]
    names = {p["name"] for p in put["parameters"]}
    assert {
        "dag_id",
        "run_id",
        "task_id",
        "key",
        "expires_at",
        "If-Match",
        "If-None-Match",
    } <= names
    assert put["security"] == [{"bearer": []}]
