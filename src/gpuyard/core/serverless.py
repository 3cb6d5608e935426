"""Serverless endpoints, workergroups, templates and workers as the domain sees them, the rules
their knobs obey, and how a launch (a template's docker options, a workergroup's launch args, its
search parameters) turns into what a worker runs (docs/serverless.md)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from gpuyard.core import gpu_names
from gpuyard.core.autoscaling import EndpointKnobs, WorkerState, knob_errors
from gpuyard.core.errors import InvalidRequest
from gpuyard.core.offer_fields import Op
from gpuyard.core.offer_query import parse_cli_query


class EndpointState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # routes nothing new; workers kept as they are
    STOPPED = "stopped"  # routes nothing; every worker stopped


MAX_WORKERS = 256


def check_knobs(k: EndpointKnobs) -> None:
    """400 with the field named for a knob outside its range (the policy's own rules)."""
    errors = knob_errors(k)
    if k.max_workers > MAX_WORKERS:
        errors.setdefault("max_workers", f"max_workers must be at most {MAX_WORKERS}")
    for name, why in errors.items():
        raise InvalidRequest(why, param=name)


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    number: int
    org_id: str
    name: str
    api_key: str
    knobs: EndpointKnobs
    state: EndpointState
    created_at: datetime
    updated_at: datetime
    last_request_at: datetime | None
    deleting: bool = False


@dataclass(frozen=True, slots=True)
class Launch:
    """What each worker of a workergroup runs."""

    image: str | None = None
    command: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Which GPUs a workergroup's workers take, from its search parameters."""

    gpu_key: str | None
    num_gpus: int


@dataclass(frozen=True, slots=True)
class Workergroup:
    id: str
    number: int
    org_id: str
    endpoint_id: str
    endpoint_number: int
    endpoint_name: str
    template_hash: str | None
    template_number: int | None
    search_params: str
    launch_args: str | None
    gpu_ram: float
    test_workers: int
    launch: Launch
    placement: Placement
    status_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    number: int
    org_id: str
    hash_id: str
    name: str | None
    image: str | None
    tag: str | None
    env: str | None
    onstart: str | None
    runtype: str | None
    extra_filters: dict[str, Any]
    disk_space: float | None
    readme: str | None
    description: str | None
    private: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Worker:
    number: int
    endpoint_number: int
    workergroup_number: int
    status: WorkerState
    cur_load: float
    new_load: float
    cur_perf: float
    max_perf: float
    reqs_working: int
    loadtime: float | None
    loaded_at: datetime | None
    started_at: datetime | None
    gpu_name: str | None
    error_msg: str | None


def docker_options(text: str | None, *, param: str) -> tuple[dict[str, str], int | None]:
    """A template's docker options (``-e A=1 -p 8000:8000``): variables, and the container
    port of the first TCP ``-p``. Other flags (``-v``, ``-h``, ...) mean nothing here."""
    env: dict[str, str] = {}
    port: int | None = None
    words = _split(text or "", param)
    i = 0
    while i < len(words):
        flag = words[i]
        value = words[i + 1] if i + 1 < len(words) else None
        if flag in ("-e", "--env") and value is not None:
            name, eq, val = value.partition("=")
            if not eq or not name:
                raise InvalidRequest(f"{param}: {value!r} is not NAME=value", param=param)
            env[name] = val
            i += 2
        elif flag in ("-p", "--publish") and value is not None:
            mapping, _, proto = value.partition("/")
            container = mapping.rsplit(":", 1)[-1]
            if not (container.isascii() and container.isdigit() and 0 < int(container) < 65536):
                raise InvalidRequest(f"{param}: {value!r} is not a port mapping", param=param)
            if port is None and proto in ("", "tcp"):
                port = int(container)
            i += 2
        else:
            i += (
                2 if flag.startswith("-") and value is not None and not value.startswith("-") else 1
            )
    return env, port


def _split(text: str, param: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param) from None


def launch_from_args(text: str | None, base: Launch) -> Launch:
    """A workergroup's launch args (``--image I --env '-e A=1 -p 8000:8000' --onstart-cmd C``)
    over what its template gives."""
    image, command, env, port = base.image, base.command, dict(base.env), base.port
    words = _split(text or "", "launch_args")
    i = 0
    while i < len(words):
        flag, value = words[i], words[i + 1] if i + 1 < len(words) else None
        if value is None:
            break
        if flag == "--image":
            image = value
        elif flag in ("--onstart-cmd", "--onstart", "--command"):
            command = value
        elif flag == "--env":
            more, more_port = docker_options(value, param="launch_args")
            env.update(more)
            port = more_port or port
        i += 2
    return Launch(image=image, command=command, env=env, port=port)


def placement_from_search(text: str) -> Placement:
    """The GPU type (``gpu_name=RTX_4090``) and count (``num_gpus=2``) a search string asks
    for; the other filters are checked as offer filters, and any type fits when none is named."""
    try:
        query = parse_cli_query(text)
    except InvalidRequest as exc:
        raise InvalidRequest(f"search_params: {exc.message}", param="search_params") from None
    key: str | None = None
    count = 1
    for f in query.filters:
        if f.field == "gpu_name" and f.op is Op.EQ and isinstance(f.value, str):
            key = gpu_names.gpu_key(f.value)
        if f.field == "num_gpus" and f.op in (Op.EQ, Op.GTE) and isinstance(f.value, int | float):
            count = max(1, int(f.value))
    return Placement(gpu_key=key, num_gpus=count)
