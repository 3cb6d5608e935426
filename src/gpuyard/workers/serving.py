"""What every built-in worker shares: a model loaded in the background, ``/health``,
``/v1/models``, OpenAI-shaped errors, and running under uvicorn with a graceful SIGTERM.

A worker starts answering at once: ``GET /health`` is 503 (``{"status": "loading"}``) while its
model loads in a background thread, then 200. Other routes answer 503 ``model_loading`` until then.
A model that fails to load stops the process with exit code 1 and the reason in its log, so the
agent sees the workload exit rather than a server that is never healthy.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gpuyard.workers.errors import ApiError, exception_handlers

log = logging.getLogger("gpuyard.workers")

T = TypeVar("T")

GRACEFUL_SHUTDOWN_S = 10


class WorkerFailed(RuntimeError):
    """The worker could not start or its model could not load; the message says why."""


class ModelSlot(Generic[T]):
    """A model that loads in a daemon thread while the server already answers."""

    def __init__(self, model_id: str, load: Callable[[], T]) -> None:
        self.model_id = model_id
        self.created = int(time.time())
        self._load = load
        self._value: T | None = None
        self.error: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] = lambda _exc: None
        self._thread: threading.Thread | None = None
        self.loaded = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpuyard-load", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        log.info("loading model %s", self.model_id)
        try:
            self._value = self._load()
        except BaseException as exc:  # the process exits with it; nothing else to do here
            self.error = exc
            log.error("could not load model %s: %s", self.model_id, exc)
            self.on_failure(exc)
            return
        log.info("model %s loaded in %.1fs", self.model_id, time.monotonic() - started)
        self.loaded.set()

    @property
    def ready(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        """The model; a 503 ``model_loading`` while it is not loaded yet."""
        if self._value is None:
            raise ApiError(
                503,
                f"model {self.model_id} is still loading; retry shortly",
                code="model_loading",
                headers={"Retry-After": "1"},
            )
        return self._value


def _model_card(slot: ModelSlot[Any]) -> dict[str, Any]:
    return {"id": slot.model_id, "object": "model", "created": slot.created, "owned_by": "gpuyard"}


def create_app(
    slot: ModelSlot[Any],
    routes: Sequence[BaseRoute],
    *,
    on_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    """A Starlette app with ``routes`` plus ``/health`` and ``/v1/models``; its lifespan starts
    loading the model and calls ``on_shutdown`` when the server stops."""

    async def health(_request: Request) -> Response:
        if slot.ready:
            return JSONResponse({"status": "ok", "model": slot.model_id})
        if slot.error is not None:
            return JSONResponse({"status": "failed", "error": str(slot.error)}, status_code=503)
        return JSONResponse({"status": "loading", "model": slot.model_id}, status_code=503)

    async def list_models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model_card(slot)]})

    async def get_model(request: Request) -> Response:
        name = request.path_params["model"]
        if name != slot.model_id:
            raise ApiError(
                404,
                f"the model {name!r} does not exist; this worker serves {slot.model_id!r}",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(_model_card(slot))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        slot.start()
        try:
            yield
        finally:
            if on_shutdown is not None:
                on_shutdown()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", list_models),
            Route("/v1/models/{model:path}", get_model),
            *routes,
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )


class _QuietHealth(logging.Filter):
    """Drops the access-log lines of successful ``GET /health``: the agent polls it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 5:
            return not (args[1] == "GET" and args[2] == "/health" and args[4] == 200)
        return True


def run_worker(
    app: Starlette,
    slot: ModelSlot[Any],
    *,
    host: str,
    port: int,
    log_level: str = "info",
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT (graceful: in-flight requests get
    ``GRACEFUL_SHUTDOWN_S`` seconds). Raises ``WorkerFailed`` when the model did not load."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _QuietHealth) for f in access_log.filters):
        access_log.addFilter(_QuietHealth())

    def stop(_exc: BaseException) -> None:
        server.should_exit = True

    slot.on_failure = stop
    server.run()
    if slot.error is not None:
        raise WorkerFailed(f"could not load model {slot.model_id}: {slot.error}") from slot.error
    if not server.started:
        raise WorkerFailed(f"could not serve on {host}:{port} (see the log above)")
