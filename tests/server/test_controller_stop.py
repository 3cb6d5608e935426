"""Stopping the controllers: each ends at its next idle point, so none is cancelled in the middle
of a transaction (a cancelled rollback makes the connection pool log a traceback); one that does
not end within the grace period is cancelled all the same."""

from __future__ import annotations

import asyncio

import pytest

from gpuyard.server.controllers import runner
from gpuyard.server.controllers.runner import Controller, ControllerSet


class Stepping:
    """A controller whose step runs until the test lets it finish."""

    watches: str | None = None

    def __init__(self, name: str, *, heeds_stop: bool = True) -> None:
        self.name = name
        self.heeds_stop = heeds_stop
        self.in_step = asyncio.Event()
        self.finish_step = asyncio.Event()
        self.steps_done = 0
        self._stop = False

    def hint(self) -> None:
        pass

    def stop_soon(self) -> None:
        if self.heeds_stop:
            self._stop = True

    async def run(self) -> None:
        while not self._stop:
            self.in_step.set()
            await self.finish_step.wait()  # the "transaction"
            self.steps_done += 1
            self.finish_step.clear()


async def test_a_step_under_way_finishes_before_the_controller_ends() -> None:
    ctl = Stepping("busy")
    controllers: dict[str, Controller] = {"busy": ctl}
    cs = ControllerSet(controllers)
    cs.start()
    await ctl.in_step.wait()
    stopping = asyncio.create_task(cs.stop())
    await asyncio.sleep(0)  # stop has asked; the step is still under way
    assert not stopping.done()
    ctl.finish_step.set()
    await stopping
    assert ctl.steps_done == 1  # finished, not cut off


async def test_a_controller_that_does_not_end_is_cancelled_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "STOP_GRACE_S", 0.01)
    ctl = Stepping("stuck", heeds_stop=False)
    cs = ControllerSet({"stuck": ctl})
    cs.start()
    await ctl.in_step.wait()
    await asyncio.wait_for(cs.stop(), timeout=30)
    assert ctl.steps_done == 0
