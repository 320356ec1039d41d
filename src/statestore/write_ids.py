"""Write ids: a conditional write that arrives twice is applied once and answered twice.

HTTP's own compare-and-set (``If-Match``) cannot tell a client "your write was applied"
from "someone else's was": a copy of the request that arrives after the first was
applied finds the version moved and answers 412, and ``update()`` would then read again
and apply its function a second time. Copies do arrive: nginx passes a PUT (idempotent
by HTTP's rules) to the next replica when the first dies mid-request, and a client
resends after a connection broke before the answer. So the client names each
conditional write with a random id (the ``Idempotency-Key`` header, the same in every
copy), and the backend records a *receipt* for it in the write's own transaction; a
copy that finds the receipt is answered as applied and writes nothing.

A receipt covers one key of one scope: its id is a digest of the scope, the key and the
write id, so a write id sent again for another key (or by another task) vouches for
nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from statestore.exceptions import InvalidValueError
from statestore.scopes import AssetScope, StateScope, TaskScope

__all__ = [
    "MAX_WRITE_ID_LENGTH",
    "PRUNE_EVERY_S",
    "RECEIPTS_HEADER",
    "RECEIPT_TTL",
    "WRITE_ID_HEADER",
    "check_write_id",
    "new_write_id",
    "receipt_id",
]

WRITE_ID_HEADER = "Idempotency-Key"
"""The request header that names a conditional write (the IETF httpapi draft's name)."""

RECEIPTS_HEADER = "Statestore-Write-Receipts"
"""A response header, ``kept``, on a state server's key reads and writes when its backend
keeps write receipts: only then does a client resend a conditional write whose answer
it did not get (see ``HttpStateBackend``)."""

MAX_WRITE_ID_LENGTH = 128

RECEIPT_TTL = timedelta(minutes=15)
"""How long a receipt is kept at least. Copies of a request arrive within a minute or
so: a load balancer's resend at once, or after its upstream read timeout (nginx: 60 s);
the client's own within its ``timeout_seconds``. A receipt counts until it is removed:
once older than this, before a conditional write with a write id (the metastore, at
most once a minute per process; the in-memory backend, on each one) and by
``cleanup``. Kept short because every conditional write through a server leaves one
(~100 bytes with its index)."""

PRUNE_EVERY_S = 60.0
"""How often (at most) one backend removes receipts older than :data:`RECEIPT_TTL`."""

_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~:")


def new_write_id() -> str:
    """128 random bits, URL-safe: unguessable, so only the sender can repeat it."""
    return secrets.token_urlsafe(16)


def check_write_id(text: str) -> str:
    """A write id as received: 1..128 characters, letters, digits and ``-_.~:``."""
    if not 0 < len(text) <= MAX_WRITE_ID_LENGTH or not _ALLOWED.issuperset(text):
        raise InvalidValueError(
            f"{WRITE_ID_HEADER} must be 1 to {MAX_WRITE_ID_LENGTH} letters, digits or -_.~:"
        )
    return text


def receipt_id(scope: StateScope, key: str, write_id: str) -> bytes:
    """The 32-byte id of the receipt of ``write_id`` on ``key`` of ``scope``."""
    if isinstance(scope, TaskScope):
        where = ["task", scope.dag_id, scope.run_id, scope.task_id, str(scope.map_index),
                 scope.map_key or ""]  # fmt: skip
    else:
        assert isinstance(scope, AssetScope)
        where = ["asset", str(scope.asset_id or ""), scope.name or "", scope.uri or ""]
    text = "\0".join(["statestore-receipt", *where, key, write_id])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
