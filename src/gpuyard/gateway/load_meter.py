"""The load the gateway puts on each replica, for the autoscaling of clusters.

``began``/``ended`` bracket each request on a replica (the balancer calls them); ``refused``
counts a request its cluster had no ready replica for (demand all the same: scale from zero).
The meter integrates the requests in flight over the injected clock's time, so what it reports
per replica is exact: the request-seconds served since the last report, and the requests in
flight now. A background task hands the reports to the ``LoadSink`` every ``interval`` seconds;
a replica is reported while it has requests in flight, and once more when it has none left.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime

from gpuyard.core.clock import Clock
from gpuyard.core.ids import new_id
from gpuyard.core.tasks import cancel_and_wait
from gpuyard.gateway.ports import LoadReport, LoadSink

log = logging.getLogger(__name__)
REPORT_EVERY_S = 1.0


class LoadMeter:
    def __init__(self, sink: LoadSink | None, clock: Clock, *, interval: float = REPORT_EVERY_S):
        self.sink = sink
        self.clock = clock
        self.reporter = new_id("gw")
        self._interval = interval
        self._in_flight: dict[tuple[str, str], int] = defaultdict(int)
        self._busy: dict[tuple[str, str], float] = defaultdict(float)
        self._since: dict[tuple[str, str], datetime] = {}
        self._refused: dict[str, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    def _account(self, key: tuple[str, str], now: datetime) -> None:
        since = self._since.get(key)
        if since is not None and now > since:
            self._busy[key] += self._in_flight[key] * (now - since).total_seconds()
        self._since[key] = now

    def began(self, cluster_id: str, replica_id: str) -> None:
        key = (cluster_id, replica_id)
        self._account(key, self.clock.now())
        self._in_flight[key] += 1

    def ended(self, cluster_id: str, replica_id: str) -> None:
        key = (cluster_id, replica_id)
        self._account(key, self.clock.now())
        self._in_flight[key] = max(0, self._in_flight[key] - 1)

    def refused(self, cluster_id: str) -> None:
        self._refused[cluster_id] += 1

    def take(self) -> list[LoadReport]:
        """What was measured since the last ``take`` (and forget it)."""
        now = self.clock.now()
        reports = []
        for key in list(self._since):
            self._account(key, now)
            in_flight, busy = self._in_flight[key], self._busy.pop(key, 0.0)
            reports.append(LoadReport(key[0], key[1], in_flight, busy, 0, now))
            if not in_flight:
                del self._since[key], self._in_flight[key]
        for cluster_id, count in self._refused.items():
            reports.append(LoadReport(cluster_id, None, 0, 0.0, count, now))
        self._refused.clear()
        return reports

    async def flush(self) -> int:
        """Hand what was measured to the sink now; how many reports."""
        if self.sink is None:
            return 0
        async with self._writing:
            reports = self.take()
            if reports:
                await self.sink.write(self.reporter, reports)
            return len(reports)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.shield(self.flush())
            except asyncio.CancelledError:
                raise
            except Exception:  # measured again from the next report on
                log.exception("could not report the replicas' load")

    def start(self) -> None:
        if self.sink is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="load-meter")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:  # the last measures
            await self.flush()
        except Exception:
            log.exception("could not report the replicas' last load")
