"""The memory estimator: what a user reads as "will this model run on my card"."""

from __future__ import annotations

from models.catalogue import get_model
from models.memory import GIB, JobSize, estimate, feasible_profiles, latent_tokens
from models.profiles import Profile

WAN_480P = JobSize(832, 480, 81)
CARD_12GB = 12 * GIB


def test_wan_14b_does_not_fit_profile_1_on_a_12gb_card() -> None:
    need = estimate(get_model("t2v"), Profile.P1, WAN_480P)
    assert need.vram_bytes > CARD_12GB
    assert need.shortfall(CARD_12GB, 128 * GIB) is not None
    assert "VRAM" in (need.shortfall(CARD_12GB, 128 * GIB) or "")


def test_wan_14b_fits_profiles_4_and_5_on_a_12gb_card_with_enough_ram() -> None:
    preset = get_model("t2v")
    for profile in (Profile.P4, Profile.P4_PLUS, Profile.P5):
        need = estimate(preset, profile, WAN_480P)
        assert need.fits(CARD_12GB, 64 * GIB), (profile, need)
    assert Profile.P1 not in feasible_profiles(preset, WAN_480P, CARD_12GB, 64 * GIB)
    assert Profile.P5 in feasible_profiles(preset, WAN_480P, CARD_12GB, 64 * GIB)


def test_profile_5_needs_less_ram_and_vram_than_profile_1() -> None:
    preset = get_model("t2v")
    low, high = estimate(preset, Profile.P5, WAN_480P), estimate(preset, Profile.P1, WAN_480P)
    assert low.vram_bytes < high.vram_bytes
    assert low.ram_bytes < high.ram_bytes


def test_profile_1_holds_the_whole_bf16_transformer_in_vram() -> None:
    preset = get_model("t2v")
    # The Diffusers repo stores fp32; loaded, it is bf16: 2 bytes a parameter.
    transformer = max(c.params * 2 for c in preset.components if c.role == "transformer")
    need = estimate(preset, Profile.P1, WAN_480P).vram_bytes
    assert transformer < need < transformer + 8 * GIB


def test_sync_transfers_of_4_plus_need_less_vram_than_4() -> None:
    preset = get_model("t2v")
    # At a small size the weights dominate, so the halved transfer buffer shows.
    small = JobSize(480, 272, 17)
    assert (
        estimate(preset, Profile.P4_PLUS, small).vram_bytes < estimate(preset, Profile.P4, small).vram_bytes
    )


def test_working_memory_grows_with_frames_and_size() -> None:
    preset = get_model("t2v")
    short, long = JobSize(832, 480, 17), JobSize(832, 480, 81)
    big = JobSize(1280, 720, 81)
    assert latent_tokens(preset, short) < latent_tokens(preset, long) < latent_tokens(preset, big)
    # 81 frames at 832x480: 21 latent frames x 30 x 52 patches.
    assert latent_tokens(preset, long) == 21 * 30 * 52
    p5 = [estimate(preset, Profile.P5, s).vram_bytes for s in (short, long, big)]
    assert p5 == sorted(p5) and p5[0] < p5[2]


def test_a_small_model_fits_a_small_card_at_profile_1() -> None:
    need = estimate(get_model("t2v_1.3B"), Profile.P1, WAN_480P)
    assert need.fits(12 * GIB, 32 * GIB), need
