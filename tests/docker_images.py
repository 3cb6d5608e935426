"""The images the docker tests run, built from what this machine has (no registry is reached).

- ``gpuyard-test/busybox:1``: a static ``busybox`` and its applets (``/bin/sh``, ``httpd``, …).
- ``gpuyard-test/python:1``: that busybox plus the host's Python 3 (the system's ``python3``
  where there is one, else the interpreter running the tests): its binary, the shared libraries it
  and its extension modules load (from ``ldd``), and its standard library without tests, IDLE,
  tkinter and installed packages, all at their host paths, with ``/usr/local/bin/python3`` and
  ``python`` linking to it.

Each is a root filesystem tar, ``docker import``-ed into the engine; the tars are cached under
``$XDG_CACHE_HOME/gpuyard/test-images`` (``~/.cache/…``), keyed on what went into them, and
rebuilt only when that changes.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker

BUSYBOX_IMAGE = "gpuyard-test/busybox:1"
PYTHON_IMAGE = "gpuyard-test/python:1"
_BUILDER_VERSION = "1"
_STATIC_BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
_SKIP_STDLIB = {
    "site-packages",
    "dist-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpuyard" / "test-images"


def image_problem() -> str | None:
    """None when the images can be built here, else why not."""
    if _static_busybox() is None:
        return "no static busybox for the test images (apt-get install busybox-static)"
    return None


def import_images(client: docker.DockerClient, cache: Path) -> None:
    """Import both images into the engine, building (or reusing) their tars in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    for image, build in ((BUSYBOX_IMAGE, _busybox_members), (PYTHON_IMAGE, _python_members)):
        members = list(build())
        key = _key(members)
        tar_path = cache / f"{image.replace('/', '_').replace(':', '-')}-{key}.tar"
        if not tar_path.exists():
            _write_tar(tar_path, members)
        repository, _, tag = image.partition(":")
        client.api.import_image_from_file(str(tar_path), repository=repository, tag=tag)


Member = tuple[str, str | None, str | None]
"""(path in the image, host file to copy or None, link target or None); a directory otherwise."""


def _static_busybox() -> str | None:
    for path in _STATIC_BUSYBOX:
        if os.path.exists(path) and "not a dynamic executable" in _ldd_text(path):
            return path
    return None


def _busybox_members() -> Iterator[Member]:
    busybox = _static_busybox()
    assert busybox is not None
    for directory in ("bin", "tmp", "etc", "dev", "proc", "sys"):
        yield directory, None, None
    yield "bin/busybox", busybox, None
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for applet in sorted(set(applets.stdout.split())):
        if applet != "busybox":
            yield f"bin/{applet}", None, "busybox"
    yield "etc/passwd", None, None  # written as a file below (root and nobody)


def _python_members() -> Iterator[Member]:
    yield from _busybox_members()
    executable, stdlib = _host_python()
    for directory in ("usr", "usr/local", "usr/local/bin"):
        yield directory, None, None
    yield from _with_parents(executable.lstrip("/"), executable)
    yield "usr/local/bin/python3", None, executable
    yield "usr/local/bin/python", None, executable
    libraries = set(_libraries(executable))
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_STDLIB and not d.startswith("config-"))
        for name in sorted(files):
            path = os.path.join(root, name)
            if ".opt-" in name:
                continue  # the optimised bytecode only -O uses
            if name.endswith(".so"):
                libraries.update(_libraries(path))
            yield path.lstrip("/"), path, None
    for library in sorted(libraries):
        yield from _with_parents(library.lstrip("/"), os.path.realpath(library))


def _host_python() -> tuple[str, str]:
    """The Python to copy: its real executable and its standard library directory."""
    system = shutil.which("python3", path="/usr/bin:/bin")
    python = system or getattr(sys, "_base_executable", sys.executable)
    probe = "import sys, sysconfig; print(sys.executable); print(sysconfig.get_path('stdlib'))"
    out = subprocess.run(
        [python, "-I", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    return os.path.realpath(out[0]), out[1]


def _with_parents(path: str, source: str) -> Iterator[Member]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i]), None, None
    yield path, source, None


def _ldd_text(path: str) -> str:
    result = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr


def _libraries(path: str) -> list[str]:
    found = []
    for line in _ldd_text(path).splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            target = words[words.index("=>") + 1]
            if target.startswith("/"):
                found.append(target)
        elif words and words[0].startswith("/"):
            found.append(words[0])  # the dynamic loader itself
    return found


def _key(members: list[Member]) -> str:
    digest = hashlib.sha256(_BUILDER_VERSION.encode())
    for name, source, link in members:
        stat = os.stat(source) if source else None
        size_time = f"{stat.st_size}:{stat.st_mtime_ns}" if stat else ""
        digest.update(f"{name}\0{source}\0{link}\0{size_time}\n".encode())
    return digest.hexdigest()[:16]


_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"


def _write_tar(tar_path: Path, members: list[Member]) -> None:
    """Write the tar next to where it goes, then move it there: concurrent builders both finish."""
    tmp = tar_path.with_name(f"{tar_path.name}.{os.getpid()}.tmp")
    seen: set[str] = set()
    with tarfile.open(tmp, "w") as tar:
        for name, source, link in members:
            if name in seen:
                continue
            seen.add(name)
            if name == "etc/passwd":
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(_PASSWD), 0o644
                tar.addfile(info, io.BytesIO(_PASSWD))
            elif link is not None:
                info = tarfile.TarInfo(name)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
                tar.addfile(info)
            elif source is not None:
                info = tar.gettarinfo(os.path.realpath(source), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                with open(source, "rb") as data:
                    tar.addfile(info, data)
            else:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)
    os.replace(tmp, tar_path)
