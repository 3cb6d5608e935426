"""The declarative base, column types and shared column groups of every table.

Every table has an integer surrogate ``pk`` (the Vast dialect speaks integers) and, where clients
see the row, an opaque prefixed string ``id``. Times are aware UTC datetimes on both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PK = BigInteger().with_variant(Integer(), "sqlite")
JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC on SQLite and timestamptz on Postgres; always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """``process_bind_param`` and then the dialect's own conversion (the base class's), with
        the last few thousand results kept: a bulk write binds the same few times (now, the next
        run) on every row, and converting each again was most of a metering pass's binding."""
        convert = super().bind_processor(dialect)
        if convert is None:
            return None
        done: dict[datetime, Any] = {}

        def process(value: datetime | None) -> Any:
            if value is None:
                return None
            found = done.get(value, _MISSING)  # a naive time is never equal to an aware one
            if found is _MISSING:
                if len(done) >= _KEPT_BINDS:
                    done.clear()
                found = done[value] = convert(value)
            return found

        return process

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        """The dialect's conversion and then ``process_result_value``, kept the same way: a
        batch reads the same few times on every row (SQLite's are strings to parse)."""
        convert = super().result_processor(dialect, coltype)
        if convert is None:
            return None
        done: dict[Any, datetime | None] = {}

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            found = done.get(value, _MISSING)
            if found is _MISSING:
                if len(done) >= _KEPT_BINDS:
                    done.clear()
                found = done[value] = convert(value)
            return found  # type: ignore[return-value]

        return process


_MISSING = object()
_KEPT_BINDS = 4096


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JsonType, list[str]: JsonType}


class LeaseColumns:
    """Columns a reconciler uses to schedule and claim a row: see controllers/base.py.

    ``next_run_at`` is when the row's controller should look at it again (empty: as soon as its
    condition holds; a hint empties it); the lease says who holds it now and until when.
    """

    next_run_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_token: Mapped[str | None] = mapped_column(String(40), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(80), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
