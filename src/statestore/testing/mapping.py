"""Conformance of the mapping protocol: accessors over the backend behave like a dict.

``state[key]``, ``state[key] = value``, ``del state[key]``, ``key in state``,
``len(state)``, ``iter(state)`` and the ``keys()``/``items()`` views, on a task and an
asset accessor built over the backend under test (``StateStore(backend=backend)``).
The accessor does the mapping; what these tests catch is a backend whose answers make
it wrong -- an expired key that still counts, a listing that disagrees with ``get``.
``len``/``iter``/views need the optional listing capability and are skipped, naming
it, without it. The protocol is sync only (async code has ``aget``/``akeys``/...).
"""

from __future__ import annotations

import pytest

from statestore.access_core import PREVIEW_KEYS
from statestore.accessors import AssetStateAccessor, TaskStateAccessor
from statestore.backends.base import BaseStateBackend
from statestore.exceptions import KeyNotFoundError, UnsupportedOperationError
from statestore.scopes import StateScope
from statestore.store import StateStore
from statestore.testing.cases import ConformanceCases, utc_now

__all__ = ["MappingConformance"]

KEYS = ["b", "a/2", "a/10", "a/1", "B", "é", "a"]


def _listing_or_skip(backend: BaseStateBackend, scope: StateScope) -> None:
    try:
        backend.list_items(scope, limit=1)
    except UnsupportedOperationError:
        pytest.skip("optional capability not offered: listing")


class MappingConformance(ConformanceCases):
    """The mapping protocol of accessors over the backend (part of ``BackendConformance``)."""

    def accessors(self, backend: BaseStateBackend) -> tuple[TaskStateAccessor, AssetStateAccessor]:
        """A task-state and an asset-state accessor over ``backend`` (the store is not
        closed here: closing it would close the backend your fixture owns)."""
        store = StateStore(backend=backend)
        return store.task_state(self.task_scope()), store.asset_state(self.asset_scope())

    def test_mapping_reads_writes_and_deletes_like_a_dict(self, backend: BaseStateBackend) -> None:
        for state in self.accessors(backend):
            state["k"] = {"rows": [1, 2], "ok": True}
            assert state["k"] == {"rows": [1, 2], "ok": True}
            assert "k" in state
            assert "K" not in state  # exact keys, as everywhere
            with pytest.raises(KeyError) as missing:
                state["absent"]
            assert isinstance(missing.value, KeyNotFoundError)
            assert missing.value.args == ("absent",)  # like a dict: args[0] is the key
            assert "absent" in str(missing.value)
            assert state.get("absent", 7) == 7  # get keeps its default
            state["k"] = 2
            assert state["k"] == 2
            del state["k"]
            assert "k" not in state
            assert backend.get(state.scope, "k") is None
            with pytest.raises(KeyNotFoundError):
                del state["k"]  # a mapping's del of a missing key raises...
            state.delete("k")  # ...delete() stays a no-op

    def test_mapping_treats_expired_keys_as_absent(self, backend: BaseStateBackend) -> None:
        for state in self.accessors(backend):
            scope = state.scope
            backend.set(scope, "old", '"gone"', expires_at=utc_now() - self.expired_ago)
            backend.set(scope, "live", '"here"', expires_at=utc_now() + self.expires_in)
            assert "old" not in state
            assert "live" in state
            with pytest.raises(KeyNotFoundError):
                state["old"]
            with pytest.raises(KeyNotFoundError):
                del state["old"]
            assert state["live"] == "here"
            _listing_or_skip(backend, scope)
            assert list(state) == ["live"]
            assert len(state) == 1
            assert dict(state.items()) == {"live": "here"}

    def test_len_iter_and_views_follow_the_listing(self, backend: BaseStateBackend) -> None:
        for state in self.accessors(backend):
            _listing_or_skip(backend, state.scope)
            assert len(state) == 0
            assert not state
            assert list(state) == []
            assert repr(state.keys()) == "StateKeys([])"
            for key in KEYS:
                state[key] = f"v-{key}"
            assert list(state) == sorted(KEYS)  # code point order
            assert len(state) == len(KEYS)
            assert state
            keys = state.keys(page_size=2)  # several round trips per walk
            assert list(keys) == sorted(KEYS)
            assert list(keys) == sorted(KEYS)  # a view: iterating again reads again
            assert len(keys) == len(KEYS)
            assert "a/10" in keys
            assert "zz" not in keys
            assert list(state.keys(prefix="a/")) == ["a/1", "a/10", "a/2"]
            assert "b" not in state.keys(prefix="a/")
            assert dict(state.items(page_size=3)) == {key: f"v-{key}" for key in KEYS}
            assert list(state.items(prefix="a/1")) == [("a/1", "v-a/1"), ("a/10", "v-a/10")]
            shown = repr(state.keys(prefix="a/"))
            assert shown == "StateKeys(['a/1', 'a/10', 'a/2'], prefix='a/')"
            for n in range(PREVIEW_KEYS):
                state[f"z{n:02d}"] = n
            shown = repr(state.keys())
            assert shown.startswith("StateKeys(["), shown
            assert shown.endswith(", ...])"), shown
            assert shown.count("'") == 2 * PREVIEW_KEYS  # the first ten keys, quoted
            assert (
                repr(state.items(prefix="a/10"))
                == "StateItems([('a/10', 'v-a/10')], prefix='a/10')"
            )
            state["a/10"] = "new"
            assert dict(state.items(prefix="a/10")) == {"a/10": "new"}  # live, not cached

    def test_mapping_validates_before_any_io(self, backend: BaseStateBackend) -> None:
        for state in self.accessors(backend):
            scope = state.scope
            with pytest.raises(TypeError):
                state[1]  # type: ignore[index]
            with pytest.raises(TypeError):
                1 in state  # noqa: B015 - the check itself must raise
            with pytest.raises(ValueError, match="key"):
                state[""]
            with pytest.raises(ValueError, match="key"):
                del state["x\x00y"]
            with pytest.raises(ValueError, match="None"):
                state["k"] = None  # None is no value, as on set()
            with pytest.raises(TypeError):
                state["k"] = b"bytes"
            assert backend.get(scope, "k") is None
            with pytest.raises(ValueError, match="page_size"):
                state.keys(page_size=0)  # at the call, not at the first next()
