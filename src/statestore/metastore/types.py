"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import LargeBinary, String, Text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

from statestore.exceptions import InvalidTypeError

__all__ = ["DIGEST_SIZE", "Digest", "ExactString", "JsonText", "KeyString", "UTCDateTime"]

DIGEST_SIZE = 32
"""Bytes in a SHA-256 digest: the fixed-size unique key of every state row."""

_MYSQL = ("mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite and MySQL have no zone, so UTC is stored
    naive and re-attached on the way out. MySQL gets ``DATETIME(6)``: without ``fsp``
    it would silently drop the microseconds and reorder close writes. Naive input is
    rejected, because guessing its zone is how expiry goes wrong by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidTypeError("naive datetime given; statestore stores aware UTC only")
        value = value.astimezone(timezone.utc)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Digest(TypeDecorator[bytes]):
    """A fixed 32-byte SHA-256 digest: ``BINARY(32)`` on MySQL, ``bytea``/``BLOB`` elsewhere.

    MySQL cannot index a ``BLOB`` without a prefix length, and a fixed-width binary key
    keeps InnoDB's index small whatever the length of the ids and key behind it.
    """

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.BINARY(DIGEST_SIZE))
        return dialect.type_descriptor(LargeBinary())


def ExactString(length: int) -> String:  # noqa: N802 - reads like the type it builds
    """A ``VARCHAR`` compared byte-exactly: ``utf8mb4_bin`` on MySQL, default elsewhere.

    MySQL's default collations are case- and trailing-space-insensitive ("Key" = "key",
    "k" = "k "); keys and ids must be exact on every database.
    """
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL
    )


def KeyString(length: int) -> String:  # noqa: N802
    """An ``ExactString`` for keys, listed in code point order on every database.

    SQLite's BINARY already sorts so; PostgreSQL gets the "C" collation instead of the
    database's locale; MariaDB ``utf8mb4_nopad_bin``, because ``utf8mb4_bin`` ignores
    trailing spaces in comparisons ("k" = "k "). Migration 0002 sets these (MySQL 8
    gets its own NO PAD binary collation, ``utf8mb4_0900_bin``).
    """
    nopad = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_nopad_bin")
    return (
        String(length)
        .with_variant(nopad, *_MYSQL)
        .with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")
    )


def JsonText() -> Text:  # noqa: N802
    """Serialized JSON of any size: ``LONGTEXT`` on MySQL, where ``TEXT`` stops at 64 KiB."""
    return Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)
