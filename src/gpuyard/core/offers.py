"""Offers: how a host's free GPUs become rentable bundles, and the ids that name them.

A host that is ready, not cordoned and not draining offers, for each GPU type it has ``k`` free
GPUs of, one bundle of ``n`` GPUs for every ``n`` in 1, 2, 4, 8, 16, 32, 64 up to ``k``, and one of
all ``k``. Renting a bundle takes the ``n`` free GPUs of that type with the lowest indices. Each
bundle's price is the per-GPU price of its type times ``n``; CPU cores, RAM and disk are the
host's, shared in proportion to the GPUs (``n / total GPUs``).

An offer id is an integer (the Vast dialect speaks integers) that encodes the host's number, the
first GPU index of its type on that host, and ``n``; it stays the same while that bundle exists
and can be decoded without a lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

BUNDLE_SIZES = (1, 2, 4, 8, 16, 32, 64)
_N_SLOTS = 128
_INDEX_SLOTS = 64


@dataclass(frozen=True, slots=True)
class OfferRef:
    machine_id: int  # the host's integer number
    first_index: int  # the lowest GPU index of the offer's type on the host
    num_gpus: int


def bundle_sizes(free: int) -> list[int]:
    sizes = [n for n in BUNDLE_SIZES if n <= free]
    if free > 0 and free not in sizes:
        sizes.append(free)
    return sizes


def encode_offer_id(ref: OfferRef) -> int:
    if not (0 <= ref.first_index < _INDEX_SLOTS and 0 < ref.num_gpus < _N_SLOTS):
        raise ValueError(f"offer out of range: {ref}")
    return (ref.machine_id * _INDEX_SLOTS + ref.first_index) * _N_SLOTS + ref.num_gpus


def decode_offer_id(offer_id: int) -> OfferRef | None:
    """The bundle an id names, or None for an integer that could never be an offer id."""
    if offer_id <= 0:
        return None
    rest, n = divmod(offer_id, _N_SLOTS)
    machine_id, first = divmod(rest, _INDEX_SLOTS)
    if n == 0 or machine_id == 0:
        return None
    return OfferRef(machine_id=machine_id, first_index=first, num_gpus=n)


@dataclass(frozen=True, slots=True)
class Offer:
    """One rentable bundle, with the fields the offer query language filters on."""

    id: int
    host_id: str
    machine_id: int
    gpu_name: str
    num_gpus: int
    gpu_ram: int | None
    gpu_total_ram: int | None
    cpu_cores: float | None
    cpu_ram: int | None
    disk_space: float | None
    cents_per_hour: int
    dph_total: float
    reliability: float | None
    inet_up: float | None
    inet_down: float | None
    geolocation: str | None
    cuda_max_good: float | None
    compute_cap: int | None
    driver_version: str | None
    verified: bool
    rentable: bool
    rented: bool
    direct_port_count: int | None
    dlperf: float | None
    score: float | None
    public_ipaddr: str | None
