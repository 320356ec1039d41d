"""Values <-> JSON text, with every check done before anything is written.

Backends store JSON *strings*; the accessor encodes here, so every backend sees the same
compact, validated text and ``get`` returns a value equal to the one set. JSON alone is
not strict enough for that promise: ``json.dumps`` silently turns tuples into lists,
int dict keys into strings and accepts NaN, so the value is walked first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from statestore.exceptions import InvalidValueError, UnserializableValueError, ValueTooLargeError

__all__ = ["MAX_NESTING_DEPTH", "decode_value", "encode_value", "utf8_size"]

MAX_NESTING_DEPTH = 200
"""Deepest allowed nesting of lists/dicts; deeper values would break JSON decoders."""

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()
# The decoder's C scanner (set by JSONDecoder.__init__; typeshed does not list it).
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
_SCALARS = (str, int, float)  # bool is an int


def _path(parts: tuple[str | int, ...]) -> str:
    return "value" + "".join(f"[{part!r}]" for part in parts)


def _check_scalar(item: object, parts: tuple[str | int, ...]) -> None:
    if isinstance(item, float) and not math.isfinite(item):
        raise InvalidValueError(f"{_path(parts)}: {item!r} is not allowed in JSON")
    if isinstance(item, str):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValueError(
                f"{_path(parts)}: string contains a lone surrogate and is not valid UTF-8"
            ) from None


_NONE = type(None)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plainly_valid(value: object) -> bool:  # noqa: PLR0912 - one flat dispatch loop, for speed
    """The fast check: exact JSON types only, no paths kept. False means "look closer"
    (a problem, or merely a subclass such as an IntEnum), never a verdict."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return False
        elif kind is int or kind is bool or kind is _NONE:
            continue
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif depth >= MAX_NESTING_DEPTH:
            return False
        elif kind is list:
            stack.extend((child, depth + 1) for child in item)
        elif kind is dict:
            for k, child in item.items():
                if type(k) is not str or not (k.isascii() or _encodes(k)):
                    return False
                stack.append((child, depth + 1))
        else:
            return False
    return True


def _validate(value: object) -> None:
    """Raise on the first bad part of ``value``, naming its path.

    Runs only when the fast check declined; walks iteratively (no recursion limit).
    """
    if value is None:
        raise InvalidValueError("value must not be None; use delete() to remove a key")
    stack: list[tuple[object, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, parts = stack.pop()
        if item is None and parts:
            continue
        if isinstance(item, _SCALARS):
            _check_scalar(item, parts)
            continue
        if len(parts) >= MAX_NESTING_DEPTH:
            raise InvalidValueError(
                f"{_path(parts[:3])}...: nested deeper than {MAX_NESTING_DEPTH} levels"
            )
        if isinstance(item, list):
            stack.extend((child, (*parts, i)) for i, child in enumerate(item))
        elif isinstance(item, dict):
            for k, child in item.items():
                if not isinstance(k, str):
                    raise UnserializableValueError(
                        f"{_path(parts)}: dict key {k!r} is {type(k).__name__}, "
                        "but JSON object keys must be str"
                    )
                if not _encodes(k):
                    raise InvalidValueError(
                        f"{_path(parts)}: dict key contains a lone surrogate and is not valid UTF-8"
                    )
                stack.append((child, (*parts, k)))
        else:
            hint = _HINTS.get(type(item).__name__, "")
            raise UnserializableValueError(
                f"{_path(parts)}: {type(item).__name__} is not JSON{hint}"
            )


# What to store instead, for the non-JSON types people reach for first (by name, so
# codec needs no imports for them).
_HINTS = {
    "datetime": "; store value.isoformat() and parse it back with datetime.fromisoformat()",
    "date": "; store value.isoformat() and parse it back with date.fromisoformat()",
    "time": "; store value.isoformat()",
    "Decimal": "; store str(value) to keep every digit, or float(value)",
    "set": "; store sorted(value) (a list)",
    "frozenset": "; store sorted(value) (a list)",
    "tuple": "; store list(value)",
    "bytes": "; store value.decode() or base64 text",
    "UUID": "; store str(value)",
}


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes as UTF-8, without encoding it when it is ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def encode_value(value: Any, *, max_bytes: int) -> str:
    """Validate ``value`` and return its compact JSON text.

    Raises ``InvalidValueError`` (``None``, NaN/inf, lone surrogates, too deep, int too
    large to print), ``UnserializableValueError`` (a non-JSON type, naming its path), or
    ``ValueTooLargeError`` when the UTF-8 text exceeds ``max_bytes`` (0 = no limit).
    Pure: no I/O, so a rejected value can never have been half-written.
    """
    if value is None:
        raise InvalidValueError("value must not be None; use delete() to remove a key")
    if not _plainly_valid(value):
        _validate(value)
    try:
        text = _encoder.encode(value)
    except ValueError as exc:  # e.g. an int beyond sys.get_int_max_str_digits()
        raise InvalidValueError(f"value cannot be encoded as JSON: {exc}") from None
    if max_bytes:
        size = utf8_size(text)
        if size > max_bytes:
            raise ValueTooLargeError(size, max_bytes)
    return text


def decode_value(text: str) -> Any:
    """Parse stored JSON text back into a Python value (ints stay ints)."""
    # The C scanner straight away: stored text is the encoder's (no whitespace around
    # it), so one call parses it all; anything else goes through the full decoder,
    # which skips whitespace and reports trailing data as JSON does.
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end == len(text):
        return value
    return _decoder.decode(text)
