"""Whether an agent can ever run a job: the architecture can run the weights and some profile fits.

An agent holds one model at a time, so a job is measured against the card's and the node's whole
memory (`vram_total`, `ram_total`), not what happens to be free while another model is loaded. A
job that forces a profile or an attention kernel (models.overrides) runs only where that profile
fits and that kernel runs; a job that needs post-processors not shipped with WanFarm runs only
where they are installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.attention import AttentionMode, allowed_modes
from models.catalogue import ModelPreset
from models.gpus import arch_caps
from models.memory import GIB, JobSize, MemoryNeed, estimate
from models.overrides import Overrides
from models.profiles import SPEED_ORDER, Profile
from models.work import WorkSize
from scheduler.snapshot import AgentView

# Weight dtypes that need kernels only some architectures have; bf16 is absent on purpose: below
# sm80 it runs as fp16, so bf16 weights are fine everywhere.
_DTYPE_NEEDS = {"fp8": ("fp8", (8, 9)), "nvfp4": ("nvfp4", (12, 0))}


def choose_profile(
    preset: ModelPreset, work: WorkSize, agent: AgentView, forced: Overrides | None = None
) -> Profile | None:
    """The fastest profile (SPEED_ORDER) under which the work fits the agent, or the one `forced`
    names; None if it does not fit, or the agent does not run the forced attention kernel."""
    if arch_problem(preset, agent) is not None or attention_problem(forced, agent) is not None:
        return None
    if plugin_problem(forced, agent) is not None:
        return None
    size = work.size
    for profile in candidate_profiles(forced):
        if estimate(preset, profile, size).fits(agent.vram_total, agent.ram_total):
            return profile
    return None


def why_not(preset: ModelPreset, work: WorkSize, agent: AgentView, forced: Overrides | None = None) -> str:
    """Why the agent cannot run the work, in a short sentence (or the profile it would use)."""
    problem = arch_problem(preset, agent) or attention_problem(forced, agent) or plugin_problem(forced, agent)
    if problem is not None:
        return problem
    profile = choose_profile(preset, work, agent, forced)
    if profile is not None:
        return f"{agent.gpu_name} can run it at profile {profile}"
    size = work.size
    if forced is not None and forced.profile is not None:
        need = estimate(preset, forced.profile, size)
        return f"profile {forced.profile} does not fit on {agent.gpu_name}: {_shortfall(need, agent)}"
    profile, need = _least_vram(preset, size)
    if need.vram_bytes > agent.vram_total:
        return (
            f"needs {gib(need.vram_bytes)} VRAM at profile {profile}, "
            f"{agent.gpu_name} has {gib(agent.vram_total)}"
        )
    profile, need = _least_ram(preset, size, agent.vram_total)
    return (
        f"needs {gib(need.ram_bytes)} RAM at profile {profile}, "
        f"the node of {agent.gpu_name} has {gib(agent.ram_total)}"
    )


def pool_refusal(
    preset: ModelPreset, work: WorkSize, agents: Sequence[AgentView], forced: Overrides | None = None
) -> str | None:
    """None when some agent could ever run the work; else why not, in words a user can act on (a
    forced kernel or profile is named by its WanGP key)."""
    what = describe_job(preset, work)
    if not agents:
        return f"{what} cannot run: the pool has no agents"
    if any(choose_profile(preset, work, agent, forced) is not None for agent in agents):
        return None
    able = [agent for agent in agents if arch_problem(preset, agent) is None]
    if not able:
        return f"{what} cannot run: {arch_problem(preset, agents[0])}; no GPU in the pool supports it"
    # Plugins first: an agent without them cannot run the job whatever its memory.
    equipped = [agent for agent in able if plugin_problem(forced, agent) is None]
    if not equipped:
        return f"{what} cannot run: {_plugin_refusal(forced)}"
    able = equipped
    # The kernel first: memory that fits only where the kernel is missing does not help.
    with_kernel = [agent for agent in able if attention_problem(forced, agent) is None]
    if not with_kernel:
        return f"{what} cannot run: {_kernel_refusal(forced, able)}"
    if forced is not None and forced.profile is not None:
        return f"{what} cannot run: {_profile_refusal(preset, work, with_kernel, forced)}"
    return _memory_refusal(preset, work, with_kernel, what)


def candidate_profiles(forced: Overrides | None) -> tuple[Profile, ...]:
    """The profiles a job may run under, fastest first: the forced one alone, else all."""
    if forced is None or forced.profile is None:
        return SPEED_ORDER
    return (forced.profile,)


def attention_problem(forced: Overrides | None, agent: AgentView) -> str | None:
    """None when the job forces no kernel (or auto, which every agent has) or the agent runs it."""
    mode = forced.attention if forced is not None else None
    if mode is None or mode is AttentionMode.AUTO:
        return None
    kernels = agent_kernels(agent)
    if mode in kernels:
        return None
    return f"attention {mode.value!r} is not available on {agent.gpu_name} (it runs {_names(kernels)})"


def plugin_problem(forced: Overrides | None, agent: AgentView) -> str | None:
    """None when the agent has every post-processor the job needs (WanFarm's own are everywhere)."""
    if forced is None or not forced.plugins:
        return None
    missing = sorted(forced.plugins - (agent.plugins or frozenset()))
    if not missing:
        return None
    return f"{agent.agent_id} lacks the post-processors {', '.join(missing)} (plugins not installed there)"


def agent_kernels(agent: AgentView) -> frozenset[AttentionMode]:
    """The attention kernels an agent runs: as it reports them, else what its architecture allows."""
    if agent.attention_modes is not None:
        return agent.attention_modes
    return frozenset(allowed_modes(arch_caps(agent.capability)))


def arch_problem(preset: ModelPreset, agent: AgentView) -> str | None:
    """None when the agent's architecture runs every weight dtype of the model, else why not."""
    caps = arch_caps(agent.capability)
    for component in preset.components:
        need = _DTYPE_NEEDS.get(component.dtype)
        if need is None:
            continue
        cap, (major, minor) = need
        if not getattr(caps, cap):
            have = f"sm{agent.capability[0]}{agent.capability[1]}"
            return (
                f"{preset.id} stores its {component.name} in {component.dtype}, which needs "
                f"sm{major}{minor} or newer; {agent.gpu_name} is {have}"
            )
    return None


def unknown_model(model_id: str) -> str:
    """Why a job of a model the catalogue does not hold waits."""
    return f"unknown model {model_id!r} (see `wanfarm models`)"


def describe_job(preset: ModelPreset, work: WorkSize) -> str:
    """ "wan2.1-t2v-14b at 1280x720x81", or "flux.1-dev at 1024x1024 (batch 4)"."""
    return f"{preset.id} at {work.dimensions()}"


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _plugin_refusal(forced: Overrides | None) -> str:
    assert forced is not None  # only a needed plugin is missing
    names = ", ".join(sorted(forced.plugins))
    return (
        f"no agent has the post-processors it needs installed ({names}): pip install the package "
        "that provides them on a GPU node"
    )


def _kernel_refusal(forced: Overrides | None, able: Sequence[AgentView]) -> str:
    assert forced is not None and forced.attention is not None  # only a forced kernel is missing
    kernels = {agent.gpu_name: agent_kernels(agent) for agent in able}
    runs = "; ".join(f"{name} runs {_names(modes)}" for name, modes in sorted(kernels.items()))
    return f"override_attention: attention {forced.attention.value!r} is not available on any agent: {runs}"


def _profile_refusal(
    preset: ModelPreset, work: WorkSize, able: Sequence[AgentView], forced: Overrides
) -> str:
    assert forced.profile is not None
    need = estimate(preset, forced.profile, work.size)
    largest = max(able, key=lambda agent: (agent.vram_total, agent.ram_total, agent.agent_id))
    where = "any agent"
    if forced.attention is not None and forced.attention is not AttentionMode.AUTO:
        where = f"any agent that runs attention {forced.attention.value!r}"
    return (
        f"override_profile: profile {forced.profile} does not fit on {where}: on the largest GPU "
        f"({largest.gpu_name}) it {_shortfall(need, largest)}"
    )


def _memory_refusal(preset: ModelPreset, work: WorkSize, able: Sequence[AgentView], what: str) -> str:
    size = work.size
    largest = max(able, key=lambda agent: (agent.vram_total, agent.agent_id))
    profile, need = _least_vram(preset, size)
    if need.vram_bytes > largest.vram_total:
        return (
            f"{what} needs >= {gib(need.vram_bytes)} VRAM at profile {profile}; the largest GPU in the "
            f"pool ({largest.gpu_name}) has {gib(largest.vram_total)}"
        )
    roomiest = max(able, key=lambda agent: (agent.ram_total, agent.agent_id))
    profile, need = _least_ram(preset, size, largest.vram_total)
    if need.ram_bytes > roomiest.ram_total:
        return (
            f"{what} needs >= {gib(need.ram_bytes)} RAM at profile {profile}; the node with the most "
            f"RAM in the pool has {gib(roomiest.ram_total)}"
        )
    # Enough VRAM on one node and enough RAM on another, but no node has both.
    reasons = "; ".join(f"{agent.agent_id}: {why_not(preset, work, agent)}" for agent in able[:3])
    return f"{what} cannot run: no agent has both the VRAM and the RAM ({reasons})"


def _shortfall(need: MemoryNeed, agent: AgentView) -> str:
    return need.shortfall(agent.vram_total, agent.ram_total) or "fits"


def _names(modes: frozenset[AttentionMode]) -> str:
    return ", ".join(sorted(mode.value for mode in modes))


def _least_vram(preset: ModelPreset, size: JobSize) -> tuple[Profile, MemoryNeed]:
    # The profile that asks least of the card; ties go to the faster one.
    needs = [(profile, estimate(preset, profile, size)) for profile in SPEED_ORDER]
    return min(needs, key=lambda pair: pair[1].vram_bytes)


def _least_ram(preset: ModelPreset, size: JobSize, vram_bytes: int) -> tuple[Profile, MemoryNeed]:
    # Among profiles the card could hold, the one that asks least of the node.
    needs = [(profile, estimate(preset, profile, size)) for profile in SPEED_ORDER]
    fitting = [pair for pair in needs if pair[1].vram_bytes <= vram_bytes] or needs
    return min(fitting, key=lambda pair: pair[1].ram_bytes)
