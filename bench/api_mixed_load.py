"""The load generator of the mixed API benchmark (api_mixed.py), run as its own process, one per
measured window.

It reads a plan (JSON, written by api_mixed.py): the server's base URL, the rate, the window's
length, how long after start-up the first request is due, how many connections it may hold, and
the requests in the order they are sent over and over: each one's kind, method, path, body and
API key. Request ``k`` is due at ``t0 + k / rate`` (an open loop: a slow server does not lower the
offered load) and is ``requests[k % len(requests)]``, its bytes built once. It goes out on an idle
kept-alive connection; when all ``connections`` are busy it waits for one, and that wait counts
in its latency (from when it was due to when its whole answer was read). The connections are
opened before ``t0``, over raw asyncio streams on uvloop (heartbeat_load.py's ``Connection``).

It prints ``measuring`` at ``t0`` and ``done`` once every request due in the window has been
answered, waits for a line (or the end) on stdin, then prints one JSON line: per request its
kind's index, when it was due, sent and answered (ms from ``t0``), and its outcome when not a
2xx (``HTTP nnn`` or an exception's type name).

    python bench/api_mixed_load.py PLAN.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from event_loops import new_event_loop
from heartbeat_load import TIMEOUT_S, Connection, Target, clock, ms, open_all, sleep_until

Row = list[float | str]  # kind, due, sent, answered (ms from t0)[, outcome when not 2xx]


def request_bytes(url: str, request: dict[str, Any]) -> bytes:
    body = json.dumps(request["body"]).encode() if request.get("body") is not None else b""
    head = [
        f"{request['method']} {request['path']} HTTP/1.1",
        f"host: {urlsplit(url).netloc}",
        f"authorization: Bearer {request['key']}",
        "accept: application/json",
        "user-agent: gpuyard-bench",
    ]
    if body:
        head += ["content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class BoundedPool:
    """At most ``size`` connections, all opened before the window; the warmest idle one first."""

    def __init__(self, target: Target, size: int) -> None:
        self.idle = [Connection(target) for _ in range(size)]
        self._free = asyncio.Semaphore(size)

    async def take(self) -> Connection:
        await self._free.acquire()
        return self.idle.pop()

    def give(self, conn: Connection) -> None:
        self.idle.append(conn)
        self._free.release()


async def send(
    kind: int, request: bytes, due: float, t0: float, pool: BoundedPool, rows: list[Row]
) -> None:
    conn = await pool.take()
    sent = clock()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            status = await conn.exchange(request)
        outcome = "ok" if 200 <= status < 300 else f"HTTP {status}"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        conn.close()  # TimeoutError is an OSError; the next user opens it again
        outcome = type(e).__name__
    done = clock()
    pool.give(conn)
    row: Row = [kind, ms(due - t0), ms(sent - t0), ms(done - t0)]
    if outcome != "ok":
        row.append(outcome)
    rows.append(row)


async def main(plan: dict[str, Any]) -> None:
    url = plan["url"]
    kinds = sorted({r["kind"] for r in plan["requests"]})
    requests = [(kinds.index(r["kind"]), request_bytes(url, r)) for r in plan["requests"]]
    pool = BoundedPool(Target.of(url), plan["connections"])
    await open_all(pool.idle)
    gc.collect()
    gc.freeze()  # the plan and the connections live to the end: keep the collector off them
    rate, rows = float(plan["rate"]), []
    t0 = clock() + plan["start_in_s"]
    end = t0 + plan["duration_s"]
    sending: set[asyncio.Task[None]] = set()
    await sleep_until(t0)
    print("measuring", flush=True)
    k = 0
    while (due := t0 + k / rate) < end:
        await sleep_until(due)
        kind, request = requests[k % len(requests)]
        task = asyncio.create_task(send(kind, request, due, t0, pool, rows))
        sending.add(task)
        task.add_done_callback(sending.discard)
        k += 1
    while sending:
        await asyncio.wait(set(sending))
    seconds = clock() - t0
    print("done", flush=True)
    sys.stdin.readline()  # the parent has read the CPU counters (and this process still runs)
    for conn in pool.idle:
        conn.close()
    out = {"seconds": seconds, "kinds": kinds, "rows": rows}
    sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A mixed API load at a fixed rate.")
    parser.add_argument("plan", type=Path, help="the plan, as api_mixed.py writes it")
    return parser.parse_args()


if __name__ == "__main__":
    the_plan = json.loads(parse_args().plan.read_text())
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(the_plan))
