"""Every rule of retention -> expires_at (SPEC §2), and the one definition of expired."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from statestore import NEVER_EXPIRE
from statestore.exceptions import InvalidRetentionError, InvalidTypeError
from statestore.retention import compute_expires_at, is_expired, utcnow

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def expires(retention: object, days: int = 30) -> datetime | None:
    return compute_expires_at(retention, now=NOW, default_retention_days=days)


def test_never_expire_is_timedelta_max() -> None:
    assert timedelta.max == NEVER_EXPIRE
    assert expires(NEVER_EXPIRE) is None
    assert expires(NEVER_EXPIRE, days=0) is None
    assert expires(timedelta.max) is None  # the same value spelled differently


@pytest.mark.parametrize("days", [1, 30, 365])
def test_none_uses_default_days(days: int) -> None:
    assert expires(None, days=days) == NOW + timedelta(days=days)


def test_default_of_zero_days_never_expires() -> None:
    assert expires(None, days=0) is None


@pytest.mark.parametrize(
    "retention",
    [timedelta(microseconds=1), timedelta(seconds=1), timedelta(hours=6), timedelta(days=36500)],
)
def test_positive_timedelta_is_added_to_now(retention: timedelta) -> None:
    result = expires(retention)
    assert result == NOW + retention
    assert result is not None
    assert result.utcoffset() == timedelta(0)


def test_explicit_retention_ignores_the_default() -> None:
    assert expires(timedelta(hours=1), days=0) == NOW + timedelta(hours=1)
    assert expires(timedelta(hours=1), days=7) == NOW + timedelta(hours=1)


def test_aware_non_utc_now_gives_the_same_instant() -> None:
    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    result = compute_expires_at(timedelta(hours=1), now=plus_two, default_retention_days=1)
    assert result == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    "retention",
    [timedelta(0), timedelta(microseconds=-1), timedelta(seconds=-1), timedelta.min],
)
def test_zero_or_negative_is_invalid_retention(retention: timedelta) -> None:
    with pytest.raises(InvalidRetentionError) as info:
        expires(retention)
    assert type(info.value) is InvalidRetentionError
    assert isinstance(info.value, ValueError)
    assert "positive" in str(info.value)


@pytest.mark.parametrize("retention", [7, 0, -1, 7.0, 0.5, True, False, "7d", "P7D", [1], object()])
def test_non_timedelta_is_type_error(retention: object) -> None:
    with pytest.raises(InvalidTypeError) as info:
        expires(retention)
    assert type(info.value) is InvalidTypeError
    assert isinstance(info.value, TypeError)
    assert "timedelta" in str(info.value)


@pytest.mark.parametrize(
    "retention", [NEVER_EXPIRE - timedelta(days=1), NEVER_EXPIRE - timedelta(microseconds=1)]
)
def test_overflow_near_max_is_invalid_retention(retention: timedelta) -> None:
    with pytest.raises(InvalidRetentionError, match="NEVER_EXPIRE"):
        expires(retention)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(InvalidTypeError, match="aware"):
        compute_expires_at(None, now=datetime(2026, 1, 1), default_retention_days=1)
    with pytest.raises(InvalidTypeError, match="aware"):
        compute_expires_at(timedelta(1), now=datetime(2026, 1, 1), default_retention_days=1)


def test_expiry_boundary() -> None:
    assert not is_expired(None, NOW)
    assert not is_expired(NOW, NOW)  # exactly now: still readable
    assert is_expired(NOW - timedelta(microseconds=1), NOW)
    assert not is_expired(NOW + timedelta(microseconds=1), NOW)
    assert not is_expired(None, datetime.max.replace(tzinfo=timezone.utc))


def test_utcnow_is_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
