"""Storage backends: the contract, the loader, and the built-in in-memory backend."""

from statestore.backends.base import BaseStateBackend, load_backend
from statestore.backends.memory import InMemoryStateBackend

__all__ = ["BaseStateBackend", "InMemoryStateBackend", "load_backend"]
