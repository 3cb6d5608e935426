"""Time from ``POST /v1/clusters`` to ``healthy``: the control plane's own share.

One ``gpuyard up`` (SQLite, its local agent on the ``process`` runtime) in a child process; one
cluster at a time, each one replica of a command that serves at once (a few lines of Python's
``socketserver`` answering every request with 200), so what is measured is scheduling, the
agent's pickup, the process start and the first probes. Each phase comes from the cluster's own
events (server clock, the same machine's):

- schedule: ``POST`` sent → ``replica.placed``
- pickup and start: placed → ``replica.running`` (the agent hears of it, starts it, reports it)
- probe: running → ``cluster.healthy``
- seen: healthy → the client's poll sees it (a 20 ms poll)

    .venv/bin/python bench/cluster_ready.py [--clusters 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import Latency, idle_load, machine_line, markdown_table, ms
from server_process import free_port, log_tail

# BaseHTTPRequestHandler answers 501 to GET: a health path is probed for < 400, so serve 200.
SERVES_AT_ONCE = (
    "exec python3 -c '"
    "import http.server as h, os\n"
    "class A(h.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    '        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()\n'
    "    def log_message(self, *a): pass\n"
    'h.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), A).serve_forever()\''
)
PHASES = ("schedule", "pickup and start", "probe", "seen")


def start_up(root: Path, port: int, gpus: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUYARD_")}
    env.update(HOME=str(root), GPUYARD_LOG_LEVEL="warning", GPUYARD_REPLICA_DRAIN_SECONDS="0")
    log = (root / "up.log").open("wb")
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "gpuyard.cli.main", "up", "--port", str(port)),
            *("--data-dir", str(root / "data"), "--gpus", f"RTX 4090:{gpus}"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_host(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gpuyard up exited:\n{log_tail(log)}")
        try:
            hosts = client.get("/v1/admin/hosts").json()["data"]
            if any(h["status"] == "ready" for h in hosts):
                return
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"no host registered:\n{log_tail(log)}")


def event_times(
    client: httpx.Client, org_id: str, cluster_id: str, since: float
) -> dict[str, float]:
    types = ["replica.placed", "replica.running", "cluster.healthy"]
    after = datetime.fromtimestamp(since - 1, UTC).isoformat()
    r = client.get(
        f"/v1/orgs/{org_id}/events", params={"limit": 100, "type": types, "since": after}
    )
    r.raise_for_status()
    seen: dict[str, float] = {}
    for e in r.json()["data"]:
        if e["subject_id"] == cluster_id and e["type"] not in seen:
            seen[e["type"]] = datetime.fromisoformat(e["created_at"]).timestamp()
    return seen


def one(client: httpx.Client, org_id: str, i: int) -> dict[str, float]:
    body = {
        "name": f"ready-{i}",
        "gpu_type": "rtx-4090",
        "replicas": 1,
        "container": "python:3",
        "command": SERVES_AT_ONCE,
        "health_path": "/",
        "models": [f"ready-{i}"],
    }
    sent = time.time()
    r = client.post("/v1/clusters", json=body)
    r.raise_for_status()
    cluster_id = r.json()["id"]
    while True:
        status = client.get(f"/v1/clusters/{cluster_id}").json()["status"]
        if status == "healthy":
            seen = time.time()
            break
        if status == "failed" or time.time() - sent > 60:
            raise SystemExit(f"cluster {cluster_id} is {status} after {time.time() - sent:.0f}s")
        time.sleep(0.02)
    ev = event_times(client, org_id, cluster_id, sent)
    return {
        "total": (seen - sent) * 1000,
        "schedule": (ev["replica.placed"] - sent) * 1000,
        "pickup and start": (ev["replica.running"] - ev["replica.placed"]) * 1000,
        "probe": (ev["cluster.healthy"] - ev["replica.running"]) * 1000,
        "seen": (seen - ev["cluster.healthy"]) * 1000,
    }


def remove_all(client: httpx.Client) -> None:
    """Delete every cluster and wait until their replicas are gone (workloads outlive a stopped
    agent by design)."""
    for c in client.get("/v1/clusters", params={"limit": 100}).json()["data"]:
        client.delete(f"/v1/clusters/{c['id']}")
    deadline = time.monotonic() + 60
    while client.get("/v1/clusters").json()["data"] and time.monotonic() < deadline:
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=50)
    args = parser.parse_args()
    print(machine_line())
    print(idle_load())
    root = Path(tempfile.mkdtemp(prefix="cluster-ready-"))
    port = free_port()
    proc = start_up(root, port, args.clusters)
    try:
        deadline = time.monotonic() + 90
        key_file = root / "data" / "admin-key"
        while not key_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        key = key_file.read_text().strip()
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        wait_for_host(client, proc, root / "up.log")
        org_id = client.get("/v1/me").json()["org"]["id"]
        runs = [one(client, org_id, i) for i in range(args.clusters)]
        remove_all(client)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
    rows = []
    for phase in ("total", *PHASES):
        lat = Latency.of([r[phase] for r in runs])
        rows.append([phase, lat.n, ms(lat.p50), ms(lat.p90), ms(lat.p99), ms(lat.max)])
    print(f"\nPOST /v1/clusters → healthy, {args.clusters} clusters one at a time (ms)\n")
    print(markdown_table(["phase", "n", "p50", "p90", "p99", "max"], rows))


if __name__ == "__main__":
    main()
