"""The installed ``vastai`` CLI as a subprocess against a test API, in a home of its own (the
CLI keeps config and caches there; ``VAST_URL`` points its start-up probes at us)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VASTAI = Path(sys.executable).parent / "vastai"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Vastai:
    base_url: str
    key: str
    home: Path

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "VASTAI_NO_UPDATE_CHECK": "1",
            # The CLI sends the autoscaler's calls (workers, logs) to run.vast.ai when --url
            # equals VAST_URL: name us differently there so every call comes to us.
            "VAST_URL": self.base_url.replace("127.0.0.1", "localhost"),
            "COLUMNS": "250",
        }

    async def __call__(self, *args: str) -> Run:
        self.home.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            str(VASTAI),
            "--url",
            self.base_url,
            "--api-key",
            self.key,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return Run(proc.returncode, _ANSI.sub("", out.decode()), _ANSI.sub("", err.decode()))
