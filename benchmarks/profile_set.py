"""Where a set's time goes: cProfile over ``--ops`` task-state sets on one database.

``python -m benchmarks.profile_set postgresql+psycopg://postgres@127.0.0.1:5432/db``
(the database must be migrated: ``statestore --url ... db upgrade``). Prints the wall
time per set, the profiled time per set, and the functions that took the most of it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from statestore import StateStore, StateStoreConfig, TaskScope

VALUE = {"status": "running", "rows": 123456, "note": "x" * 84}  # 128 bytes as JSON


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_set")
    parser.add_argument("url")
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    config = StateStoreConfig(database={"url": args.url}, state_store={"default_retention_days": 0})
    with StateStore(config=config) as store:
        state = store.task_state(TaskScope("profile", "run", "task"))
        for i in range(300):  # warm up: connections, compiled and prepared statements
            state.set(f"warm{i}", VALUE)
        started = time.perf_counter()
        for i in range(args.ops):
            state.set(f"timed{i}", VALUE)
        wall = (time.perf_counter() - started) / args.ops * 1e6
        profile = cProfile.Profile()
        profile.enable()
        for i in range(args.ops):
            state.set(f"profiled{i}", VALUE)
        profile.disable()
    stats = pstats.Stats(profile)
    profiled = stats.total_tt / args.ops * 1e6  # type: ignore[attr-defined]
    print(f"wall {wall:.0f} µs per set; profiled {profiled:.0f} µs per set")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
