"""A rough cost model of one job on one agent, in seconds: for ranking agents and an order-of-magnitude
ETA, with round guesses for constants.

    seconds  = load + render x PROFILE_SLOWDOWN[profile]
    load     = 0 when hot, else weight bytes / (2 GB/s if the node caches it, else 100 MB/s)
    render   = steps x layers x (24 h^2 T + 4 T^2 h) / (half_tflops x 1e12 x 40%)

T = latent tokens x batch, h = the transformer's width; steps are those expected to run
(models.step_cache.expected_step_fraction for a job that skips steps). Where the FLOPs come from and
what is left out: docs/scheduler.md, "Cost model".
"""

from __future__ import annotations

from models.catalogue import ModelPreset
from models.loras import LoraNeed
from models.memory import latent_tokens
from models.profiles import Profile
from models.step_cache import expected_step_fraction
from models.work import WorkSize
from scheduler.snapshot import AgentView

CACHED_READ_BYTES_PER_S = 2e9  # NVMe read into pinned RAM
DOWNLOAD_BYTES_PER_S = 100e6  # a typical Hugging Face download
UTILISATION = 0.4  # achieved fraction of the card's dense half-precision peak
MIN_TFLOPS = 1.0  # floor for an agent of unknown throughput, so an ETA stays finite
WEIGHT_FLOPS_PER_TOKEN = 24  # x h^2, per layer
ATTENTION_FLOPS_PER_PAIR = 4  # x h, per pair of tokens, per layer
# Offloading profiles trade speed for memory; relative to profile 1, as WanGP users report them.
PROFILE_SLOWDOWN: dict[Profile, float] = {
    Profile.P1: 1.0,
    Profile.P3: 1.1,
    Profile.P3_PLUS: 1.15,
    Profile.P2: 1.3,
    Profile.P4: 1.4,
    Profile.P4_PLUS: 1.6,
    Profile.P5: 2.0,
}


def job_seconds(preset: ModelPreset, work: WorkSize, agent: AgentView, profile: Profile) -> float:
    """Rough wall time of the work on the agent under the profile, weights loading included."""
    return load_seconds(preset, agent) + render_seconds(preset, work, agent) * PROFILE_SLOWDOWN[profile]


def load_seconds(preset: ModelPreset, agent: AgentView) -> float:
    """Time to have the model's weights in memory: none when hot, a disk read when cached."""
    if agent.hot_model == preset.id:
        return 0.0
    rate = CACHED_READ_BYTES_PER_S if preset.id in agent.cached_models else DOWNLOAD_BYTES_PER_S
    return preset.weight_bytes / rate


def lora_seconds(needs: tuple[LoraNeed, ...], agent: AgentView) -> float:
    """Time to fetch the job's LoRAs the agent does not hold, over its node's link."""
    missing = sum(need.bytes for need in needs if not need.held_in(agent.loras))
    return missing / agent.net_bytes_per_s


def render_seconds(preset: ModelPreset, work: WorkSize, agent: AgentView) -> float:
    """Denoising time at profile 1 speed."""
    flops_per_s = max(agent.half_tflops, MIN_TFLOPS) * 1e12 * UTILISATION
    return render_flops(preset, work) / flops_per_s


def render_flops(preset: ModelPreset, work: WorkSize) -> float:
    """FLOPs of the transformer over the steps expected to run (all of them, unless the job skips
    steps: WanGP's skip_steps_cache_type): weight matmuls plus self-attention."""
    tokens = latent_tokens(preset, work.size) * work.batch
    hidden = preset.latent.hidden
    per_layer = WEIGHT_FLOPS_PER_TOKEN * hidden**2 * tokens + ATTENTION_FLOPS_PER_PAIR * tokens**2 * hidden
    steps = work.steps * expected_step_fraction(work.step_skip)
    return float(steps * preset.latent.layers * per_layer)
