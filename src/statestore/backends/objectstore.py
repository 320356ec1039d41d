"""``ObjectStoreStateBackend``: values as objects in any fsspec filesystem.

A worker-side backend (``[workers] state_backend =
statestore.backends.objectstore.ObjectStoreStateBackend``): each (scope, key) is one
object under ``[workers] object_store_url`` — ``file://``, ``memory://``, ``s3://``,
``gs://``, anything fsspec opens — and only its reference goes to the database.

Object names are built from SHA-256 digests of the scope and key, never from the text
itself, so no key or id — ``..``, ``/``, ``%2e%2e``, NUL, absolute paths, URL schemes,
Unicode look-alikes, case-only differences — can name a path outside the base or
collide on a case-insensitive filesystem. References read back from the database are
checked against the same shape before use.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from statestore.backends.base import BaseStateBackend
from statestore.config import StateStoreConfig, mask_url
from statestore.exceptions import (
    BackendUnavailableError,
    ConfigError,
    UnsupportedOperationError,
    ValueTooLargeError,
)
from statestore.metastore.digests import key_digest, ref_digest, task_digest, task_row_id
from statestore.scopes import AssetScope, StateScope, TaskScope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session


__all__ = ["REF_PATTERN", "ObjectStoreStateBackend", "is_object_ref", "object_ref"]

REF_PATTERN = (
    r"(task/[0-9a-f]{64}/(m(-1|[0-9]{1,10})|k[0-9a-f]{64})/[0-9a-f]{64}"
    r"|asset/[0-9a-f]{64}/[0-9a-f]{64})\.json"
)
"""The shape of every object reference (digests only), matched whole."""
_REF = re.compile(REF_PATTERN)


def _task_dir(scope: TaskScope) -> str:
    return f"task/{task_digest(scope).hex()}"


def _asset_dir(scope: AssetScope) -> str:
    # Assets are identified by name (a uri-only scope by its uri, as in the registry).
    identity = scope.name if scope.name is not None else scope.uri
    if identity is None:
        raise UnsupportedOperationError("object storage needs an asset name or uri, not an id")
    return f"asset/{ref_digest(identity).hex()}"


def _instance_dir(scope: TaskScope) -> str:
    # A map key can be any text: its digest names the folder, never the text itself.
    if scope.map_key is None:
        return f"{_task_dir(scope)}/m{scope.map_index}"
    return f"{_task_dir(scope)}/k{ref_digest(scope.map_key).hex()}"


def object_ref(scope: StateScope, key: str) -> str:
    """The deterministic object name (relative to the base URL) of one key."""
    # The file name is the database row's own digest, so `objects gc` can check whether
    # a row still holds an object with an index lookup.
    if isinstance(scope, TaskScope):
        return f"{_instance_dir(scope)}/{task_row_id(scope, key).hex()}.json"
    return f"{_asset_dir(scope)}/{key_digest(key).hex()}.json"


def is_object_ref(ref: object) -> bool:
    """Whether ``ref`` has the shape of this backend's object references (digests only)."""
    return isinstance(ref, str) and _REF.fullmatch(ref) is not None


def _checked(ref: str) -> str:
    if not _REF.fullmatch(ref):
        raise ValueError(f"not an object reference of this backend: {ref[:80]!r}")
    return ref


