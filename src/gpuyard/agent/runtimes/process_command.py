"""How a ``WorkloadSpec`` becomes a command line and an environment on the ``process`` runtime.

The rules (also in ``docs/agent-runtimes.md``):

The *entrypoint* of the spec's image is ``[]`` when there is no image,
``[<python>, -m, gpuyard.cli.main, worker, <kind>]`` for a built-in worker image
(``gpuyard/worker:<kind>``, optionally behind a registry, or ``gpuyard-worker-<kind>[:tag]``), and
unknown for any other image. The *main argv* is the entrypoint followed by ``args``.

1. ``command`` set: ``/bin/sh -c <command> gpuyard <args…>`` (``args`` are ``$1``, ``$2``, …).
2. else ``onstart`` set: ``/bin/sh -c <onstart>`` then, when the main argv is not empty,
   ``exec "$@"`` with the main argv as ``$@`` (an unknown image's entrypoint counts as empty here:
   the script is taken to stand for it).
3. else the main argv, run directly with no shell, when the entrypoint is known and it is not empty.
4. else the workload fails: ``image X cannot run on the process runtime; give a command``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from gpuyard.core.workload import WorkloadSpec

BUILTIN_WORKER_KINDS = ("embeddings", "chat", "tts", "serverless")
SHELL = "/bin/sh"

DEFAULT_INHERITED_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
)
"""Variables a workload gets from the agent's own environment; everything else stays out, so the
agent's credentials never leak into a customer's process."""

_WORKER_IMAGE_RES = (
    re.compile(r"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?gpuyard/worker:(?P<kind>[A-Za-z0-9_.-]+)$"),
    re.compile(r"^(?:[A-Za-z0-9.-]+(?::\d+)?/)?gpuyard-worker-(?P<kind>[a-z0-9_-]+)(?::[\w.-]+)?$"),
)


class CannotRun(ValueError):
    """The spec has nothing the process runtime can execute; the message says what to give."""


def builtin_worker_kind(image: str) -> str | None:
    """The worker kind an image names (``gpuyard/worker:embeddings`` → ``embeddings``), if any."""
    for pattern in _WORKER_IMAGE_RES:
        match = pattern.match(image)
        if match:
            return match.group("kind")
    return None


def image_entrypoint(image: str | None, python: str) -> list[str] | None:
    """The argv an image starts with on this runtime; ``None`` when this runtime cannot know it."""
    if image is None or not image.strip():
        return []
    kind = builtin_worker_kind(image)
    if kind is None:
        return None
    if kind not in BUILTIN_WORKER_KINDS:
        known = ", ".join(BUILTIN_WORKER_KINDS)
        raise CannotRun(f"image {image} names an unknown built-in worker {kind!r} (known: {known})")
    return [python, "-m", "gpuyard.cli.main", "worker", kind]


def build_argv(spec: WorkloadSpec, *, python: str) -> list[str]:
    """The argv the process runtime executes for ``spec``; raises ``CannotRun``."""
    if spec.command is not None and spec.command.strip():
        return [SHELL, "-c", spec.command, "gpuyard", *spec.args]
    entrypoint = image_entrypoint(spec.image, python)
    if spec.onstart is not None and spec.onstart.strip():
        main = [*(entrypoint or []), *spec.args]
        if not main:
            return [SHELL, "-c", spec.onstart]
        return [SHELL, "-c", f'{spec.onstart}\nexec "$@"', "gpuyard", *main]
    if entrypoint is None:
        raise CannotRun(f"image {spec.image} cannot run on the process runtime; give a command")
    main = [*entrypoint, *spec.args]
    if not main:
        raise CannotRun("nothing to run: give a command, an onstart script, args or a worker image")
    return main


def build_env(
    spec: WorkloadSpec,
    *,
    host_port: int | None,
    home: str,
    listen_host: str = "127.0.0.1",
    base: Mapping[str, str] | None = None,
    inherit: Sequence[str] = DEFAULT_INHERITED_ENV,
    visible_devices: str | None = None,
) -> dict[str, str]:
    """The environment of a workload's process.

    Precedence, lowest first: the inherited variables of ``base`` (the agent's environment),
    ``HOME`` (the workload's own directory), ``spec.env``, then the variables gpuyard owns, which a
    spec cannot override: ``PORT`` (when a port was allocated), ``CUDA_VISIBLE_DEVICES``,
    ``CUDA_DEVICE_ORDER``, ``NVIDIA_VISIBLE_DEVICES``, ``HOST`` (where to listen: all interfaces
    unless the host is only reached on loopback), ``GPUYARD_WORKLOAD_ID``,
    ``GPUYARD_GPU_UUIDS`` and the SSH keys. ``visible_devices`` replaces the GPU indices in
    ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES``: a sandbox that holds only the
    assigned GPUs' devices names them by uuid, since CUDA numbers what it sees from 0.
    """
    source = os.environ if base is None else base
    env = {name: source[name] for name in inherit if name in source}
    env["HOME"] = home
    env.update(spec.env)
    devices = visible_devices or ",".join(str(i) for i in spec.gpu_indices)
    env["CUDA_VISIBLE_DEVICES"] = devices  # "" hides every GPU from a workload that asked for none
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # so CUDA's indices are NVML's indices
    env["NVIDIA_VISIBLE_DEVICES"] = devices or "void"
    env["GPUYARD_WORKLOAD_ID"] = spec.id
    env["GPUYARD_GPU_UUIDS"] = ",".join(spec.gpu_uuids)
    if host_port is not None:
        env["PORT"] = str(host_port)
        env["HOST"] = listen_host
    keys = "\n".join(k.strip() for k in spec.ssh_authorized_keys if k.strip())
    if keys:
        env["GPUYARD_SSH_AUTHORIZED_KEYS"] = keys
        env["SSH_PUBLIC_KEY"] = keys
    return env
