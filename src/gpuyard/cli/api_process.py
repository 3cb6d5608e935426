"""How every process that serves the API runs it: the one process of ``gpuyard up`` and
``gpuyard server``, and each worker process of ``--workers N`` (``api_worker.py``) alike.

uvicorn's settings, the access log without heartbeats (and, from ``create_app``, without keys
sent as ``?api_key=``), the log format, and uvloop as the event loop where it is installed.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from fastapi import FastAPI

from gpuyard.server.settings import Settings

GRACEFUL_SHUTDOWN_S = 10


class QuietHeartbeats(logging.Filter):
    """Heartbeats arrive every few seconds from every host: keep them out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/v1/agent/heartbeat" not in record.getMessage()


def uvicorn_config(settings: Settings, app: FastAPI) -> uvicorn.Config:
    """uvicorn's settings for serving ``app`` on a listener bound beforehand; heartbeats are
    left out of the access log below the debug level."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=max(15, int(settings.heartbeat_seconds * 3)),  # agents keep theirs
    )
    if settings.log_level.lower() != "debug":  # after uvicorn has set up its loggers
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, QuietHeartbeats) for f in access.filters):
            access.addFilter(QuietHeartbeats())
    return config


def configure_logging(level: str, *, process: str | None = None) -> None:
    """gpuyard's log lines; ``process`` (e.g. ``worker 2``) starts each line of a worker
    process, whose output shares the terminal with its siblings'."""
    where = f"[{process}] " if process else ""
    logging.basicConfig(
        level=level.upper(), format=f"%(asctime)s %(levelname)s {where}%(name)s: %(message)s"
    )
    if level.lower() != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def use_fast_event_loop() -> None:
    """uvloop where installed (it comes with uvicorn[standard]); asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
