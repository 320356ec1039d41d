"""How stored keys are shown: one JSON shape for scripts, one table for people.

The table has to stay readable in an 80-column terminal: timestamps are short relative
forms that never wrap (``3m ago``, ``in 30d``), a column appears only when it says
something (no map column for an unmapped task), and "not mapped" is ``-``, never the
``-1`` the database stores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any

from statestore.cli.common import console, echo_json, escape, short_time

if TYPE_CHECKING:  # annotations only: the metastore loads SQLAlchemy, rich its own time
    from rich.table import Table

    from statestore.metastore.maintenance import StoredKey

__all__ = ["NOT_MAPPED", "instance_label", "key_rows_json", "show_keys"]

NOT_MAPPED = -1
_VALUE_WIDTH = 40  # longer values are cut in the table; --json shows them whole


def instance_label(map_index: int | None, map_key: str | None) -> str:
    """``-`` for an unmapped task, else the map key or the map index."""
    if map_key is not None:
        return map_key
    return "-" if map_index in (None, NOT_MAPPED) else str(map_index)


def key_rows_json(rows: Sequence[StoredKey], *, task_level: bool) -> list[dict[str, Any]]:
    """The ``--json`` shape: absolute ISO timestamps and the raw map index."""
    out: list[dict[str, Any]] = []
    for r in rows:
        item: dict[str, Any] = {}
        if r.task is not None:
            item.update(dag_id=r.task[0], run_id=r.task[1], task_id=r.task[2])
        if task_level:
            item.update(map_index=r.map_index, map_key=r.map_key)
        item.update(
            key=r.key,
            value=json.loads(r.value),
            expires_at=r.expires_at.isoformat() if r.expires_at else None,
            updated_at=r.updated_at.isoformat(),
            updated_by=r.updated_by,
            version=r.version,
        )
        out.append(item)
    return out


def _cut(value: str) -> str:
    return value if len(value) <= _VALUE_WIDTH else value[: _VALUE_WIDTH - 3] + "..."


def show_keys(
    rows: Sequence[StoredKey], *, as_json: bool, task_level: bool, title: str, now: datetime
) -> None:
    """Print ``rows`` as JSON or as tables titled with the scope they belong to.

    Rows across several tasks (a whole run or dag) get one table per task instance,
    titled ``dag / run / task``: a run id column would fold mid-timestamp at 80 columns.
    """
    if as_json:
        echo_json(key_rows_json(rows, task_level=task_level))
        return
    if not rows:
        console.print(f"{escape(title)}: no keys")
        return
    for task, group in groupby(rows, key=lambda r: r.task):
        heading = title if task is None else " / ".join(task)
        console.print(_table(list(group), heading, now, task_level=task_level))


def _table(rows: list[StoredKey], title: str, now: datetime, *, task_level: bool) -> Table:
    mapped = task_level and any(
        r.map_index not in (None, NOT_MAPPED) or r.map_key is not None for r in rows
    )
    from rich.table import Table  # noqa: PLC0415 - rich loads when a command prints

    table = Table(title=escape(title), title_justify="left")
    if mapped:
        table.add_column("map", overflow="fold")
    table.add_column("key", overflow="fold")
    table.add_column("value", overflow="fold")
    if task_level:
        table.add_column("expires", no_wrap=True)
    table.add_column("v", justify="right", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    table.add_column("by", overflow="fold")
    for r in rows:
        cells = [escape(instance_label(r.map_index, r.map_key))] if mapped else []
        cells += [escape(r.key), escape(_cut(r.value))]
        if task_level:
            cells.append(short_time(r.expires_at, now))
        cells += [str(r.version), short_time(r.updated_at, now), escape(r.updated_by or "-")]
        table.add_row(*cells)
    return table
