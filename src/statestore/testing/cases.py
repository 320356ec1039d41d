"""The data the conformance suites write, shared by the sync and the async suite.

Everything here is overridable from a subclass of either suite: the scope factories
(:meth:`ConformanceCases.task_scope` / :meth:`ConformanceCases.asset_scope`) and the class
attributes (keys, values, expiry offsets, concurrency). Override only what your backend
genuinely cannot honour, and say why in a comment: each entry is here because some
real storage got it wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from statestore.scopes import AssetScope, StateScope, TaskScope
from statestore.testing.scopes import make_asset_scope, make_task_scope

__all__ = [
    "EXACT_KEYS",
    "LARGE_VALUE",
    "STORED_VALUES",
    "ConformanceCases",
    "distinct",
    "utc_now",
]

EXACT_KEYS: tuple[str, ...] = (
    # Case: MySQL's default collations are case-insensitive.
    "Key", "key", "KEY",
    # Trailing/leading whitespace: PAD SPACE collations and strip()-happy code.
    "k", "k ", " k", "k\t", "k\n",
    # Accents and width: accent-insensitive collations (utf8mb4_0900_ai_ci).
    "e", "é", "a", "\uff41",
    # 4-byte characters: utf8mb4_general_ci compares every emoji as equal.
    "😀", "😁", "\U0001d518", "U",  # FRAKTUR U folds to U under NFKC
    # Unicode normalisation: NFC and NFD spellings are different keys, never merged.
    "\u00e9t\u00e9", "e\u0301te\u0301",
    "\u00c5", "A\u030a", "\u212b",
    # Case folding that changes length.
    "ß", "ss", "SS", "\ufb01", "fi",
    # LIKE wildcards, path separators, quoting.
    "%", "_", "a/b", "a.b", "a\\b", "'; DROP TABLE x; --",
    # The longest key and its neighbour.
    "k" * 512, "k" * 511,
)  # fmt: skip
"""Keys that must all be distinct from each other in one scope."""

LARGE_VALUE: str = "[" + ",".join(f'"item-{i:08d}"' for i in range(3_850)) + "]"
"""About 60 KB of JSON text (under the default ``max_value_bytes`` of 65535)."""

STORED_VALUES: tuple[str, ...] = (
    "1",
    '"plain"',
    '""',
    "true",
    "-0.0",
    "1e+16",
    "123456789012345678901234567890",
    # Key order and compact separators must survive (a JSONB column would reorder).
    '{"b":1,"a":[true,false,null],"c":{"z":-1.5,"y":""}}',
    '"😀 ünïcode e\u0301 \\u0000 \\n \\t \\" \' %s {} \\\\"',
    '"' + "😀é" * 2_000 + '"',
    LARGE_VALUE,
)
"""JSON texts a backend must store and return byte-for-byte."""


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)


class ConformanceCases:
    """Scope factories and data shared by both suites; override in your subclass.

    Tests build every scope through :meth:`task_scope` and :meth:`asset_scope`, so a
    backend whose storage is shared between test runs can, for example, make the
    default dag id unique. Factories must honour every field they are given.
    """

    exact_keys: ClassVar[tuple[str, ...]] = EXACT_KEYS
    stored_values: ClassVar[tuple[str, ...]] = STORED_VALUES
    expired_ago: ClassVar[timedelta] = timedelta(seconds=1)
    """How far in the past an "already expired" ``expires_at`` lies."""
    expires_in: ClassVar[timedelta] = timedelta(hours=1)
    """How far in the future a "not yet expired" ``expires_at`` lies."""
    concurrent_writers: ClassVar[int] = 8
    writes_per_writer: ClassVar[int] = 50

    # -- scope factories ------------------------------------------------------------

    def task_scope(self, **overrides: Any) -> TaskScope:
        """A task scope; defaults ``("dag", "run", "task", -1)``, ``overrides`` win."""
        return make_task_scope(**overrides)

    def asset_scope(self, name: str | None = "asset", uri: str | None = None) -> AssetScope:
        """An asset scope; ``name=None`` gives a uri-only reference."""
        if name is None:
            return AssetScope(uri=uri)
        return make_asset_scope(name, uri)

    # -- derived data ------------------------------------------------------------------

    def both_kinds(self) -> tuple[TaskScope, AssetScope]:
        """One task scope and one asset scope: most behaviours hold for both."""
        return self.task_scope(), self.asset_scope()

    def neighbour_task_scopes(self) -> list[TaskScope]:
        """Task scopes that differ from :meth:`task_scope` in exactly one way each."""
        base = self.task_scope()
        return [
            self.task_scope(map_index=0),
            self.task_scope(map_index=1),
            self.task_scope(task_id=base.task_id + "2"),
            self.task_scope(run_id=base.run_id + "2"),
            self.task_scope(dag_id=base.dag_id + "2"),
            # Case and whitespace in ids are exact too.
            self.task_scope(task_id=base.task_id.upper()),
            self.task_scope(task_id=base.task_id + " "),
            # Separator tricks: ids that collide if a backend joins them naively.
            self.task_scope(dag_id=f"{base.dag_id}/{base.run_id}", run_id=base.task_id),
            self.task_scope(run_id=f"{base.run_id}/{base.task_id}", task_id="x"),
            self.task_scope(run_id=f"{base.run_id}\x01{base.task_id}", task_id="x"),
            self.task_scope(dag_id=f"{base.dag_id}:{base.run_id}", run_id=base.task_id),
        ]

    def assets_named_like_ids(self) -> list[AssetScope]:
        """Assets whose names equal the ids of :meth:`task_scope` (and their joins)."""
        base = self.task_scope()
        names = [
            base.dag_id,
            base.run_id,
            base.task_id,
            f"{base.dag_id}/{base.run_id}/{base.task_id}",
            f"{base.dag_id}:{base.run_id}:{base.task_id}:{base.map_index}",
        ]
        return [self.asset_scope(name) for name in names]

    def concurrent_values(self, writer: int) -> list[str]:
        """The values writer ``writer`` writes, in order (JSON strings)."""
        return [f'"{writer}:{i}"' for i in range(self.writes_per_writer)]

    def all_concurrent_values(self) -> set[str]:
        """Every value any writer writes."""
        return {v for w in range(self.concurrent_writers) for v in self.concurrent_values(w)}


def distinct(scopes: Iterable[StateScope]) -> list[StateScope]:
    """``scopes`` without duplicates, in order (a guard for overridden factories)."""
    seen: list[StateScope] = []
    for scope in scopes:
        if scope not in seen:
            seen.append(scope)
    return seen
