"""The GPU table: lookups by CUDA device name, real figures, and what each architecture allows."""

from __future__ import annotations

import pytest

from models.gpus import GIB, UnknownGpu, arch_caps, find_gpu, gpu_table

CONSUMER_CARDS = [
    "GTX 1060 6GB",
    "GTX 1070",
    "GTX 1080",
    "GTX 1080 Ti",
    "RTX 2060",
    "RTX 2070",
    "RTX 2080",
    "RTX 2080 Ti",
    "RTX 3060",
    "RTX 3060 Ti",
    "RTX 3070",
    "RTX 3080",
    "RTX 3080 Ti",
    "RTX 3090",
    "RTX 3090 Ti",
    "RTX 4060",
    "RTX 4060 Ti 16GB",
    "RTX 4070",
    "RTX 4070 Ti",
    "RTX 4070 Ti Super",
    "RTX 4080",
    "RTX 4080 Super",
    "RTX 4090",
    "RTX 5060 Ti 16GB",
    "RTX 5070",
    "RTX 5070 Ti",
    "RTX 5080",
    "RTX 5090",
]
DATACENTER_CARDS = ["A100 40GB", "A100 80GB", "L40S", "H100 SXM", "H100 PCIe", "H200"]


@pytest.mark.parametrize("name", CONSUMER_CARDS + DATACENTER_CARDS)
def test_card_is_in_the_table(name: str) -> None:
    assert name in gpu_table()
    assert find_gpu(name).name == name


@pytest.mark.parametrize(
    ("cuda_name", "row"),
    [
        ("NVIDIA GeForce RTX 3060", "RTX 3060"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce GTX 1080 Ti", "GTX 1080 Ti"),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", "RTX 4070 Ti Super"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("Tesla T4", "T4"),
    ],
)
def test_find_by_cuda_device_name(cuda_name: str, row: str) -> None:
    assert find_gpu(cuda_name).name == row


def test_lookup_ignores_case_vendor_prefix_and_spacing() -> None:
    assert find_gpu("rtx 4090").name == "RTX 4090"
    assert find_gpu("GeForce RTX 4090").name == "RTX 4090"
    assert find_gpu("NVIDIA GeForce  RTX  4090").name == "RTX 4090"


def test_rtx_3060_figures() -> None:
    card = find_gpu("NVIDIA GeForce RTX 3060")
    assert card.vram_gb == 12
    assert card.capability == (8, 6)
    assert card.arch == "Ampere"
    assert card.vram_bytes == 12 * GIB
    assert card.bandwidth_gbps == 360


def test_gtx_1080_runs_fp16_without_sage2() -> None:
    caps = find_gpu("GTX 1080").caps
    assert caps.compute_dtype == "fp16"
    assert not caps.bf16
    assert not caps.sage
    assert not caps.sage2
    assert not caps.fp8


def test_rtx_3090_runs_bf16_and_sage2_but_not_fp8() -> None:
    caps = find_gpu("RTX 3090").caps
    assert caps.compute_dtype == "bf16"
    assert caps.sage2
    assert caps.flash
    assert not caps.fp8
    assert not caps.nvfp4


def test_rtx_4090_has_fp8_but_not_nvfp4() -> None:
    caps = find_gpu("RTX 4090").caps
    assert caps.fp8
    assert not caps.nvfp4


def test_rtx_5090_has_nvfp4() -> None:
    card = find_gpu("NVIDIA GeForce RTX 5090")
    assert card.caps.nvfp4
    assert card.caps.fp8
    assert card.vram_gb == 32


def test_h100_has_fp8_but_not_nvfp4() -> None:
    caps = find_gpu("H100 SXM").caps
    assert caps.fp8
    assert not caps.nvfp4


def test_turing_has_sage1_only() -> None:
    caps = arch_caps((7, 5))
    assert caps.sage and not caps.sage2 and caps.compute_dtype == "fp16"


def test_architecture_matches_capability() -> None:
    majors = {"Pascal": {6}, "Volta": {7}, "Turing": {7}, "Ampere": {8}, "Ada": {8}, "Hopper": {9}}
    majors["Blackwell"] = {10, 12}
    for card in gpu_table().values():
        assert card.capability[0] in majors[card.arch], card.name


def test_figures_are_plausible_and_sourced() -> None:
    for card in gpu_table().values():
        assert 4 <= card.vram_gb <= 200, card.name
        assert 1 <= card.half_tflops <= 2500, card.name
        assert 100 <= card.bandwidth_gbps <= 10000, card.name
        assert card.source, card.name


def test_newer_flagships_are_faster() -> None:
    tflops = [
        find_gpu(n).half_tflops for n in ("GTX 1080 Ti", "RTX 2080 Ti", "RTX 3090", "RTX 4090", "RTX 5090")
    ]
    assert tflops == sorted(tflops)
    assert find_gpu("H100 SXM").half_tflops > find_gpu("A100 80GB").half_tflops
    assert find_gpu("H200").bandwidth_gbps > find_gpu("H100 SXM").bandwidth_gbps


def test_names_and_aliases_are_unique() -> None:
    seen: dict[str, str] = {}
    for card in gpu_table().values():
        for spelling in (card.name, *card.aliases):
            key = spelling.lower()
            assert seen.setdefault(key, card.name) == card.name, spelling


def test_unknown_gpu_raises_and_lists_known_cards() -> None:
    with pytest.raises(UnknownGpu) as caught:
        find_gpu("Voodoo 5 6000")
    assert "RTX 4090" in str(caught.value)
