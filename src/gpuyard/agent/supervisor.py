"""The agent's loop: heartbeat, then reconcile the runtime toward the server's assignments.

One ``step()`` is one round:

1. register if this state dir has no registration yet (the join token is spent once);
2. collect the host's facts and the runtime's statuses (``runtime.list()``: what this agent or an
   earlier one started, which is how a restarted agent re-adopts its workloads);
3. one heartbeat: facts and statuses out, the host's status and assignments back;
4. reconcile each workload by ``reconcile.plan()``; an action runs as a task of its own, so a slow
   image pull or a stop's grace period never holds up heartbeats. ``step()`` waits for its actions
   up to ``action_wait_s`` (``None``: until done) and a workload with an action still in flight is
   left alone by later rounds.

Nothing is decided without a successful heartbeat: while the server is unreachable the workloads
keep running untouched (and one the server no longer lists is only removed once the server has
said so). Statuses changed by actions go out with the next heartbeat; after a round that acted,
``run()`` sends that heartbeat after ``followup_s`` (0.25 s) instead of a full interval, so the
server learns soon that a workload started, or that its command exited at once. Between rounds,
with a ``waiter`` (the HTTP transport's ``wait_for_work``), the agent waits on the server instead
of sleeping: when the host's assignments change, the next round starts at once.

``run(stop_event)`` repeats ``step()`` every ``heartbeat_interval_s`` (the server's, 5 s until it
says otherwise). On ``ServerUnavailable`` (and unexpected errors) it backs off 1 s, 2 s, 4 s … 30 s
with jitter; ``AgentRejected`` and ``StateError`` end it. Stopping leaves workloads running: the
next agent re-adopts them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gpuyard.agent.backoff import Backoff
from gpuyard.agent.reconcile import Action, apply, plan
from gpuyard.agent.reporter import StatusReporter
from gpuyard.agent.runtimes.base import DEFAULT_GRACE_S, Runtime
from gpuyard.agent.state import AgentState, Registration, StateError
from gpuyard.agent.transport import AgentRejected, AgentTransport, ServerUnavailable
from gpuyard.core.agent_protocol import (
    Assignment,
    HeartbeatRequest,
    HeartbeatResponse,
    HostStatus,
    RegisterRequest,
    WaitRequest,
    WaitResponse,
)
from gpuyard.core.clock import Clock
from gpuyard.core.errors import NotFound
from gpuyard.core.hosts import HostFacts
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus

log = logging.getLogger(__name__)

FactsSource = Callable[[], Awaitable[HostFacts]]
Sleep = Callable[[float], Awaitable[None]]
Waiter = Callable[[str, WaitRequest], Awaitable[WaitResponse]]  # (credential, request)

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
MIN_HEARTBEAT_INTERVAL_S = 0.1
MAX_HEARTBEAT_INTERVAL_S = 300.0
FINAL_REPORT_S = 3.0


@dataclass(frozen=True)
class StepReport:
    host_id: str
    reported: int
    """How many workload statuses the heartbeat carried."""
    actions: dict[str, Action] = field(default_factory=dict)
    """Actions launched this round, by workload id."""
    in_flight: int = 0
    """Actions (of this round or earlier ones) still running when ``step()`` returned."""


class Supervisor:
    def __init__(
        self,
        transport: AgentTransport,
        runtime: Runtime,
        facts_source: FactsSource,
        clock: Clock,
        state: AgentState,
        *,
        server_url: str,
        join_token: str | None = None,
        name: str | None = None,
        stop_grace_s: float = DEFAULT_GRACE_S,
        action_wait_s: float | None = 2.0,
        followup_s: float = 0.25,
        waiter: Waiter | None = None,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        shutdown_wait_s: float = 30.0,
        stop_workloads_on_exit: bool = False,
        joined: asyncio.Event | None = None,
    ) -> None:
        """``stop_workloads_on_exit``: stopping the agent also stops its workloads (``gpuyard
        up``'s local agent); else they keep running for the next agent to re-adopt.
        ``joined`` is set once a heartbeat has succeeded: the server knows this host."""
        if join_token is not None and not 1 <= len(join_token) <= 200:
            raise ValueError("a join token is 1 to 200 characters")
        self._transport = transport
        self._runtime = runtime
        self._facts = facts_source
        self._clock = clock
        self._state = state
        self._server_url = server_url
        self._join_token = join_token
        self._name = name
        self._grace_s = stop_grace_s
        self._action_wait_s = action_wait_s
        self._followup_s = followup_s
        self._waiter = waiter
        self._mark: str | None = None
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._shutdown_wait_s = shutdown_wait_s
        self._stop_workloads_on_exit = stop_workloads_on_exit
        self._joined = joined
        self._registration: Registration | None = None
        self._interval_s = DEFAULT_HEARTBEAT_INTERVAL_S
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._reporter = StatusReporter(runtime)
        self._cordoned: bool | None = None
        self.last_heartbeat_at: datetime | None = None

    @property
    def heartbeat_interval_s(self) -> float:
        return self._interval_s

    @property
    def host_id(self) -> str | None:
        return self._registration.host_id if self._registration else None

    async def register(self) -> Registration:
        """This host's registration: from the state dir, else made now with the join token."""
        if self._registration is not None:
            return self._registration
        saved = self._state.load_registration()
        if saved is not None:
            if saved.server_url != self._server_url:
                raise StateError(
                    f"{self._state.host_path} joins this host to {saved.server_url}, not "
                    f"{self._server_url}: use that --server, another --state-dir, or delete "
                    "host.json to join again with a new token"
                )
            log.info("registered earlier as host %s; reusing its credential", saved.host_id)
            self._registration = saved
            return saved
        if not self._join_token:
            raise StateError(
                f"this host is not registered with {self._server_url} yet (no "
                f"{self._state.host_path}): give a join token with --token or GPUYARD_JOIN_TOKEN"
            )
        facts = await self._facts()
        request = RegisterRequest(token=self._join_token, name=self._name, facts=facts)
        answer = await self._transport.register(request)
        registration = Registration(
            server_url=self._server_url,
            host_id=answer.host_id,
            credential=answer.credential,
            registered_at=self._clock.now(),
        )
        self._state.save_registration(registration)
        self._registration = registration
        self._set_interval(answer.heartbeat_interval_s)
        log.info(
            "registered with %s as host %s (%d GPU(s)); credential saved to %s",
            self._server_url,
            answer.host_id,
            len(facts.gpus),
            self._state.host_path,
        )
        return registration

    async def step(self) -> StepReport:
        """One heartbeat round; raises ``ServerUnavailable`` or ``AgentRejected`` untouched."""
        registration = await self.register()
        facts = await self._facts()
        observed = await self._reporter.observe()
        reported = self._reporter.report(observed)
        response = await self._transport.heartbeat(
            registration.credential, HeartbeatRequest(facts=facts, workloads=reported)
        )
        self.last_heartbeat_at = self._clock.now()
        self._reporter.delivered(reported)
        if self._joined is not None:
            self._joined.set()
        self._set_interval(response.heartbeat_interval_s)
        self._note_host(response)
        actions = self._reconcile(response.workloads, observed)
        if self._in_flight and (self._action_wait_s is None or self._action_wait_s > 0):
            await self.wait_idle(self._action_wait_s)
        return StepReport(
            host_id=registration.host_id,
            reported=len(reported),
            actions=actions,
            in_flight=len(self._in_flight),
        )

    async def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait for in-flight actions (at most ``timeout_s``); True when none is left."""
        tasks = list(self._in_flight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        return not self._in_flight

    async def run(self, stop_event: asyncio.Event) -> None:
        """Heartbeat and reconcile until ``stop_event`` is set; workloads are left running."""
        try:
            while not stop_event.is_set():
                delay = await self._round(stop_event)
                if delay is None:
                    break
                await self._pause(delay, stop_event)
        finally:
            await self._shutdown()

    async def _round(self, stop_event: asyncio.Event) -> float | None:
        """One step within ``run()``; the wait before the next one, ``None`` when stopped."""
        stepping = asyncio.ensure_future(self.step())
        stopping = asyncio.ensure_future(stop_event.wait())
        await asyncio.wait({stepping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not stepping.done():
            stepping.cancel()
            await asyncio.wait({stepping})  # its actions run on; _shutdown() waits for them
            return None
        try:
            report = stepping.result()
        except (AgentRejected, StateError):
            raise
        except ServerUnavailable as exc:
            delay = max(self._backoff.next_delay(), exc.retry_after or 0.0)
            log.warning(
                "server unreachable%s (%s); workloads keep running; retrying in %s",
                self._since_contact(),
                exc.reason,
                _seconds(delay),
            )
            return delay
        except Exception:
            delay = self._backoff.next_delay()
            log.exception("heartbeat round failed; retrying in %s", _seconds(delay))
            return delay
        if self._backoff.failures:
            log.info("server reachable again; host %s", report.host_id)
            self._backoff.reset()
        if report.actions:
            return min(self._interval_s, self._followup_s)
        return self._interval_s

    async def _pause(self, seconds: float, stop_event: asyncio.Event) -> None:
        """Wait ``seconds``, less when stopped or when the server says there is new work."""
        if seconds <= 0:
            return
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(stop_event.wait())
        tasks: list[asyncio.Future[Any]] = [sleeping, stopping]
        if self._waiter is not None and self._registration and not self._backoff.failures:
            tasks.append(asyncio.ensure_future(self._wait_for_work(seconds)))
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if sleeping in done or stopping in done or any(t.result() for t in done):
                break  # slept, stopped, or new work came
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait_for_work(self, seconds: float) -> bool:
        """Whether the server said the host's assignments changed within ``seconds``; any
        failure is False (the pause then runs its course, and the next heartbeat says more)."""
        assert self._waiter is not None and self._registration is not None
        try:
            answer = await self._waiter(
                self._registration.credential, WaitRequest(mark=self._mark, timeout_s=seconds)
            )
        except Exception as exc:  # an older server (404) or a blip: the interval still holds
            log.debug("waiting for work failed: %s", exc)
            return False
        self._mark = answer.mark
        return answer.changed

    async def _shutdown(self) -> None:
        if self._in_flight and not await self.wait_idle(self._shutdown_wait_s):
            log.warning("cancelling %d unfinished workload action(s)", len(self._in_flight))
            for task in list(self._in_flight.values()):
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        if self._stop_workloads_on_exit:
            await self._stop_workloads()
            return
        running = self._reporter.active_count
        log.info(
            "agent stopped; %d workload(s) keep running and will be re-adopted when the agent "
            "starts again",
            running,
        )

    async def _stop_workloads(self) -> None:
        """Stop every workload that runs (gracefully, all at once), then tell the server while
        it still answers. A stopped workload the server wants running is started again by the
        next agent (``reconcile.plan``: running + stopped → start)."""
        observed = await self._reporter.observe()
        active = sorted(wid for wid, s in (observed or {}).items() if s.state.is_active)
        if active:
            log.info("stopping %d workload(s): %s", len(active), ", ".join(active))
        results = await asyncio.gather(
            *(self._runtime.stop(wid, self._grace_s) for wid in active), return_exceptions=True
        )
        for wid, result in zip(active, results, strict=True):
            if isinstance(result, Exception) and not isinstance(result, NotFound):
                log.warning("could not stop %s: %s", wid, result)
        await self._report_stopped()
        log.info(
            "agent stopped; %d workload(s) stopped; the next start runs them again", len(active)
        )

    async def _report_stopped(self) -> None:
        """One last heartbeat (at most ``FINAL_REPORT_S``) saying what was stopped."""
        if self._registration is None:
            return
        try:
            facts = await self._facts()
            reported = self._reporter.report(await self._reporter.observe())
            request = HeartbeatRequest(facts=facts, workloads=reported)
            async with asyncio.timeout(FINAL_REPORT_S):
                await self._transport.heartbeat(self._registration.credential, request)
        except (ServerUnavailable, AgentRejected, TimeoutError) as exc:
            why = str(exc) or "timed out"
            log.info("the server did not hear the final report (%s); the next start tells it", why)

    def _note_host(self, response: HeartbeatResponse) -> None:
        if response.status is HostStatus.REMOVED:
            raise AgentRejected(
                "the server removed this host; its workloads are left running. Delete "
                f"{self._state.host_path} and join again with a new token to serve again",
                code="host_removed",
                status=200,
            )
        if response.cordoned != self._cordoned:
            if response.cordoned or self._cordoned is not None:
                how = "cordoned" if response.cordoned else "uncordoned"
                log.info("host %s is %s", response.host_id, how)
            self._cordoned = response.cordoned

    def _reconcile(
        self, assignments: list[Assignment], observed: dict[str, WorkloadStatus] | None
    ) -> dict[str, Action]:
        if observed is None:
            return {}  # nothing is decided about workloads the agent cannot see
        wanted: dict[str, Assignment] = {a.spec.id: a for a in assignments}
        launched: dict[str, Action] = {}
        for wid in sorted(wanted.keys() | observed.keys()):
            if wid in self._in_flight:
                continue
            assignment = wanted.get(wid)
            action = plan(assignment, observed.get(wid))
            if action is Action.NOTHING:
                continue
            launched[wid] = action
            task = asyncio.create_task(self._act(wid, assignment), name=f"gpuyard-agent:{wid}")
            self._in_flight[wid] = task
            task.add_done_callback(self._forget_action)
        return launched

    def _forget_action(self, task: asyncio.Task[None]) -> None:
        for wid, running in list(self._in_flight.items()):
            if running is task:
                del self._in_flight[wid]

    async def _act(self, workload_id: str, assignment: Assignment | None) -> None:
        """Re-check with a fresh ``inspect()`` (the heartbeat took time), then act."""
        action = Action.NOTHING
        try:
            action = plan(assignment, await self._runtime.inspect(workload_id))
            if action is Action.NOTHING:
                return
            spec: WorkloadSpec | None = assignment.spec if assignment else None
            why = "" if assignment else " (the server no longer lists it)"
            log.info("%s %s%s", action.value, workload_id, why)
            status = await apply(action, self._runtime, workload_id, spec, grace_s=self._grace_s)
        except Exception:
            log.exception("%s of %s failed; the next round tries again", action.value, workload_id)
            return
        if status is not None and status.state is WorkloadState.FAILED:
            log.warning("%s could not start: %s", workload_id, status.message)

    def _set_interval(self, seconds: float) -> None:
        self._interval_s = min(MAX_HEARTBEAT_INTERVAL_S, max(MIN_HEARTBEAT_INTERVAL_S, seconds))

    def _since_contact(self) -> str:
        if self.last_heartbeat_at is None:
            return ""
        elapsed = (self._clock.now() - self.last_heartbeat_at).total_seconds()
        return f" for {_seconds(elapsed)}" if elapsed >= 1 else ""


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    return f"{value:.0f}s" if abs(value - round(value)) < 0.05 else f"{value:.1f}s"
