"""Every error statestore raises, in one place.

Each class derives from :class:`StateStoreError` *and* from the builtin a user would
naturally catch, so ``except ValueError`` keeps working for code that never heard of
statestore::

    StateStoreError
    ├── InvalidKeyError            (ValueError)   key is not 1..512 chars or contains NUL
    ├── InvalidValueError          (ValueError)   None, NaN/±inf, or otherwise unusable
    │   ├── ValueTooLargeError     (ValueError)   serialized value over max_value_bytes
    │   └── BatchTooLargeError     (ValueError)   batch over max_batch_keys/_bytes
    ├── UnserializableValueError   (TypeError)    not JSON: bytes, set, datetime, ...
    ├── InvalidScopeError          (ValueError)   bad dag/run/task id, map index or asset
    ├── InvalidRetentionError      (ValueError)   timedelta <= 0
    ├── ConfigError                (ValueError)   bad setting, names key and source
    ├── UnknownAssetError          (KeyError)     asset not registered (auto-register off)
    ├── UndeclaredAssetError       (KeyError)     not an inlet/outlet of this task
    ├── KeyNotFoundError           (KeyError)     state[key] / del state[key]: key absent
    ├── AmbiguousAssetError        (ValueError)   shorthand used with != 1 declared asset
    ├── InactiveAssetError         (LookupError)  writing to a deactivated asset
    ├── VersionConflictError       (ValueError)   compare-and-set lost (versioned writes)
    ├── UnsupportedOperationError  (NotImplementedError)  optional backend capability
    ├── SchemaOutOfDateError       (RuntimeError) database not migrated to this release
    ├── StoreClosedError           (RuntimeError) the StateStore was used after close()
    ├── BackendUnavailableError    (ConnectionError)  database down / unreachable
    ├── AuthenticationError        (PermissionError)  state server: no valid token (401)
    └── AccessDeniedError          (PermissionError)  state server: outside the grant (403)
        └── ReadOnlyServerError    (PermissionError)  state server started read-only (403)

Type errors on *types* (a key that is not a ``str``, a retention that is not a
``timedelta``) are raised as :class:`InvalidTypeError`, a ``TypeError``.

Backends translate driver errors into these at one boundary, keeping ``__cause__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statestore.items import StoredItem

__all__ = [
    "AccessDeniedError",
    "AmbiguousAssetError",
    "AuthenticationError",
    "BackendUnavailableError",
    "BatchTooLargeError",
    "ConfigError",
    "InactiveAssetError",
    "InvalidKeyError",
    "InvalidRetentionError",
    "InvalidScopeError",
    "InvalidTypeError",
    "InvalidValueError",
    "KeyNotFoundError",
    "ReadOnlyServerError",
    "SchemaOutOfDateError",
    "StateStoreError",
    "StoreClosedError",
    "UndeclaredAssetError",
    "UnknownAssetError",
    "UnserializableValueError",
    "UnsupportedOperationError",
    "ValueTooLargeError",
    "VersionConflictError",
]


class StateStoreError(Exception):
    """Root of every error raised by statestore."""


class InvalidTypeError(StateStoreError, TypeError):
    """An argument has the wrong Python type (e.g. a key that is not ``str``)."""


class InvalidKeyError(StateStoreError, ValueError):
    """A key is a ``str`` but not a valid one: empty, longer than 512 chars, or has NUL."""


class InvalidValueError(StateStoreError, ValueError):
    """A value cannot be stored: ``None`` at the top level, NaN or infinity."""


class ValueTooLargeError(InvalidValueError):
    """The serialized value is larger than ``max_value_bytes``; nothing was written."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"value is {size} bytes as UTF-8 JSON, over the limit of {limit} bytes "
            "([state_store] max_value_bytes); store large values through a worker-side "
            "backend ([workers] state_backend) or raise the limit"
        )


