"""The fleet of the offer search benchmark, written straight into a database: hosts, GPUs and
offers inserted in bulk with SQLAlchemy Core, offers computed by ``services.offers.host_offers``
(what registrations would have made), the renter org, its key and the GPU prices made through
the services."""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gpuyard.core import gpu_names
from gpuyard.core.agent_protocol import HostStatus
from gpuyard.core.clock import SystemClock
from gpuyard.core.credentials import hash_secret
from gpuyard.core.ids import new_id
from gpuyard.core.principal import Scope
from gpuyard.server import orm
from gpuyard.server.db import session_factory, write_session
from gpuyard.server.services import api_keys, offers, orgs, price_book, prices
from gpuyard.server.services.price_book import PriceBook

DEFAULT_PRICE = 50  # cents per GPU-hour, the server's default for unpriced types
CHUNK = 2_000
RESET_HOST_SEQUENCE = (
    "SELECT setval(pg_get_serial_sequence('hosts', 'pk'), (SELECT max(pk) FROM hosts))"
)

# (name as NVML reports it, VRAM MiB, share of hosts, operator price in cents per GPU-hour or None)
GPU_MIX: tuple[tuple[str, int, int, int | None], ...] = (
    ("NVIDIA GeForce RTX 4090", 24564, 30, 40),
    ("NVIDIA GeForce RTX 3090", 24576, 14, 22),
    ("NVIDIA A100-SXM4-80GB", 81920, 10, 110),
    ("NVIDIA H100 80GB HBM3", 81559, 10, 220),
    ("NVIDIA L40S", 46068, 8, 85),
    ("NVIDIA RTX A6000", 49140, 7, 55),
    ("NVIDIA GeForce RTX 5090", 32607, 6, 70),
    ("NVIDIA A10", 23028, 5, None),
    ("NVIDIA L4", 23034, 5, None),
    ("NVIDIA H200", 143771, 5, 320),
)
COUNTRIES: tuple[tuple[str | None, int], ...] = (
    ("US", 30), ("DE", 9), ("GB", 6), ("CA", 6), ("TW", 6), ("SE", 5), ("NL", 5), ("FR", 5),
    ("JP", 5), ("PL", 4), ("SG", 4), ("FI", 3), ("KR", 3), ("AU", 3), ("BR", 3), (None, 3),
)  # fmt: skip
CUDA = ("12.2", "12.4", "12.6", "12.8")


@dataclass
class Fleet:
    hosts: list[dict[str, Any]] = field(default_factory=list)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)


