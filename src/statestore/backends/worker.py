"""Envelopes: how a reference to an externally stored value sits in the database.

With a worker-side backend (``[workers] state_backend``) the database row holds a small
envelope instead of the value: ``{"$statestore":"ref","ref":"<reference>"}``. A user
value can never be mistaken for one, because any user ``dict`` that has the marker key
is itself wrapped on the way in, as ``{"$statestore":"data","value":<the dict>}``, and
unwrapped on the way out — with or without a worker-side backend configured. These are
pure functions; the accessors call them around the backend.
"""

from __future__ import annotations

import json
from typing import Any

from statestore.exceptions import ConfigError

__all__ = [
    "MARKER",
    "Envelope",
    "escape_value",
    "parse_envelope",
    "ref_envelope",
]

MARKER = "$statestore"
"""The key that makes a stored JSON object an envelope."""


def escape_value(value: Any) -> Any:
    """Wrap a user dict that carries the marker key, so it reads back as data."""
    if isinstance(value, dict) and MARKER in value:
        return {MARKER: "data", "value": value}
    return value


def ref_envelope(ref: str) -> str:
    """The JSON text stored in place of an externally stored value."""
    return json.dumps({MARKER: "ref", "ref": ref}, ensure_ascii=False, separators=(",", ":"))


class Envelope:
    """What a stored value turned out to be: plain data, or a reference."""

    __slots__ = ("ref", "value")

    def __init__(self, *, value: Any = None, ref: str | None = None) -> None:
        self.value = value
        self.ref = ref


def parse_envelope(decoded: Any) -> Envelope:
    """Classify a decoded stored value (cheap: one isinstance for ordinary values)."""
    if not (isinstance(decoded, dict) and MARKER in decoded):
        return Envelope(value=decoded)
    kind = decoded[MARKER]
    if kind == "data" and "value" in decoded:
        return Envelope(value=decoded["value"])
    if kind == "ref" and isinstance(decoded.get("ref"), str):
        return Envelope(ref=decoded["ref"])
    raise ConfigError(f"stored value has an unknown statestore envelope ({kind!r})")