class BatchTooLargeError(InvalidValueError):
    """A batch has more keys than ``[state_store] max_batch_keys`` or more bytes (keys
    and serialized values, UTF-8) than ``max_batch_bytes``; nothing was read or written.

    ``unit`` is ``"keys"`` or ``"bytes"``; ``size`` and ``limit`` are counted in it.
    """

    def __init__(self, size: int, limit: int, unit: str = "keys") -> None:
        self.size = size
        self.limit = limit
        self.unit = unit
        setting = "max_batch_keys" if unit == "keys" else "max_batch_bytes"
        super().__init__(
            f"the batch has {size} {unit}, over the limit of {limit} ([state_store] "
            f"{setting}); split it into smaller batches or raise the limit"
        )


class UnserializableValueError(StateStoreError, TypeError):
    """A value (or something nested in it) is not JSON: the message names the path."""


class InvalidScopeError(StateStoreError, ValueError):
    """A scope field is invalid: empty or over-long id, NUL, ``map_index < -1``."""


class InvalidRetentionError(StateStoreError, ValueError):
    """A retention ``timedelta`` is zero or negative."""


class ConfigError(StateStoreError, ValueError):
    """A setting is invalid; the message names the key and where the value came from."""


class UnknownAssetError(StateStoreError, KeyError):
    """The asset is not registered and auto-registration is off."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a sentence reads better unquoted.
        return str(self.args[0]) if self.args else ""


class UndeclaredAssetError(StateStoreError, KeyError):
    """Subscripted ``AssetStateAccessors`` with an asset the task did not declare."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class KeyNotFoundError(StateStoreError, KeyError):
    """``state[key]`` or ``del state[key]`` of a key that is absent (or expired).

    As with a ``dict``, ``args[0]`` is the key itself; the message also names the scope.
    ``get`` returns its default and ``delete`` does nothing instead of raising this.
    """

    def __init__(self, key: str, where: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.where = where

    def __str__(self) -> str:
        where = f" in {self.where}" if self.where else ""
        return f"{self.key!r} is not set{where} (absent or expired)"


class AmbiguousAssetError(StateStoreError, ValueError):
    """The single-asset shorthand was used, but the task declares zero or several assets."""


class InactiveAssetError(StateStoreError, LookupError):
    """The asset was deactivated; its state can be read and cleared but not written."""


class VersionConflictError(StateStoreError, ValueError):
    """A versioned write lost: the key's current version is not the expected one.

    ``current_version`` is the version found (0: the key is absent; ``None``: unknown).
    ``current`` is the live row the backend read to find that out, when it read one
    (a backend-level ``StoredItem``: its value is still JSON text), else ``None``; it is
    what lets ``update`` re-apply its function after a lost race without reading again.
    """

    def __init__(
        self, message: str, *, current_version: int | None, current: StoredItem | None = None
    ) -> None:
        self.current_version = current_version
        self.current = current
        super().__init__(message)


class UnsupportedOperationError(StateStoreError, NotImplementedError):
    """The backend does not offer an optional capability (listing, versions, ...)."""


class SchemaOutOfDateError(StateStoreError, RuntimeError):
    """The database schema is missing or older than this release expects."""


class StoreClosedError(StateStoreError, RuntimeError):
    """A :class:`~statestore.StateStore` (or an accessor built from it) was used after
    ``close()``/``aclose()``: a closed store never reconnects behind its owner's back.
    Build a new store, or keep one open for the life of the process."""


class BackendUnavailableError(StateStoreError, ConnectionError):
    """The storage cannot be reached; the message names the host, never a password."""


class AuthenticationError(StateStoreError, PermissionError):
    """The state server refused the request's token: missing, expired, tampered, signed
    for another audience, or unsigned (HTTP 401). Nothing was read or written."""


class AccessDeniedError(StateStoreError, PermissionError):
    """The token is valid but does not grant this scope: another task instance, an asset
    that is not among its inlets (reads) or outlets (writes), or an admin route
    (HTTP 403). Nothing was read or written."""


class ReadOnlyServerError(AccessDeniedError):
    """The state server was started read-only (``statestore serve --read-only``): it
    refuses every write, delete, clear, cleanup and asset change (HTTP 403), whatever
    the token grants. Reads and dry runs still work. Nothing was written."""
