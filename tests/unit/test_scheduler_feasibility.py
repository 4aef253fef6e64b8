"""Which agents can ever run a job, which profile they would use, and what a user is told if none can."""

from __future__ import annotations

from models.catalogue import ModelPreset, get_model
from models.memory import JobSize, estimate
from models.profiles import SPEED_ORDER, Profile
from models.work import WorkSize
from scheduler.feasibility import choose_profile, pool_refusal, why_not
from tests.declared_agents import declared_agent

WAN_14B = get_model("t2v").id  # wan2.1-t2v-14b
WAN_1_3B = "wan2.1-t2v-1.3b"


def work(model_id: str = WAN_14B, width: int = 1280, height: int = 720, frames: int = 81) -> WorkSize:
    return WorkSize(model_id, width, height, frames, steps=30)


def with_dtype(preset: ModelPreset, dtype: str) -> ModelPreset:
    """The preset with its transformer stored in `dtype` (no catalogue model ships fp8/nvfp4 yet)."""
    components = [
        c.model_copy(update={"dtype": dtype}) if c.name == "transformer" else c for c in preset.components
    ]
    return preset.model_copy(update={"components": components})


def test_wan_14b_at_720p_cannot_run_on_an_8gb_card() -> None:
    assert choose_profile(get_model(WAN_14B), work(), declared_agent("RTX 3070")) is None


def test_wan_14b_at_720p_runs_on_a_24gb_card() -> None:
    assert choose_profile(get_model(WAN_14B), work(), declared_agent("RTX 4090")) is not None


def test_wan_1_3b_on_a_4090_with_128gib_ram_gets_profile_1() -> None:
    agent = declared_agent("RTX 4090", ram_gib=128)
    assert choose_profile(get_model(WAN_1_3B), work(WAN_1_3B, 832, 480), agent) is Profile.P1


def test_wan_14b_on_a_12gb_card_with_32gib_ram_gets_a_low_vram_profile() -> None:
    profile = choose_profile(get_model(WAN_14B), work(), declared_agent("RTX 3060", ram_gib=32))
    assert profile in {Profile.P4, Profile.P4_PLUS, Profile.P5}


def test_the_chosen_profile_fits_and_every_faster_one_does_not() -> None:
    preset, size = get_model(WAN_14B), JobSize(1280, 720, 81)
    for gpu, ram_gib in [("RTX 3060", 32), ("RTX 3060", 64), ("RTX 4090", 64), ("H100 SXM", 256)]:
        agent = declared_agent(gpu, ram_gib=ram_gib)
        chosen = choose_profile(preset, work(), agent)
        assert chosen is not None, gpu
        faster = SPEED_ORDER[: SPEED_ORDER.index(chosen)]
        assert estimate(preset, chosen, size).fits(agent.vram_total, agent.ram_total)
        assert not any(estimate(preset, p, size).fits(agent.vram_total, agent.ram_total) for p in faster)
    assert choose_profile(preset, work(), declared_agent("H100 SXM", ram_gib=256)) is Profile.P1


def test_a_bigger_card_never_gets_a_slower_profile() -> None:
    preset = get_model(WAN_14B)
    small = choose_profile(preset, work(), declared_agent("RTX 3060", ram_gib=32))
    large = choose_profile(preset, work(), declared_agent("RTX 4090", ram_gib=32))
    assert small is not None and large is not None
    assert SPEED_ORDER.index(large) <= SPEED_ORDER.index(small)


def test_too_little_ram_rules_an_agent_out_even_with_a_big_card() -> None:
    agent = declared_agent("H100 SXM", ram_gib=8)
    assert choose_profile(get_model(WAN_14B), work(), agent) is None
    assert "RAM" in why_not(get_model(WAN_14B), work(), agent)


def test_bf16_weights_run_on_pascal_as_fp16() -> None:
    flux = get_model("flux.1-dev")
    assert any(c.dtype == "bf16" for c in flux.components)
    assert choose_profile(flux, work(flux.id, 1024, 1024, 1), declared_agent("GTX 1080")) is not None


def test_fp8_weights_need_ada_or_newer() -> None:
    fp8 = with_dtype(get_model(WAN_1_3B), "fp8")
    small = work(WAN_1_3B, 832, 480)
    assert choose_profile(fp8, small, declared_agent("RTX 3090")) is None
    assert choose_profile(fp8, small, declared_agent("RTX 4090")) is not None
    reason = why_not(fp8, small, declared_agent("RTX 3090"))
    assert "fp8" in reason and "sm89" in reason and "sm86" in reason


def test_nvfp4_weights_need_blackwell() -> None:
    nvfp4 = with_dtype(get_model(WAN_1_3B), "nvfp4")
    small = work(WAN_1_3B, 832, 480)
    assert choose_profile(nvfp4, small, declared_agent("H100 SXM", ram_gib=128)) is None
    assert choose_profile(nvfp4, small, declared_agent("RTX 5090")) is not None


def test_why_not_names_the_vram_needed_and_the_card() -> None:
    reason = why_not(get_model(WAN_14B), work(), declared_agent("RTX 3070"))
    assert reason == "needs 9.3 GiB VRAM at profile 5, RTX 3070 has 8.0 GiB"


def test_pool_refusal_is_none_when_one_agent_can_run_it() -> None:
    agents = [declared_agent("RTX 3070"), declared_agent("RTX 3090")]
    assert pool_refusal(get_model(WAN_14B), work(), agents) is None


def test_pool_refusal_names_the_vram_needed_and_the_largest_gpu() -> None:
    agents = [declared_agent("GTX 1060 6GB"), declared_agent("RTX 3070")]
    message = pool_refusal(get_model(WAN_14B), work(), agents)
    assert message == (
        "wan2.1-t2v-14b at 1280x720x81 needs >= 9.3 GiB VRAM at profile 5; "
        "the largest GPU in the pool (RTX 3070) has 8.0 GiB"
    )


def test_pool_refusal_names_ram_when_ram_is_the_limit() -> None:
    agents = [declared_agent("RTX 4090", ram_gib=16), declared_agent("RTX 3060", ram_gib=16)]
    message = pool_refusal(get_model(WAN_14B), work(), agents)
    assert message is not None
    assert "RAM" in message and "16.0 GiB" in message and "VRAM" not in message


def test_pool_refusal_says_the_pool_is_empty() -> None:
    message = pool_refusal(get_model(WAN_14B), work(), [])
    assert message is not None and "no agents" in message


def test_pool_refusal_names_the_architecture_when_no_card_supports_the_weights() -> None:
    fp8 = with_dtype(get_model(WAN_1_3B), "fp8")
    message = pool_refusal(
        fp8, work(WAN_1_3B, 832, 480), [declared_agent("RTX 3090"), declared_agent("A100 80GB")]
    )
    assert message is not None and "fp8" in message and "sm89" in message


def test_pool_refusal_for_an_image_job_leaves_out_the_frame_count() -> None:
    flux = get_model("flux.1-dev")
    message = pool_refusal(flux, work(flux.id, 1024, 1024, 1), [declared_agent("GTX 1060 6GB", ram_gib=4)])
    assert message is not None and message.startswith("flux.1-dev at 1024x1024 needs")


def test_tiny_models_run_on_the_smallest_card() -> None:
    tiny = get_model("wan-tiny")
    agent = declared_agent("GTX 1060 6GB", ram_gib=8)
    assert choose_profile(tiny, work(tiny.id, 64, 64, 9), agent) is Profile.P1
