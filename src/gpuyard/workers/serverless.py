"""``gpuyard worker serverless``: a serverless worker that speaks Vast's worker protocol, for
demos and tests of endpoints without a model: its work is CPU hashing, ``cost`` rounds per
request.

From the environment a serverless worker is given (``REPORT_ADDR``, ``MASTER_TOKEN``,
``CONTAINER_ID``, ``WORKER_PORT``, ``PUBLIC_IPADDR``, ``VAST_TCP_PORT_<WORKER_PORT>``) it:

1. fetches the router's public key (``GET {REPORT_ADDR}/pubkey/``);
2. measures its ``max_perf`` (cost units per second) by running its own work at start;
3. reports ``/worker_status/`` (loaded, ``max_perf``, ``loadtime``, its ``url``), then again
   whenever its load changes and at least every ``REPORT_SECONDS``;
4. serves ``POST /<anything>`` bodies ``{"auth_data": <the /route/ grant>, "payload": …}``: a
   grant whose signature does not verify, or one already used (its ``request_idx``), is 401; a
   request that would wait in its queue past ``max_queue_time`` is 429; otherwise the work is
   done and ``{"result": …}`` answered, and the request reported done (``/delete_requests/``).
   On ``/v1/chat/completions`` and ``/v1/embeddings`` the answer is OpenAI's instead
   (serverless_openai.py), so the OpenAI gateway can route a model to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gpuyard.core.tasks import cancel_and_wait
from gpuyard.workers import serverless_openai

log = logging.getLogger("gpuyard.workers.serverless")

REPORT_SECONDS = 5.0
BENCHMARK_COST = 2000


def work(payload: object, cost: float) -> str:
    """The worker's job: ``cost`` rounds of SHA-256 over the payload."""
    digest = json.dumps(payload, sort_keys=True).encode()
    for _ in range(max(1, int(cost))):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@dataclass
class Identity:
    report_addr: str
    mtoken: str
    worker_id: int
    url: str

    @classmethod
    def from_env(cls, env: dict[str, str], *, listen_port: int) -> Identity:
        """Reached at ``PUBLIC_IPADDR`` on ``VAST_TCP_PORT_<WORKER_PORT>``, else on the port it
        listens on (the process runtime's ``$PORT``)."""
        public = env.get(f"VAST_TCP_PORT_{env['WORKER_PORT']}", str(listen_port))
        return cls(
            report_addr=env["REPORT_ADDR"].split(",")[0].rstrip("/"),
            mtoken=env["MASTER_TOKEN"],
            worker_id=int(env["CONTAINER_ID"]),
            url=f"http://{env.get('PUBLIC_IPADDR', '127.0.0.1')}:{public}",
        )


@dataclass
class WorkerState:
    me: Identity
    max_queue_time: float
    pubkey: rsa.RSAPublicKey | None = None
    max_perf: float = 0.0
    loadtime: float = 0.0
    queued_cost: float = 0.0
    working: int = 0
    seen: set[int] = field(default_factory=set)
    finished: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def verify(self, auth: dict[str, Any]) -> bool:
        if self.pubkey is None:
            return False
        message = json.dumps({"url": auth.get("url")}, indent=4, sort_keys=True).encode()
        try:
            signature = base64.b64decode(str(auth.get("signature", "")), validate=True)
            self.pubkey.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


def _answer(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def _result(path: str, payload: object, result: str) -> Response:
    if isinstance(payload, dict) and path == "v1/chat/completions":
        if payload.get("stream"):
            chunks = serverless_openai.chat_chunks(payload, result)
            return StreamingResponse(chunks, media_type="text/event-stream")
        return JSONResponse(serverless_openai.chat_completion(payload, result))
    if isinstance(payload, dict) and path == "v1/embeddings":
        return JSONResponse(serverless_openai.embeddings(payload, result))
    return JSONResponse({"result": result})


async def _serve(request: Request) -> Response:
    state: WorkerState = request.app.state.worker
    try:
        body = await request.json()
        auth, payload = body["auth_data"], body.get("payload")
        idx, cost = int(auth["request_idx"]), float(auth.get("cost", 1))
    except (ValueError, KeyError, TypeError):
        return _answer(400, "give {auth_data: <the /route/ grant>, payload: ...}")
    if not state.verify(auth):
        return _answer(401, "signature does not verify")
    if idx in state.seen:
        return _answer(401, "grant already used")
    wait = (state.queued_cost + cost) / state.max_perf if state.max_perf else 0.0
    if wait > state.max_queue_time:
        return _answer(429, f"queue would take {wait:.1f} s, over {state.max_queue_time} s")
    state.seen.add(idx)
    state.queued_cost += cost
    state.working += 1
    state.changed.set()
    started = time.time()
    try:
        result = await asyncio.to_thread(work, payload, cost)
    finally:
        state.queued_cost -= cost
        state.working -= 1
    state.finished.append(
        {
            "request_idx": idx,
            "success": True,
            "status": "Success",
            "work_started_at": started,
            "work_completed_at": time.time(),
        }
    )
    state.changed.set()
    return _result(request.path_params["path"], payload, result)


async def _report(client: httpx.AsyncClient, state: WorkerState) -> None:
    me = state.me
    status = {
        "id": me.worker_id,
        "mtoken": me.mtoken,
        "version": "0",
        "loadtime": state.loadtime,
        "cur_load": state.queued_cost,
        "new_load": 0.0,
        "rej_load": 0.0,
        "max_perf": state.max_perf,
        "cur_perf": 0.0,
        "error_msg": "",
        "num_requests_working": state.working,
        "num_requests_recieved": 0,
        "url": me.url,
    }
    await client.post(f"{me.report_addr}/worker_status/", json=status)
    done, state.finished = state.finished, []
    if done:
        body = {"worker_id": me.worker_id, "mtoken": me.mtoken, "requests": done}
        r = await client.post(f"{me.report_addr}/delete_requests/", json=body)
        if r.status_code >= 400:
            state.finished.extend(done)


async def _start(client: httpx.AsyncClient, state: WorkerState) -> None:
    started = time.monotonic()
    pem = (await client.get(f"{state.me.report_addr}/pubkey/")).raise_for_status().text
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise RuntimeError("the router's key is not an RSA key")
    state.pubkey = key
    t = time.perf_counter()
    await asyncio.to_thread(work, {"benchmark": True}, BENCHMARK_COST)
    state.max_perf = BENCHMARK_COST / max(time.perf_counter() - t, 1e-6)
    state.loadtime = time.monotonic() - started
    log.info("loaded in %.2f s; max_perf %.0f cost/s", state.loadtime, state.max_perf)


async def _reporting(state: WorkerState) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        while state.pubkey is None:
            try:
                await _start(client, state)
            except (httpx.HTTPError, ValueError, RuntimeError) as exc:
                log.warning("cannot reach the router at %s yet: %s", state.me.report_addr, exc)
                await asyncio.sleep(1.0)
        while True:
            try:
                await _report(client, state)
            except httpx.HTTPError as exc:
                log.warning("report failed: %s", exc)
            state.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), timeout=REPORT_SECONDS)


def build_app(
    *, listen_port: int, env: dict[str, str] | None = None, max_queue_time: float = 30.0
) -> Starlette:
    me = Identity.from_env(dict(env or os.environ), listen_port=listen_port)
    state = WorkerState(me=me, max_queue_time=max_queue_time)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_reporting(state))
        try:
            yield
        finally:
            await cancel_and_wait(task)

    app = Starlette(routes=[Route("/{path:path}", _serve, methods=["POST"])], lifespan=lifespan)
    app.state.worker = state
    return app
