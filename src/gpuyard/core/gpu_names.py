"""GPU names: one type, however it is spelt.

Clients and hosts write the same GPU in different ways: Vast writes ``RTX_4090`` in queries and
``RTX 4090`` in offers, VectorLay writes ``rtx-4090``, NVML reports ``NVIDIA GeForce RTX 4090``, a
person types ``rtx4090``. :func:`gpu_key` maps all of them to one comparison key (``"rtx4090"``):
lower case, the vendor words ``NVIDIA``/``GeForce``/``Tesla`` dropped, every character that is not a
letter or digit removed. Two names are the same type exactly when their keys are equal.

The table of known GPUs gives the canonical display name, the VRAM and the compute capability of
the common SKUs. VRAM is ``memory.total`` in MiB as the driver reports it (what ``nvidia-smi``
shows) where that is known, and the RTX 4090 and 3090 are listed at 24576. A family name that
covers SKUs with different memory (``A100 SXM4`` is 40 or 80 GB, ``H100`` is SXM, PCIe or NVL)
has no VRAM. Unknown or ambiguous names give ``None``: nothing is guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuyard.core.errors import InvalidRequest

MAX_NAME_LENGTH = 128

_SEPARATORS = re.compile(r"[\s_\-/]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_VENDOR_WORDS = frozenset({"nvidia", "geforce", "tesla"})


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One known GPU type. ``compute_cap`` is the CUDA compute capability times 100 (890 = 8.9)."""

    display: str
    vram_mb: int | None
    compute_cap: int | None
    aliases: tuple[str, ...] = ()


_AMPERE, _A100, _ADA, _HOPPER, _TURING = 860, 800, 890, 900, 750

KNOWN_GPUS: tuple[GpuModel, ...] = (
    GpuModel("RTX 3090", 24576, _AMPERE),
    GpuModel("RTX 4090", 24576, _ADA),
    GpuModel("RTX 5090", 32607, 1200),
    GpuModel("RTX A6000", 49140, _AMPERE, ("A6000",)),
    GpuModel("RTX 6000 Ada", 49140, _ADA, ("RTX 6000 Ada Generation",)),
    GpuModel("A10", 23028, _AMPERE),
    GpuModel("A10G", 23028, _AMPERE),
    GpuModel("A40", 46068, _AMPERE),
    GpuModel("L4", 23034, _ADA),
    GpuModel("L40S", 46068, _ADA),
    GpuModel("T4", 15360, _TURING),
    GpuModel("A100", None, _A100),
    GpuModel("A100 SXM4", None, _A100),
    GpuModel("A100 PCIe", None, _A100),
    GpuModel("A100 SXM4 40GB", 40960, _A100, ("A100 40GB SXM4",)),
    GpuModel("A100 SXM4 80GB", 81920, _A100, ("A100 80GB SXM4",)),
    GpuModel("A100 PCIe 40GB", 40960, _A100, ("A100 40GB PCIe",)),
    GpuModel("A100 PCIe 80GB", 81920, _A100, ("A100 80GB PCIe",)),
    GpuModel("H100", None, _HOPPER),
    GpuModel("H100 SXM", 81559, _HOPPER, ("H100 80GB HBM3", "H100 SXM5", "H100 SXM5 80GB")),
    GpuModel("H100 PCIe", 81559, _HOPPER, ("H100 PCIe 80GB",)),
    GpuModel("H100 NVL", 95830, _HOPPER),
    GpuModel("H200", 143771, _HOPPER, ("H200 SXM",)),
    GpuModel("B200", None, 1000),
)


def _words(name: str) -> list[str]:
    words = [w for w in _SEPARATORS.split(name.strip()) if w]
    while words and words[0].lower() in _VENDOR_WORDS:
        words.pop(0)
    return words


def _raw_key(name: str) -> str:
    return _NOT_ALNUM.sub("", "".join(_words(name)).lower())


def _index(models: tuple[GpuModel, ...]) -> dict[str, GpuModel]:
    by_key: dict[str, GpuModel] = {}
    for model in models:
        for spelling in (model.display, *model.aliases):
            key = _raw_key(spelling)
            if key in by_key:
                raise ValueError(f"GPU spelling {spelling!r} is listed twice")
            by_key[key] = model
    return by_key


_BY_KEY = _index(KNOWN_GPUS)


def gpu_key(name: str) -> str:
    """The comparison key of a GPU name: equal keys mean the same GPU type.

    Total: never raises. A known alias maps to the key of its canonical name, so
    ``gpu_key("NVIDIA H100 80GB HBM3") == gpu_key("H100_SXM")``. An empty name gives ``""``.
    """
    key = _raw_key(name)
    model = _BY_KEY.get(key)
    return _raw_key(model.display) if model is not None else key


def lookup(name: str) -> GpuModel | None:
    """The known GPU type ``name`` spells, or ``None``."""
    return _BY_KEY.get(_raw_key(name))


def known_vram_mb(name: str) -> int | None:
    """VRAM in MiB of a known, unambiguous GPU type; ``None`` otherwise."""
    model = lookup(name)
    return model.vram_mb if model is not None else None


def compute_cap(name: str) -> int | None:
    """CUDA compute capability x 100 (Vast's ``compute_cap``), ``None`` when not known."""
    model = lookup(name)
    return model.compute_cap if model is not None else None


def display_name(name: str) -> str:
    """The canonical display spelling: ``rtx_4090`` → ``"RTX 4090"``.

    A known type gives its table name. An unknown one gives its words joined by single spaces,
    upper-cased when it was written all in lower case (``rtx-9999`` → ``"RTX 9999"``) and kept as
    written otherwise. A blank or overlong name is an :class:`InvalidRequest`.
    """
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"GPU name is longer than {MAX_NAME_LENGTH} characters", param="gpu_name"
        )
    words = _words(name)
    if not _raw_key(name):
        raise InvalidRequest(f"not a GPU name: {name!r}", param="gpu_name")
    model = _BY_KEY.get(_raw_key(name))
    if model is not None:
        return model.display
    text = " ".join(words)
    return text.upper() if text == text.lower() else text


def vast_name(name: str) -> str:
    """The spelling Vast uses in queries: ``"RTX_4090"``."""
    return display_name(name).replace(" ", "_")


def slug(name: str) -> str:
    """The spelling VectorLay uses: ``"rtx-4090"``."""
    return display_name(name).lower().replace(" ", "-")
