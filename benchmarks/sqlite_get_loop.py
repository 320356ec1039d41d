"""``python -m benchmarks.sqlite_get_loop``: a SQLite get in a tight loop, statestore
against diskcache and raw ``sqlite3``.

The full benchmark times every operation (for p50/p99) in three rounds; a difference
of a few hundred nanoseconds on a ~7 µs read is smaller than its spread. This loop
reads 2,000 stored keys without per-call timing, the three targets interleaved in
twelve rounds, and keeps each target's best round. It prints µs per get and the
ratios (above 1: statestore faster).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from benchmarks.targets import DiskcacheTarget, StatestoreTarget, SyncTarget, raw_sqlite
from statestore.metastore import upgrade

KEYS = 2000
ROUNDS = 12


def _best_round(get: Callable[[str], Any], keys: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for key in keys:
            get(key)
        best = min(best, time.perf_counter() - start)
    return best / len(keys) * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-get-loop-") as directory:
        _compare(f"sqlite:///{directory}/state.db")


def _compare(url: str) -> None:
    upgrade(url)
    raw = raw_sqlite(make_url(url))
    targets: list[SyncTarget] = [StatestoreTarget(url), DiskcacheTarget(), raw]
    keys = [f"k{i}" for i in range(KEYS)]
    for target in targets:
        for i, key in enumerate(keys):
            target.set(key, {"i": i, "v": "x" * 20})
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for target in targets:
            this_round = _best_round(target.get, keys)
            best[target.name] = min(best.get(target.name, float("inf")), this_round)
    for target in targets:
        target.close()
    print("  ".join(f"{name} {us:.2f} µs" for name, us in best.items()))
    print(
        f"statestore / diskcache {best['diskcache'] / best['statestore']:.3f}  "
        f"statestore / raw_sqlite3 {best['raw_sqlite3'] / best['statestore']:.3f}"
    )


if __name__ == "__main__":
    main()
