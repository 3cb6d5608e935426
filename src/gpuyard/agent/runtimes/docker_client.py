"""The part of the Docker SDK (``docker.DockerClient``) the ``docker`` runtime uses, as protocols.

These protocols are the runtime's seam: the real ``docker.DockerClient`` fits them, and so does the
small in-memory fake the tests use. Every call here blocks; the runtime runs them in a thread.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
from typing import Any, Protocol

import docker

log = logging.getLogger(__name__)


class ContainerLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def attrs(self) -> dict[str, Any]: ...

    @property
    def labels(self) -> dict[str, str]: ...

    def reload(self) -> None: ...

    def start(self) -> None: ...

    def stop(self, *, timeout: int) -> None: ...

    def remove(self, *, force: bool = False) -> None: ...

    def logs(
        self, *, stdout: bool = True, stderr: bool = True, tail: int | str = "all"
    ) -> bytes: ...


class ContainersLike(Protocol):
    def create(
        self, image: str, command: builtins.list[str] | None = None, **kwargs: Any
    ) -> Any: ...

    def list(
        self,
        *,
        all: bool = False,
        filters: dict[str, Any] | None = None,
        ignore_removed: bool = False,
    ) -> Any: ...


class ImagesLike(Protocol):
    def get(self, name: str) -> Any: ...

    def pull(self, repository: str, tag: str | None = None) -> Any: ...


class NetworksLike(Protocol):
    def list(self, *, names: builtins.list[str] | None = None) -> Any: ...

    def create(self, name: str, **kwargs: Any) -> Any: ...


class DockerClientLike(Protocol):
    @property
    def containers(self) -> ContainersLike: ...

    @property
    def images(self) -> ImagesLike: ...

    @property
    def networks(self) -> NetworksLike: ...

    def ping(self) -> bool: ...


CALL_TIMEOUT_S = 120.0
"""How long one call to the engine may take: creating a container copies its image's files on
some storage drivers, and a stop waits out the grace period first (the SDK adds that itself)."""


def connect_docker(timeout_s: float = CALL_TIMEOUT_S) -> DockerClientLike:
    """A client for the engine the environment names (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
    ``DOCKER_CERT_PATH``, else the local socket); every call it makes waits at most ``timeout_s``.

    Raises ``docker.errors.DockerException`` when the environment names no usable engine.
    """
    client: DockerClientLike = docker.DockerClient.from_env(timeout=max(1, math.ceil(timeout_s)))
    return client


async def docker_available(
    client: DockerClientLike | None = None, *, timeout_s: float = 2.0
) -> bool:
    """True when a Docker engine answers a ping within about ``timeout_s``; never raises."""

    def ping() -> bool:
        # A client of its own for the ping, whose calls wait no longer than the ping may.
        return bool((client or connect_docker(timeout_s)).ping())

    try:
        return await asyncio.wait_for(asyncio.to_thread(ping), timeout_s + 1.0)
    except Exception as exc:  # any failure to reach an engine means: no engine
        log.debug("no Docker engine answers: %s", exc)
        return False
