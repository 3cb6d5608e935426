import ctypes
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gpuyard.agent.gpus import (
    GpuInfo,
    GpuProbeResult,
    NvmlProbe,
    collect_facts,
    detect_gpus,
    listen_host,
    logical_gpu_seed,
    parse_gpu_declaration,
)
from gpuyard.core.hosts import PortRange


def test_declaration_name_and_count() -> None:
    gpus = parse_gpu_declaration("RTX 4090:2", seed="s")
    assert [(g.index, g.name, g.logical) for g in gpus] == [
        (0, "RTX 4090", True),
        (1, "RTX 4090", True),
    ]
    assert gpus[0].vram_mb == 24576  # known type: VRAM from core.gpu_names
    assert len({g.uuid for g in gpus}) == 2
    assert all(g.uuid.startswith("GPU-") for g in gpus)


def test_declaration_with_vram_and_list() -> None:
    gpus = parse_gpu_declaration(" RTX 4090 : 2 : 20000 , A100 80GB:1,Toaster", seed="s")
    assert [(g.index, g.name, g.vram_mb) for g in gpus] == [
        (0, "RTX 4090", 20000),
        (1, "RTX 4090", 20000),
        (2, "A100 80GB", None),
        (3, "Toaster", None),
    ]


def test_logical_uuids_are_stable_per_seed(tmp_path: Path) -> None:
    seed = logical_gpu_seed(tmp_path)
    assert logical_gpu_seed(tmp_path) == seed  # kept in the state dir across restarts
    first = parse_gpu_declaration("RTX 4090:2", seed=seed)
    again = parse_gpu_declaration("RTX 4090:2", seed=logical_gpu_seed(tmp_path))
    assert [g.uuid for g in first] == [g.uuid for g in again]
    other_host = parse_gpu_declaration("RTX 4090:2", seed=logical_gpu_seed(tmp_path / "other"))
    assert {g.uuid for g in first}.isdisjoint(g.uuid for g in other_host)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty GPU declaration"),
        ("   ", "empty GPU declaration"),
        (":2", "GPU name is empty"),
        ("RTX 4090:", "bad GPU count ''"),
        ("RTX 4090:two", "bad GPU count 'two'"),
        ("RTX 4090:0", "bad GPU count '0'"),
        ("RTX 4090:-1", "bad GPU count '-1'"),
        ("RTX 4090:65", "from 1 to 64"),
        ("RTX 4090:2:24GB", "bad VRAM '24GB'"),
        ("RTX 4090:2:0", "bad VRAM '0'"),
        ("RTX 4090:2:1:1", "expected NAME[:COUNT[:VRAM_MB]]"),
        ("RTX 4090:2,,A100:1", "GPU name is empty"),
    ],
)
def test_bad_declarations_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_gpu_declaration(text, seed="s")
    assert fragment in str(info.value)


class FakeNvml:
    """A stand-in for the ``pynvml`` module over a list of devices."""

    class NVMLError(Exception):
        pass

    def __init__(self, devices: list[dict[str, Any]], *, library: bool = True) -> None:
        self.devices = devices
        self.library = library
        self.initialised = False
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if not self.library:
            raise self.NVMLError("NVML Shared Library Not Found")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False
        self.shutdowns += 1

    def _check(self) -> None:
        if not self.initialised:
            raise self.NVMLError("Uninitialized")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check()
        return "550.54.14"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check()
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        self._check()
        return self.devices[index]

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str | bytes:
        if handle.get("broken"):
            raise self.NVMLError("GPU is lost")
        uuid: str | bytes = handle["uuid"]
        return uuid

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str | bytes:
        name: str | bytes = handle["name"]
        return name

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(total=handle["mem"], free=handle["mem"], used=0)


def test_nvml_probe_reads_devices_and_versions() -> None:
    nvml = FakeNvml(
        [
            {"uuid": "GPU-aaa", "name": "NVIDIA GeForce RTX 4090", "mem": 25757220864},
            {"uuid": b"GPU-bbb", "name": b"NVIDIA H100 80GB HBM3", "mem": 85520809984},
        ]
    )
    result = NvmlProbe(nvml).probe()
    assert result.driver_version == "550.54.14"
    assert result.cuda_version == "12.4"
    assert result.gpus == [
        GpuInfo(index=0, uuid="GPU-aaa", name="NVIDIA GeForce RTX 4090", vram_mb=24564),
        GpuInfo(index=1, uuid="GPU-bbb", name="NVIDIA H100 80GB HBM3", vram_mb=81559),
    ]
    assert nvml.shutdowns == 1 and not nvml.initialised


def test_nvml_probe_without_library_finds_nothing() -> None:
    nvml = FakeNvml([], library=False)
    assert NvmlProbe(nvml).probe() == GpuProbeResult()
    assert nvml.shutdowns == 0


def test_nvml_probe_survives_a_failing_device_and_shuts_down() -> None:
    nvml = FakeNvml([{"broken": True, "name": "x", "mem": 1}])
    assert NvmlProbe(nvml).probe().gpus == []
    assert nvml.shutdowns == 1


def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_real_nvml_probe_never_raises() -> None:
    result = NvmlProbe().probe()
    if _nvml_library_present():
        assert all(g.uuid and g.name and not g.logical for g in result.gpus)
    else:
        assert result == GpuProbeResult()


class StaticProbe:
    def __init__(self, result: GpuProbeResult) -> None:
        self.result = result

    def probe(self) -> GpuProbeResult:
        return self.result


def test_detect_gpus_prefers_nvml_and_falls_back_to_declared() -> None:
    declared = parse_gpu_declaration("RTX 4090:2", seed="s")
    real = [GpuInfo(index=0, uuid="GPU-real", name="NVIDIA A10", vram_mb=23028)]
    assert detect_gpus(StaticProbe(GpuProbeResult(gpus=real)), declared) == real
    assert detect_gpus(StaticProbe(GpuProbeResult()), declared) == declared
    assert detect_gpus(StaticProbe(GpuProbeResult()), []) == []


async def test_collect_facts_reports_the_host(tmp_path: Path) -> None:
    declared = parse_gpu_declaration("RTX 4090:1", seed="s")
    facts = await collect_facts(
        probe=StaticProbe(GpuProbeResult()),
        declared=declared,
        disk_path=tmp_path,
        port_range=PortRange(start=40000, end=40999),
        address="203.0.113.7",
    )
    assert facts.gpus == declared
    assert facts.driver_version is None and facts.cuda_version is None
    assert facts.cpu_cores >= 1 and facts.ram_mb > 0
    assert 0 < facts.disk_free_mb <= facts.disk_total_mb
    assert facts.hostname and facts.os
    assert facts.address == "203.0.113.7"
    assert facts.model_dump(mode="json")["port_range"] == {"start": 40000, "end": 40999}


async def test_collect_facts_finds_an_address_itself(tmp_path: Path) -> None:
    facts = await collect_facts(
        probe=StaticProbe(GpuProbeResult()),
        declared=[],
        disk_path=tmp_path,
        port_range=PortRange(start=40000, end=40001),
    )
    assert facts.address.count(".") == 3


def test_workloads_listen_where_the_control_plane_dials() -> None:
    assert listen_host("127.0.0.1") == "127.0.0.1"  # gpuyard up: one machine, loopback only
    assert listen_host("::1") == "127.0.0.1"
    assert listen_host("localhost") == "127.0.0.1"
    assert listen_host("10.0.0.7") == "0.0.0.0"  # other machines dial this host
    assert listen_host("gpu-7.example.net") == "0.0.0.0"
