"""Retention: turning ``retention=`` into the ``expires_at`` a backend stores.

The rule is computed once, here, at write time by the accessor, so every backend stores
the same absolute UTC instant and expiry never depends on when cleanup happens to run.
``expires_at=None`` always means "never expires"; there is no second flag to consult.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from statestore.exceptions import InvalidRetentionError, InvalidTypeError

__all__ = ["NEVER_EXPIRE", "compute_expires_at", "is_expired", "utcnow"]

NEVER_EXPIRE: timedelta = timedelta.max
"""Pass as ``retention=`` to keep a task-state key until it is deleted or cleared.

Cleanup never removes such a key, whatever ``default_retention_days`` says.
"""

_ZERO = timedelta(0)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only clock the library reads)."""
    return datetime.now(timezone.utc)


def compute_expires_at(
    retention: object, *, now: datetime, default_retention_days: int
) -> datetime | None:
    """Return the absolute expiry for a task-state write, or ``None`` for never.

    * ``NEVER_EXPIRE`` -> ``None``.
    * ``None`` -> ``now + default_retention_days`` days, or ``None`` when that is 0.
    * a positive ``timedelta`` -> ``now + retention``.

    Anything that is not a ``timedelta`` (int, float, bool, str) is a ``TypeError``: a
    bare number has no unit, and guessing "days" is how retention bugs are born. A zero
    or negative ``timedelta`` is a ``ValueError``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidTypeError("now must be a timezone-aware datetime")
    if retention is None:
        if default_retention_days == 0:
            return None
        return now + timedelta(days=default_retention_days)
    if not isinstance(retention, timedelta):
        # A bare number: show the timedelta it most likely meant, unit spelled out.
        hint = (
            f" (e.g. timedelta(days={retention!r}) or timedelta(hours={retention!r}))"
            if isinstance(retention, int | float) and not isinstance(retention, bool)
            else ""
        )
        raise InvalidTypeError(
            "retention must be a datetime.timedelta or NEVER_EXPIRE, "
            f"not {type(retention).__name__}{hint}"
        )
    if retention == NEVER_EXPIRE:
        return None
    if retention <= _ZERO:
        raise InvalidRetentionError(
            f"retention must be positive, not {retention} ({retention!r}); "
            "use NEVER_EXPIRE to keep a key until it is deleted"
        )
    try:
        return now + retention
    except OverflowError:
        raise InvalidRetentionError(
            f"retention {retention!r} reaches past the year 9999; use NEVER_EXPIRE"
        ) from None


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """True when a stored ``expires_at`` has passed. ``None`` never expires.

    One definition for reads and cleanup alike: expired means ``expires_at < now``, so
    a key that reads as absent is exactly a key that cleanup may remove.
    """
    return expires_at is not None and expires_at < now
