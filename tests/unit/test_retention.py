"""Every rule of retention -> expires_at (SPEC §2), and the one definition of expired."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from statestore import NEVER_EXPIRE
from statestore.exceptions import InvalidRetentionError, InvalidTypeError
from statestore.retention import compute_expires_at, is_expired

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def expires(retention: object, days: int = 30) -> datetime | None:
    return compute_expires_at(retention, now=NOW, default_retention_days=days)


def test_never_expire_is_timedelta_max() -> None:
    assert timedelta.max == NEVER_EXPIRE
    assert expires(NEVER_EXPIRE) is None
    assert expires(NEVER_EXPIRE, days=0) is None


def test_none_uses_default_days() -> None:
    assert expires(None, days=30) == NOW + timedelta(days=30)
    assert expires(None, days=1) == NOW + timedelta(days=1)
    assert expires(None, days=0) is None


@pytest.mark.parametrize(
    "retention", [timedelta(microseconds=1), timedelta(hours=6), timedelta(days=365 * 100)]
)
def test_positive_timedelta(retention: timedelta) -> None:
    assert expires(retention) == NOW + retention


@pytest.mark.parametrize("retention", [timedelta(0), timedelta(seconds=-1), timedelta.min])
def test_non_positive_is_value_error(retention: timedelta) -> None:
    with pytest.raises(InvalidRetentionError) as info:
        expires(retention)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("retention", [7, 7.0, True, False, "7d", "P7D", [1], object()])
def test_non_timedelta_is_type_error(retention: object) -> None:
    with pytest.raises(InvalidTypeError) as info:
        expires(retention)
    assert isinstance(info.value, TypeError)


def test_too_large_but_not_never_expire() -> None:
    with pytest.raises(InvalidRetentionError, match="NEVER_EXPIRE"):
        expires(NEVER_EXPIRE - timedelta(days=1))


def test_naive_now_rejected() -> None:
    with pytest.raises(InvalidTypeError):
        compute_expires_at(None, now=datetime(2026, 1, 1), default_retention_days=1)


def test_expiry_boundary() -> None:
    assert not is_expired(None, NOW)
    assert not is_expired(NOW, NOW)  # exactly now: still readable
    assert is_expired(NOW - timedelta(microseconds=1), NOW)
    assert not is_expired(NOW + timedelta(microseconds=1), NOW)
