import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.gpu_names import (
    KNOWN_GPUS,
    GpuModel,
    compute_cap,
    display_name,
    gpu_key,
    known_vram_mb,
    lookup,
    slug,
    vast_name,
)

RTX_4090_SPELLINGS = [
    "RTX 4090",
    "rtx-4090",
    "RTX_4090",
    "rtx4090",
    "Rtx 4090",
    "  RTX   4090  ",
    "RTX\t4090",
    "rtx_4090",
    "NVIDIA GeForce RTX 4090",
    "NVIDIA-GeForce-RTX-4090",
]


@pytest.mark.parametrize("name", RTX_4090_SPELLINGS)
def test_spellings_of_one_type_share_key_and_names(name: str) -> None:
    assert gpu_key(name) == "rtx4090"
    assert display_name(name) == "RTX 4090"
    assert vast_name(name) == "RTX_4090"
    assert slug(name) == "rtx-4090"


@pytest.mark.parametrize(
    ("reported", "canonical"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("H100_SXM", "H100 SXM"),
        ("H100 PCIE", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
        ("Tesla T4", "T4"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
        ("RTX_6000Ada", "RTX 6000 Ada"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA L40S", "L40S"),
    ],
)
def test_driver_and_vast_spellings_map_to_the_canonical_name(reported: str, canonical: str) -> None:
    assert display_name(reported) == canonical
    assert gpu_key(reported) == gpu_key(canonical)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("A10", "A100"),
        ("A10", "A10G"),
        ("L4", "L40S"),
        ("H100 SXM", "H100 PCIe"),
        ("H100", "H100 SXM"),
        ("RTX 4090", "RTX 3090"),
        ("A100 SXM4 40GB", "A100 SXM4 80GB"),
    ],
)
def test_different_types_have_different_keys(a: str, b: str) -> None:
    assert gpu_key(a) != gpu_key(b)


@pytest.mark.parametrize(
    ("name", "vram_mb"),
    [
        ("RTX 3090", 24576),
        ("RTX 4090", 24576),
        ("H100 SXM", 81559),
        ("H100 PCIe", 81559),
        ("H200", 143771),
        ("A100 SXM4 80GB", 81920),
        ("A100 PCIe 40GB", 40960),
        ("L4", 23034),
        ("L40S", 46068),
        ("T4", 15360),
        ("RTX A6000", 49140),
        ("rtx-5090", 32607),
    ],
)
def test_known_vram(name: str, vram_mb: int) -> None:
    assert known_vram_mb(name) == vram_mb


@pytest.mark.parametrize(
    ("name", "cap"),
    [
        ("RTX 4090", 890),
        ("L4", 890),
        ("A100", 800),
        ("A100_SXM4", 800),
        ("H100", 900),
        ("H200", 900),
        ("T4", 750),
        ("RTX 3090", 860),
        ("A10", 860),
        ("RTX 5090", 1200),
    ],
)
def test_compute_capability(name: str, cap: int) -> None:
    assert compute_cap(name) == cap


@pytest.mark.parametrize("family", ["A100", "A100 SXM4", "A100_PCIE", "H100", "B200"])
def test_a_family_spanning_memory_sizes_has_no_vram(family: str) -> None:
    assert lookup(family) is not None
    assert known_vram_mb(family) is None


@pytest.mark.parametrize("name", ["RTX 9999", "Quadro RTX 8000", "MI300X", "", "   "])
def test_unknown_names_give_none(name: str) -> None:
    assert known_vram_mb(name) is None
    assert compute_cap(name) is None


def test_unknown_name_display_keeps_words() -> None:
    assert display_name("rtx-9999") == "RTX 9999"
    assert display_name("Quadro_RTX_8000") == "Quadro RTX 8000"
    assert vast_name("Quadro RTX 8000") == "Quadro_RTX_8000"
    assert slug("Quadro RTX 8000") == "quadro-rtx-8000"


@pytest.mark.parametrize("name", ["", "   ", "_-_", "NVIDIA", "x" * 200])
def test_display_name_rejects_blank_and_overlong_names(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        display_name(name)
    assert caught.value.param == "gpu_name"


def test_gpu_key_is_total() -> None:
    assert gpu_key("") == ""
    assert gpu_key("NVIDIA") == ""


def test_table_names_are_their_own_display_names() -> None:
    for model in KNOWN_GPUS:
        assert display_name(model.display) == model.display
        for alias in model.aliases:
            assert display_name(alias) == model.display
        assert model.vram_mb is None or model.vram_mb > 1024
        assert model.compute_cap is None or 300 <= model.compute_cap <= 1300


_separator = st.sampled_from([" ", "_", "-", "  ", " _ "])


@given(st.sampled_from(KNOWN_GPUS), _separator, st.booleans())
def test_any_separator_and_case_spell_the_same_known_type(
    model: GpuModel, sep: str, upper: bool
) -> None:
    spelled = sep.join(model.display.split(" "))
    spelled = spelled.upper() if upper else spelled.lower()
    assert display_name(spelled) == model.display
    assert known_vram_mb(spelled) == model.vram_mb


_name_text = st.text(
    alphabet=st.sampled_from("abcdefghXYZ0123456789 _-"),
    min_size=1,
    max_size=30,
)


@given(_name_text)
def test_derived_spellings_keep_the_key(name: str) -> None:
    assume(gpu_key(name) != "")
    shown = display_name(name)
    assert display_name(shown) == shown
    for spelling in (shown, vast_name(name), slug(name)):
        assert gpu_key(spelling) == gpu_key(name)
