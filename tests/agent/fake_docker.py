"""A small, honest in-memory Docker engine behind the parts of ``docker.DockerClient`` we use.

It keeps containers, images and networks, enforces what a real engine enforces for those calls
(unique names and images present at ``create``; networks that exist, published ports free and
GPU device ids it has at ``start``, where a refusal leaves the container ``created`` with its
``State.Error``, as ``dockerd`` does), raises the SDK's own exceptions, and lets a test play the
workload's part (``finish``, ``write``). Each container keeps the keyword arguments it was created
with (``run_kwargs``) so a test can say what the runtime asked of the engine. The tests against a
real private engine (``test_docker_engine.py``) check the same rules where one can start; this
fake keeps the runtime's logic tested everywhere else, and plays what no test engine has (GPUs,
a registry).
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from docker.errors import APIError, ImageNotFound, NotFound

_ids = itertools.count(1)
_NEVER = "0001-01-01T00:00:00Z"


class FakeContainer:
    def __init__(self, engine: FakeEngine, image: str, command: list[str] | None, **kw: Any):
        self._engine = engine
        self.id = f"{next(_ids):064x}"
        self.name: str = kw["name"]
        self.image = image
        self.command = command
        self.entrypoint: list[str] | None = kw.get("entrypoint")
        self.environment: dict[str, str] = dict(kw.get("environment") or {})
        self._labels: dict[str, str] = dict(kw.get("labels") or {})
        self.run_kwargs: dict[str, Any] = dict(kw)
        self.network: str = kw.get("network") or "bridge"
        self.ports: dict[str, Any] = dict(kw.get("ports") or {})
        self.device_requests: list[dict[str, Any]] = list(kw.get("device_requests") or [])
        self.status = "created"
        self.error = ""
        self.exit_code = 0
        self.pid = 1000 + int(self.id, 16)
        self.output = ""
        self.stop_timeouts: list[int] = []
        self.starts = 0
        self.handles_sigterm = True

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._labels)

    def reload(self) -> None:
        if self.id not in self._engine.containers:
            raise NotFound(f"No such container: {self.id}")

    @property
    def attrs(self) -> dict[str, Any]:
        running = self.status == "running"
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "State": {
                "Status": self.status,
                "Running": running,
                "Pid": self.pid if running else 0,
                "ExitCode": self.exit_code,
                "Error": self.error,
                "OOMKilled": False,
                "StartedAt": _NEVER if self.never_ran else "2026-01-01T00:00:00.123456789Z",
                "FinishedAt": _NEVER if running or self.never_ran else "2026-01-01T00:01:00.5Z",
            },
            "Config": {"Labels": dict(self._labels)},
        }

    @property
    def never_ran(self) -> bool:
        return self.status == "created"

    def start(self) -> None:
        if self.status == "running":
            return
        engine = self._engine
        try:
            engine.check_start(self)
        except APIError as exc:
            self.error = str(exc.explanation or exc)
            if self.status == "created":
                self.exit_code = 128
            raise
        self.error = ""
        self.status = "running"
        self.starts += 1

    def stop(self, *, timeout: int) -> None:
        self.stop_timeouts.append(timeout)
        if self.status == "running":
            self.finish(143 if self.handles_sigterm else 137)

    def remove(self, *, force: bool = False) -> None:
        if self.status == "running" and not force:
            raise APIError("You cannot remove a running container. Stop it or use force")
        self._engine.containers.pop(self.id, None)

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | str = "all") -> bytes:
        lines = self.output.splitlines(keepends=True)
        kept = lines if tail == "all" else lines[len(lines) - int(tail) :] if int(tail) else []
        return "".join(kept).encode()

    # The workload's side.
    def write(self, text: str) -> None:
        self.output += text

    def finish(self, exit_code: int) -> None:
        self.status = "exited"
        self.exit_code = exit_code


class FakeContainers:
    def __init__(self, engine: FakeEngine) -> None:
        self._engine = engine

    def create(self, image: str, command: list[str] | None = None, **kw: Any) -> FakeContainer:
        engine = self._engine
        if image not in engine.images:
            raise ImageNotFound(f"No such image: {image}")
        if any(c.name == kw["name"] for c in engine.containers.values()):
            raise APIError(f'Conflict. The container name "/{kw["name"]}" is already in use')
        network = kw.get("network")
        if network and network not in engine.networks and network not in _BUILTIN_NETWORKS:
            raise NotFound(f"network {network} not found")
        container = FakeContainer(engine, image, command, **kw)
        engine.containers[container.id] = container
        return container

    def list(
        self,
        *,
        all: bool = False,
        filters: dict[str, Any] | None = None,
        ignore_removed: bool = False,
    ) -> list[Any]:
        wanted = (filters or {}).get("label", [])
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        found = []
        for c in self._engine.containers.values():
            if not all and c.status != "running":
                continue
            if not [w for w in wanted if not _label_matches(c.labels, w)]:
                found.append(c)
        return found


_BUILTIN_NETWORKS = ("bridge", "host", "none")


def _host_port(binding: Any) -> int:
    """A published port as the SDK takes it: ``port`` or ``(host address, port)``."""
    return int(binding[1] if isinstance(binding, tuple) else binding)


class FakeNetworks:
    def __init__(self, engine: FakeEngine) -> None:
        self._engine = engine

    def list(self, *, names: list[str] | None = None) -> list[SimpleNamespace]:
        """As the engine's name filter does, a name matches any network whose name holds it."""
        return [
            SimpleNamespace(name=n)
            for n in self._engine.networks
            if names is None or any(wanted in n for wanted in names)
        ]

    def create(self, name: str, **kw: Any) -> str:
        if name in self._engine.networks or name in _BUILTIN_NETWORKS:
            raise APIError(f"network with name {name} already exists")
        self._engine.networks[name] = dict(kw)
        return name


