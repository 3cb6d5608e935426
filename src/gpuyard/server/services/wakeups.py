"""Waking controllers: a change to desired state is reconciled now, not at the next poll.

A service that changes what a controlled row should be calls ``wake(session, row)`` (or
``wake_where`` for rows it has not loaded): the row's ``next_run_at`` is emptied, which makes it
due at once and first in line (controllers/base.py), and its table is noted on the session. When
that transaction commits, ``Wakeups`` wakes this replica's controllers of the noted tables; other
replicas find the row due at their next poll. A rolled-back transaction wakes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, event, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from gpuyard.server.orm import LeaseColumns

_NOTED = "gpuyard.wake"


def wake(session: AsyncSession, row: LeaseColumns) -> None:
    """Make ``row`` due now; its controller is woken when the transaction commits."""
    row.next_run_at = None
    _note(session, row)


async def wake_where(
    session: AsyncSession, model: type[LeaseColumns], *where: ColumnElement[bool]
) -> None:
    """Make every row of ``model`` matching ``where`` due now (one statement)."""
    await session.execute(
        update(model)
        .where(*where)
        .values(next_run_at=None)
        .execution_options(synchronize_session=False)
    )
    _note(session, model)


def _note(session: AsyncSession, table: Any) -> None:
    session.info.setdefault(_NOTED, set()).add(table.__tablename__)


class Wakeups:
    """The controllers to wake per table, called after each commit of this replica's sessions."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[], None]]] = {}

    def listen(self, table: str, callback: Callable[[], None]) -> None:
        self._listeners.setdefault(table, []).append(callback)

    def clear(self) -> None:
        self._listeners.clear()

    def fire(self, tables: set[str]) -> None:
        for table in tables:
            for callback in self._listeners.get(table, ()):
                callback()

    def session_class(self) -> type[Session]:
        """A session class whose commits wake the noted tables' controllers (one per app, so
        two apps in one process never wake each other)."""

        class WakingSession(Session):
            pass

        def committed(session: Session) -> None:
            tables = session.info.pop(_NOTED, None)
            if tables:
                self.fire(tables)

        def rolled_back(session: Session, previous: Any) -> None:
            session.info.pop(_NOTED, None)

        event.listen(WakingSession, "after_commit", committed)
        event.listen(WakingSession, "after_soft_rollback", rolled_back)
        return WakingSession