class ObjectStoreStateBackend(BaseStateBackend):
    """Worker-side backend storing each value as one object under ``base_url``.

    Writes go to a temporary name first and are then moved into place on filesystems
    where that is a rename (local files); object stores get a single PUT, which is
    atomic there. Objects are written as ``application/json`` where the store keeps
    content types. Credentials come from fsspec's usual sources (environment, config
    files, ``storage_options``) and never appear in errors.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_object_bytes: int = 0,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        try:
            import fsspec  # noqa: PLC0415 - optional dependency (extra "objectstore")
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise ConfigError(
                'ObjectStoreStateBackend needs fsspec: pip install "statestore[objectstore]"'
            ) from exc
        if not base_url:
            raise ConfigError("[workers] object_store_url must be set for ObjectStoreStateBackend")
        try:
            self._fs, root = fsspec.core.url_to_fs(base_url, **(storage_options or {}))
        except (ValueError, ImportError) as exc:
            shown = mask_url(base_url)
            raise ConfigError(f"[workers] object_store_url: cannot open {shown}: {exc}") from None
        self._root = root.rstrip("/")
        self._base_url = base_url
        self._local = "file" in _protocols(self._fs)
        self._max_object_bytes = max_object_bytes

    @classmethod
    def from_config(cls, config: StateStoreConfig) -> ObjectStoreStateBackend:
        """Build from ``[workers] object_store_url`` and ``max_object_bytes``."""
        return cls(
            config.workers.object_store_url, max_object_bytes=config.workers.max_object_bytes
        )

    def __repr__(self) -> str:
        return f"ObjectStoreStateBackend({mask_url(self._base_url.split('?')[0])!r})"

    def _path(self, ref: str) -> str:
        return posixpath.join(self._root, _checked(ref))

    # -- I/O, in one place ------------------------------------------------------------------

    def _write(self, ref: str, value: str) -> None:
        data = value.encode()
        if self._max_object_bytes and len(data) > self._max_object_bytes:
            raise ValueTooLargeError(len(data), self._max_object_bytes)
        path = self._path(ref)
        try:
            if self._local:
                self._fs.makedirs(posixpath.dirname(path), exist_ok=True)
                temporary = f"{path}.{uuid.uuid4().hex}.tmp"
                self._fs.pipe_file(temporary, data)
                self._fs.mv(temporary, path)  # a rename: readers see old or new, never half
            else:
                self._fs.pipe_file(path, data, content_type="application/json")
        except OSError as exc:
            raise BackendUnavailableError(
                f"object store {self!r} cannot write: {type(exc).__name__}"
            ) from exc

    def _read(self, ref: str) -> str:
        try:
            return bytes(self._fs.cat_file(self._path(ref))).decode()
        except FileNotFoundError:
            raise LookupError(f"object {ref} is gone") from None
        except OSError as exc:
            raise BackendUnavailableError(
                f"object store {self!r} cannot read: {type(exc).__name__}"
            ) from exc

    def _remove(self, relative: str, *, recursive: bool) -> None:
        path = posixpath.join(self._root, relative)
        try:
            self._fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            return  # already gone: deleting is idempotent
        except OSError as exc:
            raise BackendUnavailableError(
                f"object store {self!r} cannot delete: {type(exc).__name__}"
            ) from exc

    # -- the worker-side hooks ----------------------------------------------------------------

    def serialize_task_state_to_ref(self, *, value: str, key: str, scope: TaskScope) -> str:
        ref = object_ref(scope, key)
        self._write(ref, value)
        return ref

    def deserialize_task_state_from_ref(self, stored: str) -> str:
        return self._read(stored)

    def delete_task_state_objects(
        self, *, scope: TaskScope, key: str | None = None, all_map_indices: bool = False
    ) -> None:
        if key is not None:
            self._remove(object_ref(scope, key), recursive=False)
        elif all_map_indices:
            self._remove(_task_dir(scope), recursive=True)
        else:
            self._remove(_instance_dir(scope), recursive=True)

    def serialize_asset_state_to_ref(self, *, value: str, key: str, scope: AssetScope) -> str:
        ref = object_ref(scope, key)
        self._write(ref, value)
        return ref

    def deserialize_asset_state_from_ref(self, stored: str) -> str:
        return self._read(stored)

    def delete_asset_state_objects(self, *, scope: AssetScope, key: str | None = None) -> None:
        if key is not None:
            self._remove(object_ref(scope, key), recursive=False)
        else:
            self._remove(_asset_dir(scope), recursive=True)

    # Async twins run the blocking filesystem calls in a worker thread.

    async def aserialize_task_state_to_ref(self, *, value: str, key: str, scope: TaskScope) -> str:
        return await asyncio.to_thread(
            self.serialize_task_state_to_ref, value=value, key=key, scope=scope
        )

    async def adeserialize_task_state_from_ref(self, stored: str) -> str:
        return await asyncio.to_thread(self._read, stored)

    async def adelete_task_state_objects(
        self, *, scope: TaskScope, key: str | None = None, all_map_indices: bool = False
    ) -> None:
        await asyncio.to_thread(
            self.delete_task_state_objects, scope=scope, key=key, all_map_indices=all_map_indices
        )

    async def aserialize_asset_state_to_ref(
        self, *, value: str, key: str, scope: AssetScope
    ) -> str:
        return await asyncio.to_thread(
            self.serialize_asset_state_to_ref, value=value, key=key, scope=scope
        )

    async def adeserialize_asset_state_from_ref(self, stored: str) -> str:
        return await asyncio.to_thread(self._read, stored)

    async def adelete_asset_state_objects(
        self, *, scope: AssetScope, key: str | None = None
    ) -> None:
        await asyncio.to_thread(self.delete_asset_state_objects, scope=scope, key=key)

    # -- garbage collection support -------------------------------------------------------------

    def iter_objects(self) -> list[tuple[str, datetime | None]]:
        """Every object reference under the base with its modification time (if known)."""
        found: list[tuple[str, datetime | None]] = []
        for kind in ("task", "asset"):
            top = posixpath.join(self._root, kind)
            try:
                listing = self._fs.find(top, detail=True)
            except FileNotFoundError:
                continue
            for path, info in listing.items():
                relative = posixpath.relpath(path, self._root)
                if _REF.fullmatch(relative):
                    found.append((relative, _modified(info)))
        return found

    def delete_ref(self, ref: str) -> None:
        """Delete one object by reference (used by cleanup and ``objects gc``)."""
        self._remove(_checked(ref), recursive=False)

    # -- not a primary backend ------------------------------------------------------------------

    def _primary_only(self) -> UnsupportedOperationError:
        return UnsupportedOperationError(
            "ObjectStoreStateBackend is a worker-side backend: set it as "
            "[workers] state_backend, with the metastore as [state_store] backend"
        )

    def get(self, scope: StateScope, key: str, *, session: Session | None = None) -> str | None:
        raise self._primary_only()

    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        raise self._primary_only()

    def delete(self, scope: StateScope, key: str, *, session: Session | None = None) -> None:
        raise self._primary_only()

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        raise self._primary_only()

    async def aget(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        raise self._primary_only()

    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        raise self._primary_only()

    async def adelete(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> None:
        raise self._primary_only()

    async def aclear(
        self,
        scope: StateScope,
        *,
        all_map_indices: bool = False,
        session: AsyncSession | None = None,
    ) -> None:
        raise self._primary_only()


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return set(protocol) if isinstance(protocol, (tuple, list)) else {protocol}


def _modified(info: dict[str, Any]) -> datetime | None:
    from datetime import timezone  # noqa: PLC0415

    for name in ("mtime", "LastModified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=timezone.utc)
    return None
