"""Storage backends: the contract, the loader, and the built-in in-memory backend."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

from statestore.backends.base import BaseStateBackend, load_backend
from statestore.backends.memory import InMemoryStateBackend

if TYPE_CHECKING:
    from statestore.backends.http import HttpStateBackend

__all__ = ["BaseStateBackend", "InMemoryStateBackend", "load_backend", "state_server"]


def state_server(backend: BaseStateBackend) -> HttpStateBackend | None:
    """``backend`` if it is a state server's (:class:`HttpStateBackend`), else ``None``.

    Without importing the HTTP backend (httpx is the ``client`` extra's): a backend
    that is one was built from that module, so it is imported already."""
    module = sys.modules.get("statestore.backends.http")
    if module is not None and isinstance(backend, module.HttpStateBackend):
        return cast("HttpStateBackend", backend)
    return None
