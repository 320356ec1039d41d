"""The OpenAPI description of the routes, and the committed copy in docs/openapi.json.

Routes read their query through :mod:`statestore.wire` (the same parser the client's
requests are built for), not through FastAPI's parameter binding, so the parameters are
declared here for the document. ``python -m statestore.server.openapi docs/openapi.json``
rewrites the committed copy; a test fails when it is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from statestore import wire
from statestore.scopes import MAX_ASSET_REF_LENGTH, MAX_ID_LENGTH, MAX_INTEGER_ID, MAX_KEY_LENGTH

__all__ = [
    "NO_NUL",
    "document_text",
    "key_operation",
    "listing",
    "main",
    "parameters",
    "problem_responses",
    "query",
]

_STR: dict[str, Any] = {"type": "string"}
NO_NUL = "^[^\\x00]*$"  # ids and keys are any text but NUL (scopes.check_key)


def _text(min_length: int, max_length: int) -> dict[str, Any]:
    """A string schema with the library's own limits, so the document admits exactly
    what the server accepts (the fuzz test holds it to that)."""
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, "pattern": NO_NUL}
    if min_length:
        schema["minLength"] = min_length
    return schema


_ID = _text(1, MAX_ID_LENGTH)
_ASSET_REF = _text(1, MAX_ASSET_REF_LENGTH)
_Spec = tuple[str, dict[str, Any], bool, str]
_TASK: list[_Spec] = [
    ("dag_id", _ID, True, "The DAG (workflow) id."),
    ("run_id", _ID, True, "The run id."),
    ("task_id", _ID, True, "The task id."),
    ("map_index", {"type": "integer", "minimum": -1, "maximum": MAX_INTEGER_ID, "default": -1},
     False, "The map index (-1: not mapped); or give map_key (not both)."),
    ("map_key", _ID, False,
     "A stable key of a mapped task instance, instead of map_index (not both)."),
]  # fmt: skip
_ASSET: list[_Spec] = [
    ("name", _ASSET_REF, False,
     "The asset's name (what task tokens grant). Give at least one of name, uri, asset_id."),
    ("uri", _ASSET_REF, False,
     "The asset's URI. With a name, it must be that asset's registered URI (or none "
     "registered yet): a URI that belongs to another asset is a 422."),
    ("asset_id", {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER_ID}, False,
     "The asset's registry id."),
]  # fmt: skip
_KEY: list[_Spec] = [("key", _text(1, MAX_KEY_LENGTH), True, "The key.")]
_LIST: list[_Spec] = [
    ("prefix", _text(0, MAX_KEY_LENGTH), False, "Only keys starting with this."),
    ("after", _text(0, MAX_KEY_LENGTH), False,
     "Only keys sorting after this one (the previous page's last)."),
    ("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}, False,
     "At most this many keys."),
    ("values", {"type": "boolean", "default": True}, False, "false: keys only (values null)."),
]  # fmt: skip


def _param(name: str, schema: dict[str, Any], required: bool, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": text}  # fmt: skip


def query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    """One optional query parameter."""
    return _param(name, schema, False, text)


def parameters(
    *, task: bool, key: bool = False, extra: dict[str, tuple[dict[str, Any], str]] | None = None
) -> list[dict[str, Any]]:
    """The query parameters of a state route; ``extra``: name -> (schema, description)."""
    found = [_param(*p) for p in (_TASK if task else _ASSET)]
    if key:
        found += [_param(*p) for p in _KEY]
    found += [_param(name, schema, False, text) for name, (schema, text) in (extra or {}).items()]
    return found


def listing() -> dict[str, tuple[dict[str, Any], str]]:
    """The extra parameters of a listing route."""
    return {name: (schema, text) for name, schema, _, text in _LIST}


_PROBLEM = {wire.PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_WHY = {
    401: "No valid token (missing, expired, tampered, wrong audience, unsigned).",
    403: "The token does not grant this scope.",
    404: "The key is absent or expired (type KeyAbsent), or the asset is unknown.",
    409: "The asset is inactive.",
    412: "If-Match / If-None-Match lost: nothing was written.",
    413: "The body is over the limit (refused before it was read).",
    422: "Invalid key, value, scope or parameter.",
    503: "The database is unreachable or not migrated.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """RFC 9457 problem-details responses for ``statuses``."""
    return {status: {"description": _WHY[status], "content": _PROBLEM} for status in statuses}


_ITEM_HEADERS = {
    "ETag": {"description": 'The version, as a strong ETag ("7").', "schema": _STR},
    wire.UPDATED_AT: {"description": "When it was written (ISO 8601, UTC).", "schema": _STR},
    wire.UPDATED_BY: {"description": "Who wrote it (percent-encoded).", "schema": _STR},
    wire.EXPIRES_AT: {"description": "When it stops reading (absent: never).", "schema": _STR},
}
_ANY_JSON: dict[str, Any] = {"description": "Any JSON value but null.", "not": {"type": "null"}}


def key_operation(method: str, *, task: bool) -> dict[str, Any]:
    """``openapi_extra`` for the one-key routes (GET, PUT, DELETE)."""
    if method == "GET":
        return {
            "parameters": parameters(task=task, key=True),
            "responses": {
                "200": {"description": "The value's JSON text; metadata in the headers.",
                        "headers": _ITEM_HEADERS,
                        "content": {"application/json": {"schema": _ANY_JSON}}},
            },
        }  # fmt: skip
    if method == "PUT":
        extra: dict[str, tuple[dict[str, Any], str]] = {
            "updated_by": (_text(0, MAX_ID_LENGTH),
                           "Who writes (admin tokens only; a task token's subject "
                           "is recorded instead)."),
        }  # fmt: skip
        if task:
            extra["expires_at"] = (
                {"type": "string", "format": "date-time"},
                "When the key expires (with a UTC offset); absent: never.",
            )
        return {
            "parameters": [
                *parameters(task=task, key=True, extra=extra),
                {"name": "If-Match", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": '^"[0-9]{1,18}"$'},
                 "description": 'Write only if the key is at this version ("7"); '
                                "not with If-None-Match."},
                {"name": "If-None-Match", "in": "header", "required": False,
                 "schema": {"type": "string", "enum": ["*"]},
                 "description": "*: write only if the key is absent; not with If-Match."},
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~:-]{1,128}$"},
                 "description": "Names a conditional write: a copy of an applied one "
                                "(a resend) is answered 204 and writes nothing. A new "
                                "random value for every write: one reused on the same "
                                "key while its receipt is kept (at least 15 minutes) "
                                "is answered 204 unwritten. Checked on every PUT, "
                                "acted on only with If-Match / If-None-Match."},
            ],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ANY_JSON}}},
        }  # fmt: skip
    return {"parameters": parameters(task=task, key=True)}


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; type urn:statestore:problem:<ExceptionName>.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}


def document_text() -> str:
    """The OpenAPI document of an app with default settings, as committed."""
    from statestore.server.app import openapi_document  # noqa: PLC0415 - import cycle

    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the document to the path given (or stdout)."""
    args = sys.argv[1:] if argv is None else argv
    text = document_text()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def listing_parameters() -> list[dict[str, Any]]:
    """The admin task-state listing's parameters: a dag, and optionally a run, a task
    of it, and one of that task's instances."""
    return [
        _param("dag_id", _ID, True, "The DAG (workflow) id."),
        _param("run_id", _ID, False, "Only this run."),
        _param("task_id", _ID, False, "Only this task of the run (needs run_id)."),
        _param("map_index", {"type": "integer", "minimum": -1, "maximum": MAX_INTEGER_ID}, False,
               "Only this map index of the task (needs task_id)."),
        _param("map_key", _ID, False, "Only this map key of the task (needs task_id)."),
    ]  # fmt: skip