def _label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


class FakeImages:
    def __init__(self, engine: FakeEngine) -> None:
        self._engine = engine
        self.pulls: list[str] = []

    def get(self, name: str) -> str:
        if name not in self._engine.images:
            raise ImageNotFound(f"No such image: {name}")
        return name

    def pull(self, repository: str, tag: str | None = None) -> str:
        ref = f"{repository}:{tag}" if tag else repository
        self.pulls.append(ref)
        if ref not in self._engine.registry:
            raise NotFound(f"pull access denied for {repository}, repository does not exist")
        self._engine.images.add(ref)
        return ref


class FakeEngine:
    def __init__(self, *, registry: set[str] | None = None, gpus: set[str] | None = None):
        self.registry = registry or set()
        self.images: set[str] = set()
        self.gpus = gpus or set()
        self.containers: dict[str, FakeContainer] = {}
        self.networks: dict[str, dict[str, Any]] = {}  # name -> what it was created with

    def check_start(self, container: FakeContainer) -> None:
        for binding in container.ports.values():
            port = _host_port(binding)
            if port in self.published_ports():
                raise APIError(f"Bind for 0.0.0.0:{port} failed: port is already allocated")
        for request in container.device_requests:
            missing = [d for d in request["DeviceIDs"] if d not in self.gpus]
            if missing:
                raise APIError(
                    'could not select device driver "" with capabilities: [[gpu]]'
                    if not self.gpus
                    else f"unknown device ids {missing}"
                )

    def published_ports(self) -> set[int]:
        return {
            _host_port(p)
            for c in self.containers.values()
            if c.status == "running"
            for p in c.ports.values()
        }


class FakeDockerClient:
    """What ``docker.DockerClient`` offers the runtime; several clients may share one engine."""

    def __init__(self, engine: FakeEngine | None = None, *, up: bool = True) -> None:
        self.engine = engine or FakeEngine()
        self.up = up
        self.containers = FakeContainers(self.engine)
        self.images = FakeImages(self.engine)
        self.networks = FakeNetworks(self.engine)

    def ping(self) -> bool:
        if not self.up:
            raise APIError("Cannot connect to the Docker daemon")
        return True
