"""Money outside-in on ``gpuyard up`` (the real command in a subprocess, its own local agent on the
process runtime, the real clock): the operator credits an org, the org rents an instance at a
cent a second, the ledger and the real ``vastai show user`` show the charge for the seconds it
ran, a receiver on loopback that is down at first gets every signed ``instance.*`` and
``billing.*`` event once it is up (the dispatcher retries), and at zero balance the instance is
stopped. Nothing sleeps for time: every wait polls with a deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from tests.cli.up_kit import Launcher, assert_no_traceback, free_port, wait_for_hosts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
CREDIT_CENTS = 12
CENTS_PER_HOUR = 3600  # a cent a second
DEADLINE_S = 60.0
VASTAI = Path(sys.executable).parent / "vastai"


@contextmanager
def receiver(port: int, got: list[tuple[dict[str, str], bytes]]) -> Iterator[None]:
    """A webhook receiver on loopback, in a thread: records each request, answers 204."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def until(what: str, check: Callable[[], Any], output: Callable[[], str]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S}s\n{output()}"
        time.sleep(0.1)
    return found


def test_credit_rent_charge_events_and_stop_at_zero(gpuyard: Launcher, tmp_path: Path) -> None:
    server = gpuyard(
        "--gpus",
        "RTX 4090:1",
        env={
            "GPUYARD_DEFAULT_GPU_PRICE_CENTS": str(CENTS_PER_HOUR),
            "GPUYARD_METER_SETTLE_SECONDS": "1",
            "GPUYARD_DEPLETED_GRACE_SECONDS": "0",
            "GPUYARD_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        },
    )
    server.wait_ready()
    key = (server.data_dir / "admin-key").read_text().strip()
    wait_for_hosts(server, key, 1)
    op = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    org = op.post("/v1/admin/orgs", json={"name": "Acme"}).json()["id"]
    r = op.post(f"/v1/admin/orgs/{org}/api-keys", json={"name": "k", "scopes": ["org:write"]})
    assert r.status_code == 201, r.text
    tenant_key = r.json()["key"]
    me = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {tenant_key}"}, timeout=10
    )
    # A receiver that is not up yet.
    port = free_port()
    r = me.post(f"/v1/orgs/{org}/webhooks", json={"url": f"http://127.0.0.1:{port}/hook"})
    assert r.status_code == 201, r.text
    hook, secret = r.json()["id"], r.json()["secret"]

    r = op.post(
        f"/v1/admin/orgs/{org}/credits",
        json={"amount_cents": CREDIT_CENTS},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    offer = me.get(f"/v1/orgs/{org}/offers").json()["data"][0]
    assert offer["price_cents_per_hour"] == CENTS_PER_HOUR, offer
    r = me.post(f"/v1/orgs/{org}/vms", json={"offer_id": offer["id"], "command": "sleep 600"})
    assert r.status_code == 201, r.text
    vm = r.json()["id"]

    def failed_once() -> bool:
        page = me.get(f"/v1/orgs/{org}/webhooks/{hook}/deliveries").json()["data"]
        return any(d["attempts"] >= 1 for d in page)

    until("a first attempt while the receiver is down", failed_once, server.output)
    got: list[tuple[dict[str, str], bytes]] = []
    with receiver(port, got):
        # At a cent a second the credit runs out; with no grace the instance is stopped.
        def stopped() -> bool:
            return bool(me.get(f"/v1/orgs/{org}/vms/{vm}").json()["intended_status"] == "stopped")

        until("the instance stopped at zero", stopped, server.output)

        def types() -> set[str]:
            return {json.loads(body)["type"] for _, body in got}

        wanted = {"billing.credited", "billing.depleted", "billing.enforced"}
        until(
            "billing events at the receiver",
            lambda: wanted <= types() and any(t.startswith("instance.") for t in types()),
            lambda: f"{types()}\n{server.output()}",
        )
    verifier = standardwebhooks.Webhook(secret)
    for headers, body in got:
        assert verifier.verify(body, headers)  # signed, and recent

    # The ledger: usage entries for the seconds it ran, at the price in force.
    def settled() -> list[dict[str, Any]]:
        vm_row = me.get(f"/v1/orgs/{org}/vms/{vm}").json()
        if vm_row["actual_status"] == "running":
            return []
        entries = me.get(
            f"/v1/orgs/{org}/billing/ledger",
            params={"kind": "usage", "resource_id": vm, "limit": 100},
        ).json()["data"]
        return [e for e in entries if e["resource_kind"] == "instance"]  # not its disk

    usage = until("usage entries after the stop", settled, server.output)
    seconds = sum(e["gpu_seconds"] for e in usage)
    charged = -sum(e["amount_cents"] for e in usage)
    assert all(e["cents_per_hour"] == CENTS_PER_HOUR for e in usage)
    assert charged == seconds >= CREDIT_CENTS  # a cent for each whole second it ran
    balance = me.get(f"/v1/orgs/{org}/billing").json()["balance_cents"]
    assert balance == CREDIT_CENTS - charged <= 0

    # The real vastai CLI shows the same balance, in dollars.
    home = tmp_path / "vast-home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_STATE_HOME": str(home / "state"),
        "VASTAI_NO_UPDATE_CHECK": "1",
        "VAST_URL": server.base_url,
        "LANG": "C.UTF-8",
    }
    done = subprocess.run(
        [str(VASTAI), "--url", server.base_url, "--api-key", tenant_key, "show", "user", "--raw"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    user = json.loads(done.stdout)
    assert round(user["balance"] * 100) == balance, user
    assert_no_traceback(server)
    assert server.interrupt() == 0, server.output()
