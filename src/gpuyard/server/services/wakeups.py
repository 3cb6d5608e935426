"""Waking controllers and host agents: a change to desired state is acted on now, not at the next
poll.

A service that changes what a controlled row should be calls ``wake(session, row)`` (or
``wake_where`` for rows it has not loaded): the row's ``next_run_at`` is emptied, which makes it
due at once and first in line (controllers/base.py), and its table is noted on the session. A
service that changes what a host must run calls ``tell_host(session, host_id)``. When that
transaction commits, ``Wakeups`` wakes this replica's controllers of the noted tables and answers
the host's waiting agent (``POST /v1/agent/wait``); other replicas find the row due at their next
poll, and the host's next heartbeat brings the change. A rolled-back transaction wakes nothing.

Under ``--workers N`` each worker process has its own ``Wakeups``: a worker passes each commit's
host keys to its parent (``relay_commits``), which hands them to the other workers' ``fire``, so
an agent's wait is answered whichever worker holds it (cli/supervisor.py).
"""

from __future__ import annotations

import asyncio
import secrets
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


def note_table(session: AsyncSession, model: type[LeaseColumns]) -> None:
    """New rows of ``model`` are due now (inserted with no next-run time): wake its controller
    when the transaction commits."""
    _note(session, model)


def tell_host(session: AsyncSession, host_id: str) -> None:
    """What ``host_id`` must run changed; its agent is told when the transaction commits."""
    session.info.setdefault(_NOTED, set()).add(_host_key(host_id))


def _note(session: AsyncSession, table: Any) -> None:
    session.info.setdefault(_NOTED, set()).add(table.__tablename__)


def _host_key(host_id: str) -> str:
    return f"host:{host_id}"


def is_host_key(key: str) -> bool:
    """Whether a noted key names a host (an agent may wait on it) rather than a table."""
    return key.startswith("host:")


class Wakeups:
    """The controllers to wake per table and the agents waiting per host, told after each commit
    of this replica's sessions.

    A host's *mark* names the last change this replica told it about: ``replica.count``. An agent
    that waits with the mark of its last wait returns at once if a change came in between; a mark
    from another replica (a load balancer moved the agent) is no evidence either way, so it waits.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._replica = secrets.token_hex(4)
        self._changes: dict[str, int] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        self._relays: list[Callable[[set[str]], None]] = []
        self._released = False

    def listen(self, table: str, callback: Callable[[], None]) -> None:
        self._listeners.setdefault(table, []).append(callback)

    def clear(self) -> None:
        self._listeners.clear()

    def relay_commits(self, callback: Callable[[set[str]], None]) -> None:
        """Also pass the keys of each commit of this replica's sessions to ``callback`` (after
        this replica's own controllers and agents are told); keys given to ``fire`` directly are
        not passed on."""
        self._relays.append(callback)

    def fire(self, keys: set[str]) -> None:
        for key in keys:
            for callback in self._listeners.get(key, ()):
                callback()
            if is_host_key(key):
                self._changes[key] = self._changes.get(key, 0) + 1
                waiting = self._waiting.pop(key, None)
                if waiting is not None:
                    waiting.set()

    def host_mark(self, host_id: str) -> str:
        return f"{self._replica}.{self._changes.get(_host_key(host_id), 0)}"

    async def wait_for_host(
        self, host_id: str, *, mark: str | None, seconds: float
    ) -> tuple[bool, str]:
        """Wait until what ``host_id`` must run changes, or ``seconds``, or the server stops;
        (changed, new mark)."""
        current = self.host_mark(host_id)
        if mark is not None and mark != current and mark.split(".")[0] == self._replica:
            return True, current
        if self._released:
            return False, current
        event = self._waiting.setdefault(_host_key(host_id), asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
            return not self._released, self.host_mark(host_id)
        except TimeoutError:
            return False, self.host_mark(host_id)

    def release_waits(self) -> None:
        """The server is stopping: answer every wait now, and any later one at once, with
        "nothing changed" (each agent heartbeats on its own schedule), so that no wait holds the
        server's graceful stop for up to a heartbeat interval."""
        self._released = True
        for waiting in self._waiting.values():
            waiting.set()
        self._waiting.clear()

    def session_class(self) -> type[Session]:
        """A session class whose commits wake the noted tables' controllers (one per app, so
        two apps in one process never wake each other)."""

        class WakingSession(Session):
            pass

        def committed(session: Session) -> None:
            tables = session.info.pop(_NOTED, None)
            if tables:
                self.fire(tables)
                for relay in self._relays:
                    relay(tables)

        def rolled_back(session: Session, previous: Any) -> None:
            session.info.pop(_NOTED, None)

        event.listen(WakingSession, "after_commit", committed)
        event.listen(WakingSession, "after_soft_rollback", rolled_back)
        return WakingSession
