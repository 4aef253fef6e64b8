"""WanGP's override_profile and override_attention read at intake: what each value forces, what is
refused by name, and what an output records.

The values are WanGP's (deepbeepmeep/Wan2GP 8681e9f7): wgp.py's memory-profile menu (1, 2, 3, 3.5,
4, 4.5, 5 and -1 for the default) and its attention menu plus shared/attention.py's extra kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.attention import AttentionMode
from models.overrides import Overrides
from models.profiles import Profile
from models.settings import SettingsError, parse_settings, resolve

WANGP_PROFILES = {1: Profile.P1, 2: Profile.P2, 3: Profile.P3, 3.5: Profile.P3_PLUS, 4: Profile.P4}
WANGP_PROFILES |= {4.5: Profile.P4_PLUS, 5: Profile.P5}
WANGP_KERNELS = {"auto", "sdpa", "flash", "xformers", "sage", "sage2", "radial", "sage3", "sol"}
FARM_KERNELS = {"auto", "sdpa", "flash", "sage", "sage2", "xformers"}


def resolved(tmp_path: Path, **keys: Any) -> Overrides | None:
    return resolve(parse_settings({"model_type": "t2v", "prompt": "a fox"} | keys), tmp_path).overrides


def refusal(tmp_path: Path, **keys: Any) -> str:
    # The key's own problem ('sol' brings its attention_sparsity's along, which WanGP reads with it).
    with pytest.raises(SettingsError) as caught:
        resolved(tmp_path, **keys)
    [key] = keys
    [problem] = [p for p in caught.value.problems if p.startswith(f"{key}: ")]
    return problem


@pytest.mark.parametrize(("value", "profile"), WANGP_PROFILES.items())
def test_each_wangp_profile_forces_the_farm_profile_of_that_number(
    value: float, profile: Profile, tmp_path: Path
) -> None:
    assert resolved(tmp_path, override_profile=value) == Overrides(profile=profile)


@pytest.mark.parametrize("value", [-1, "-1", -1.0])
def test_minus_one_leaves_the_profile_to_the_farm(value: object, tmp_path: Path) -> None:
    assert resolved(tmp_path, override_profile=value) is None


@pytest.mark.parametrize("value", [0, 6, 2.5, "fast", -2])
def test_a_profile_wangp_does_not_have_is_refused_naming_the_key_and_value(
    value: object, tmp_path: Path
) -> None:
    problem = refusal(tmp_path, override_profile=value)
    assert problem.startswith(f"override_profile: {value!r} is not a memory profile of WanGP's")
    assert "3.5 (3+)" in problem


def test_a_boolean_profile_is_refused_as_not_a_number(tmp_path: Path) -> None:
    assert refusal(tmp_path, override_profile=True) == "override_profile: must be a number, not bool"


@pytest.mark.parametrize("name", sorted(FARM_KERNELS))
def test_each_wangp_kernel_with_a_farm_kernel_forces_it(name: str, tmp_path: Path) -> None:
    assert resolved(tmp_path, override_attention=name) == Overrides(attention=AttentionMode(name))


@pytest.mark.parametrize("name", sorted(WANGP_KERNELS - FARM_KERNELS))
def test_a_wangp_kernel_without_a_farm_kernel_is_refused_naming_it(name: str, tmp_path: Path) -> None:
    problem = refusal(tmp_path, override_attention=name)
    assert problem.startswith(f"override_attention: {name!r} is not supported by WanFarm yet:")
    assert "accepted: '' (the farm's choice per agent), auto, sdpa, sage, sage2, flash, xformers" in problem


def test_an_unknown_kernel_is_refused_naming_it(tmp_path: Path) -> None:
    problem = refusal(tmp_path, override_attention="fastest")
    assert problem.startswith("override_attention: 'fastest' is not an attention mode of WanGP's")


def test_no_override_keys_force_nothing(tmp_path: Path) -> None:
    assert resolved(tmp_path) is None
    assert resolved(tmp_path, override_profile=-1, override_attention="") is None


def test_both_overrides_are_recorded_as_given_and_absent_when_not_forced(tmp_path: Path) -> None:
    settings = {"model_type": "t2v", "prompt": "a fox", "override_profile": 3.5, "override_attention": "sage"}
    job = resolve(parse_settings(settings), tmp_path)
    assert job.overrides == Overrides(Profile.P3_PLUS, AttentionMode.SAGE)
    metadata = job.generations[0].metadata
    assert (metadata["override_profile"], metadata["override_attention"]) == (3.5, "sage")
    plain = resolve(
        parse_settings({"model_type": "t2v", "prompt": "a fox", "override_profile": -1}), tmp_path
    )
    assert "override_profile" not in plain.generations[0].metadata
    assert "override_attention" not in plain.generations[0].metadata