def build_fleet(n_hosts: int, gpus_per_host: int, seed: int, book: PriceBook) -> Fleet:
    """Rows for ``n_hosts`` hosts: 90% one GPU type, 10% two; 45% with GPUs rented (the lowest
    indices, as renting takes them); 94% ready, 1% cordoned, 3% unreachable, 2% offline."""
    rng = random.Random(seed)
    fleet = Fleet()
    now = datetime.now(UTC)
    types = [(name, vram) for name, vram, _, _ in GPU_MIX]
    type_weights = [w for _, _, w, _ in GPU_MIX]
    countries = [c for c, _ in COUNTRIES]
    country_weights = [w for _, w in COUNTRIES]
    for pk in range(1, n_hosts + 1):
        host_id = new_id("host")
        first = rng.choices(types, type_weights)[0]
        kinds = [first] * gpus_per_host
        if rng.random() < 0.10:
            second = rng.choices(types, type_weights)[0]
            half = gpus_per_host // 2
            kinds = [first] * half + [second] * (gpus_per_host - half)
        rented = _rented_count(rng, gpus_per_host)
        roll = rng.random()
        status = HostStatus.READY
        if roll < 0.03:
            status = HostStatus.UNREACHABLE
        elif roll < 0.05:
            status = HostStatus.OFFLINE
        cores = rng.choice((32, 64, 96, 128, 192, 256))
        facts = {
            "gpus": [
                {"index": i, "uuid": f"GPU-{pk:06d}-{i:02d}", "name": name, "vram_mb": vram}
                for i, (name, vram) in enumerate(kinds)
            ],
            "driver_version": rng.choice(("535.183.01", "550.127.05", "560.35.03", "570.86.15")),
            "cuda_version": rng.choice(CUDA),
            "cpu_cores": cores,
            "ram_mb": cores * rng.choice((4_000, 8_000)),
            "disk_free_mb": rng.randrange(500_000, 8_000_000),
            "disk_total_mb": 8_000_000,
            "hostname": f"gpu-{pk:05d}",
            "address": f"10.{pk >> 16 & 255}.{pk >> 8 & 255}.{pk & 255}",
            "port_range": {"start": 40000, "end": 40000 + rng.choice((99, 999))},
            "os": "Linux",
            # Most hosts sandbox their workloads; the rest are open to the renter only if
            # trusted (below), which the search's tenancy filter must sort out per host.
            "isolation": {"isolates": rng.random() < 0.9, "runtime": "process"},
        }
        seen = now - timedelta(seconds=rng.uniform(0, 5))
        host = {
            "pk": pk,
            "id": host_id,
            "name": facts["hostname"],
            "credential_hash": hash_secret(secrets.token_hex(16)),
            "status": status.value,
            "cordoned": rng.random() < 0.01,
            "draining": False,
            "verified": rng.random() < 0.85,
            "trusted": rng.random() < 0.5,
            "facts": facts,
            "address": facts["address"],
            "geolocation": rng.choices(countries, country_weights)[0],
            "inet_up_mbps": float(rng.choice((100, 250, 500, 1000, 2500, 10000))),
            "inet_down_mbps": float(rng.choice((250, 500, 1000, 2500, 10000))),
            "created_at": now,
            "updated_at": now,
            "last_heartbeat_at": seen,
            "status_changed_at": now,
        }
        gpus = []
        taken_by_type: dict[str, int] = {}
        for i, (name, vram) in enumerate(kinds):
            key = gpu_names.gpu_key(name)
            workload = None
            if taken_by_type.get(key, 0) < rented:
                taken_by_type[key] = taken_by_type.get(key, 0) + 1
                workload = f"wl_bench{pk:08d}{i:02d}"
            gpus.append(
                {
                    "host_id": host_id,
                    "index": i,
                    "uuid": f"GPU-{pk:06d}-{i:02d}",
                    "name": name,
                    "gpu_key": key,
                    "vram_mb": vram,
                    "workload_id": workload,
                }
            )
        fleet.hosts.append(host)
        fleet.gpus.extend(gpus)
        fleet.offers.extend(
            offers.host_offers(orm.Host(**host), [orm.Gpu(**g) for g in gpus], book)
        )
    return fleet


def _rented_count(rng: random.Random, gpus: int) -> int:
    roll = rng.random()
    if roll < 0.55:
        return 0
    if roll < 0.85:
        return rng.randint(1, max(1, gpus // 2))
    if roll < 0.95:
        return rng.randint(max(1, gpus // 2), max(1, gpus - 1))
    return gpus


@dataclass(frozen=True, slots=True)
class Populated:
    org_id: str
    api_key: str
    hosts: int
    gpus: int
    offers: int
    seconds: float


async def populate(engine: AsyncEngine, *, hosts: int, gpus_per_host: int, seed: int) -> Populated:
    started = time.perf_counter()
    clock = SystemClock()
    sessions = session_factory(engine)
    async with write_session(sessions) as session:
        org = await orgs.create_org(session, clock=clock, name="Bench renter")
        key = await api_keys.create_key(
            session, clock=clock, org_id=org.id, name="bench", scopes=[Scope.READ]
        )
        for name, _, _, cents in GPU_MIX:
            if cents is not None:
                await prices.set_price(session, clock=clock, gpu_name=name, cents=cents)
        price_map = await price_book.load(session)
    fleet = build_fleet(hosts, gpus_per_host, seed, price_map)
    async with engine.begin() as conn:
        for table, rows in ((orm.Host, fleet.hosts), (orm.Gpu, fleet.gpus)):
            for i in range(0, len(rows), CHUNK):
                await conn.execute(insert(table), rows[i : i + CHUNK])
        for i in range(0, len(fleet.offers), CHUNK):
            await conn.execute(insert(orm.Offer), fleet.offers[i : i + CHUNK])
        if conn.dialect.name == "postgresql":
            await conn.execute(text(RESET_HOST_SEQUENCE))
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))  # what autovacuum does soon after a load
    return Populated(
        org_id=org.id,
        api_key=key.secret,
        hosts=len(fleet.hosts),
        gpus=len(fleet.gpus),
        offers=len(fleet.offers),
        seconds=time.perf_counter() - started,
    )
