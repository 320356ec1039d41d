"""``python -m benchmarks.receipts [URL ...]``: what a write receipt costs a compare-and-set.

A state server runs a conditional write that names a write id as ``set_item_once``: a
transaction of four round trips (begin, the receipt, the write, commit) instead of the
one autocommit statement of ``set_item(..., if_version=)``. This times both on the
same backend and key, interleaved in rounds (the best round of each is kept), and
prints µs per write and the ratio. Without URLs: SQLite in a temporary directory, and
PostgreSQL and MariaDB from ``STATESTORE_TEST_POSTGRES_URL`` /
``STATESTORE_TEST_MYSQL_URL`` when set. The rows it writes are deleted afterwards
(its receipts are left to expire, as a server's are).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable

from statestore import MetastoreStateBackend, TaskScope
from statestore.write_ids import new_write_id

WRITES = 300
ROUNDS = 5
SCOPE = TaskScope("bench", "receipts", "cas")


def _time(write: Callable[[], None]) -> float:
    start = time.perf_counter()
    for _ in range(WRITES):
        write()
    return (time.perf_counter() - start) / WRITES * 1e6


def measure(url: str) -> tuple[float, float]:
    """Best µs per compare-and-set: without a receipt, and with one."""
    backend = MetastoreStateBackend(url)
    backend.upgrade()
    version = {"n": 0}
    backend.delete(SCOPE, "k")

    def plain() -> None:
        backend.set_item(SCOPE, "k", "1", if_version=version["n"])
        version["n"] += 1

    def once() -> None:
        backend.set_item_once(SCOPE, "k", "1", write_id=new_write_id(), if_version=version["n"])
        version["n"] += 1

    plain()
    once()  # connected, schema checked, old receipts removed
    best = {"plain": float("inf"), "once": float("inf")}
    for _ in range(ROUNDS):
        best["plain"] = min(best["plain"], _time(plain))
        best["once"] = min(best["once"], _time(once))
    backend.delete(SCOPE, "k")
    backend.close()
    return best["plain"], best["once"]


def main(urls: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-receipts-") as directory:
        if not urls:
            urls = [f"sqlite:///{directory}/state.db"]
            urls += [
                os.environ[name]
                for name in ("STATESTORE_TEST_POSTGRES_URL", "STATESTORE_TEST_MYSQL_URL")
                if os.environ.get(name)
            ]
        for url in urls:
            plain, once = measure(url)
            dialect = url.split(":", 1)[0]
            print(
                f"{dialect:28} set_item(if_version) {plain:7.1f} µs  "
                f"set_item_once {once:7.1f} µs  x{plain / once:.2f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
