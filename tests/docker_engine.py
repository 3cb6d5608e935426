"""A private Docker engine for the tests, and the images they run, made from this machine.

``start_engine()`` runs ``dockerd`` as root with its own socket, data root and exec root (``vfs``
storage, no default bridge, no iptables rules, so it changes nothing the host's own engine or
firewall holds) and ends with the test session. Nothing is pulled: the images are imported from
root filesystems built here (``docker_images.py``), cached between runs.

Where no engine can start (not root, no ``dockerd``, no static busybox) the tests that need one are
skipped, and the run says so at the end, unless ``GPUYARD_TEST_REQUIRE_DOCKER=1`` (CI), which
turns that into a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException

from tests.docker_images import BUSYBOX_IMAGE, PYTHON_IMAGE, image_problem, import_images

REQUIRE_ENV = "GPUYARD_TEST_REQUIRE_DOCKER"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

__all__ = ["BUSYBOX_IMAGE", "PYTHON_IMAGE", "PrivateEngine", "engine_problem", "start_engine"]


@dataclass
class PrivateEngine:
    """A running private ``dockerd``; ``url`` is what ``DOCKER_HOST`` would say."""

    dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"unix://{self.dir / 'docker.sock'}"

    def client(self, timeout_s: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout_s)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.dir / "dockerd.log").read_text().splitlines()[-lines:])
        return ""

    def remove_all_containers(self) -> None:
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                with contextlib.suppress(DockerException):
                    container.remove(force=True)
        finally:
            client.close()

    def stop(self) -> None:
        """Remove every container, end ``dockerd`` (and its containerd), delete its files."""
        with contextlib.suppress(DockerException):
            self.remove_all_containers()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def engine_problem() -> str | None:
    """None when this machine can run a private engine, else why not."""
    if os.geteuid() != 0:
        return "the tests' private dockerd needs root"
    if shutil.which("dockerd") is None:
        return "no dockerd on PATH (apt-get install docker.io)"
    return image_problem()


def start_engine(cache_dir: Path) -> PrivateEngine:
    """Start a private engine and import the test images into it; raises ``RuntimeError`` with
    dockerd's own words when it does not come up."""
    _sweep_stale()
    # Short on purpose: a unix socket path holds about 107 bytes.
    base = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=_PARENT))
    log = (base / "dockerd.log").open("wb")
    argv = [
        "dockerd",
        f"--data-root={base / 'root'}",
        f"--exec-root={base / 'exec'}",
        f"--host=unix://{base / 'docker.sock'}",
        f"--pidfile={base / 'docker.pid'}",
        "--storage-driver=vfs",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        # Networks the engine makes are checked against the host's routes, so engines started by
        # concurrent test sessions pick different subnets; a pool of its own makes that likelier.
        f"--default-address-pool=base=10.{_pool_octet()}.0.0/16,size=24",
    ]
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_us,
    )
    log.close()
    engine = PrivateEngine(dir=base, process=process)
    try:
        _wait_ready(engine)
        client = engine.client()
        try:
            import_images(client, cache_dir)
        finally:
            client.close()
    except BaseException:
        engine.stop()
        raise
    return engine


def _wait_ready(engine: PrivateEngine) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if engine.process.poll() is not None:
            code = engine.process.returncode
            raise RuntimeError(f"dockerd exited ({code}):\n{engine.log_tail()}")
        if (engine.dir / "docker.sock").exists():
            client = engine.client(timeout_s=5)
            try:
                if client.ping():
                    return
            except DockerException:
                pass
            finally:
                client.close()
        if time.monotonic() > deadline:
            waited = f"dockerd did not answer in {START_TIMEOUT_S}s"
            raise RuntimeError(f"{waited}:\n{engine.log_tail()}")
        time.sleep(0.1)


_PARENT = "/tmp"
_PREFIX = "gyd-"


def _sweep_stale() -> None:
    """Delete what engines of killed test runs left (their dockerd ended with the run, see
    ``_die_with_us``): directories no live ``dockerd`` uses, a minute old or more (so that one
    another session is starting right now is left alone)."""
    in_use = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            words = cmdline.read_bytes().split(b"\0")
            if words and words[0].endswith(b"dockerd"):
                in_use.update(w.decode(errors="replace") for w in words)
    for base in Path(_PARENT).glob(f"{_PREFIX}*"):
        with contextlib.suppress(OSError):
            if f"--data-root={base / 'root'}" in in_use or time.time() - base.stat().st_mtime < 60:
                continue
            _unmount_under(base)
            shutil.rmtree(base, ignore_errors=True)


def _pool_octet() -> int:
    return 128 + os.getpid() % 120


def _die_with_us() -> None:
    """In the child: SIGTERM it when the test process dies, so no engine outlives a killed run."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _unmount_under(base: Path) -> None:
    """Lazily unmount whatever dockerd left mounted below ``base`` (network namespaces, say)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(base) + "/"
    points = [f[1] for f in (m.split() for m in mounts) if len(f) > 1 and f[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
