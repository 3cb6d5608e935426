"""The operator key an operator chooses: read once, checked, then kept out of every environment.

``GPUYARD_ADMIN_KEY`` holds the key itself, ``GPUYARD_ADMIN_KEY_FILE`` names a file that holds it
(a mounted secret, a file only root reads): set one of them, or neither for a generated key. The
key must look like a real key and carry as much randomness as a generated one
(core/key_strength.py).

Once read, both variables leave this process's environment before anything else starts (the local
agent, its workloads, the built-in workers, uvicorn): whatever this process starts inherits an
environment without them. Removing a variable (``unsetenv``) only drops the pointer to its text,
and ``/proc/<pid>/environ`` shows the block the process was started with, text included; so that
text is overwritten too, through ``/proc/self/mem`` (the process writing its own memory, which
Linux allows without any privilege). Where that is not possible the server says so and suggests
``GPUYARD_ADMIN_KEY_FILE``.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from gpuyard.core.credentials import looks_like_api_key
from gpuyard.core.key_strength import weakness
from gpuyard.server.settings import Settings

log = logging.getLogger(__name__)

KEY_VARIABLE = "GPUYARD_ADMIN_KEY"
FILE_VARIABLE = "GPUYARD_ADMIN_KEY_FILE"
GENERATE_HINT = (
    "make one with `python -c \"import secrets; print('vl_' + secrets.token_urlsafe(32))\"`"
)


class OperatorKeyError(Exception):
    """The chosen operator key cannot be used; the message says which setting and why."""


def chosen_key(settings: Settings) -> str | None:
    """The operator key from ``GPUYARD_ADMIN_KEY`` or the file ``GPUYARD_ADMIN_KEY_FILE`` names,
    checked; None when neither is set. Raises :class:`OperatorKeyError`."""
    if settings.admin_key is not None and settings.admin_key_file is not None:
        raise OperatorKeyError(f"set {KEY_VARIABLE} or {FILE_VARIABLE}, not both")
    if settings.admin_key_file is not None:
        return _checked(_read_key_file(settings.admin_key_file), f"the key in {FILE_VARIABLE}")
    if settings.admin_key is not None:
        return _checked(settings.admin_key, KEY_VARIABLE)
    return None


def source(settings: Settings) -> str:
    """Where the chosen key came from, for messages that must not show it."""
    if settings.admin_key_file is not None:
        return f"the key in {settings.admin_key_file} ({FILE_VARIABLE})"
    return f"the value of {KEY_VARIABLE}"


def _read_key_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
        mode = stat.S_IMODE(path.stat().st_mode)
    except (OSError, UnicodeDecodeError) as exc:
        raise OperatorKeyError(f"{FILE_VARIABLE}: cannot read {path}: {exc}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise OperatorKeyError(
            f"{FILE_VARIABLE}: {path} must hold the key alone on one line "
            f"(it has {len(lines)} non-empty lines)"
        )
    if mode & 0o077:
        log.warning(
            "%s: %s can be read by other users (mode %04o); `chmod 600` it",
            FILE_VARIABLE,
            path,
            mode,
        )
    return lines[0]


def _checked(key: str, what: str) -> str:
    if not looks_like_api_key(key):
        raise OperatorKeyError(
            f"{what} must look like a real key: 'vl_' followed by at least 43 URL-safe "
            f"characters; {GENERATE_HINT}"
        )
    problem = weakness(key)
    if problem is not None:
        raise OperatorKeyError(
            f"{what} is too weak to be the operator key ({problem}); it must carry as much "
            f"randomness as a generated key: {GENERATE_HINT}"
        )
    return key


def clear_environment() -> None:
    """Remove both variables from this process's environment and overwrite their text in the
    block ``/proc/<pid>/environ`` shows. Call it before starting anything."""
    names = (KEY_VARIABLE, FILE_VARIABLE)
    present = [name for name in names if name in os.environ]
    for name in present:
        del os.environ[name]  # unsetenv: nothing started from now on inherits it
    if KEY_VARIABLE in present and not _overwrite_start_environment(KEY_VARIABLE):
        log.warning(
            "%s is gone from the environment of everything this server starts, but this "
            "system would not let it be erased from /proc/%d/environ; prefer %s",
            KEY_VARIABLE,
            os.getpid(),
            FILE_VARIABLE,
        )


def _overwrite_start_environment(name: str) -> bool:
    """Zero ``name=…`` in the environment block the process started with (``env_start`` to
    ``env_end`` of ``/proc/self/stat``, which ``/proc/self/environ`` reads); whether that block
    now holds no such entry."""
    prefix = name.encode() + b"="
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat_line = fh.read()
        fields = stat_line[stat_line.rindex(b")") + 2 :].split()  # from field 3 (state) on
        start, end = int(fields[47]), int(fields[48])  # fields 50 and 51
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            offset = 0
            for entry in block.split(b"\0"):
                if entry.startswith(prefix):
                    mem.seek(start + offset)
                    mem.write(b"\0" * len(entry))
                offset += len(entry) + 1
        with open("/proc/self/environ", "rb") as fh:
            return not any(e.startswith(prefix) for e in fh.read().split(b"\0"))
    except (OSError, ValueError, IndexError):
        return False
