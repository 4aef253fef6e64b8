"""Which sampler a model family can run, as pure rules: settings are checked here before any job
starts, and models.call_args applies the same rules when it builds the scheduler."""

from __future__ import annotations

from dataclasses import dataclass

SOLVER_NAMES = ("unipc", "euler", "dpm++", "causvid", "lcm", "distilled_8_steps")
# WanGP's samplers for step-distilled Wan (models.flow_schedulers): Wan only, and capped in steps.
WAN_ONLY = ("causvid", "lcm")
MAX_STEPS = {"causvid": 9, "lcm": 8}
# WanGP's LTX-2.3 sampler: Euler on the distilled 8-step schedule, in two render stages with the
# distilled LoRA (models.ltx2_stages); LTX-2 only, and always 8 steps.
LTX2_ONLY = ("distilled_8_steps",)


@dataclass(frozen=True)
class Sampling:
    """How a family's pipeline drives its scheduler's `set_timesteps`."""

    # The pipeline passes its own sigmas: DPMSolverMultistepScheduler.set_timesteps has no `sigmas`
    # argument, so diffusers' retrieve_timesteps would fail mid-job.
    own_sigmas: bool
    # The pipeline always passes `mu` (a shift computed from the image size): DPM++ then asserts
    # dynamic shifting is on, so a fixed flow shift cannot be combined with it.
    passes_mu: bool


SAMPLING: dict[str, Sampling] = {
    "wan": Sampling(own_sigmas=False, passes_mu=False),
    "hunyuan": Sampling(own_sigmas=True, passes_mu=False),
    "ltx": Sampling(own_sigmas=True, passes_mu=True),
    "flux": Sampling(own_sigmas=False, passes_mu=True),
    # Flux2Pipeline / Flux2KleinPipeline pass their own sigmas and an empirical mu.
    "flux2": Sampling(own_sigmas=True, passes_mu=True),
    "qwen-image": Sampling(own_sigmas=True, passes_mu=True),
    "ltx2": Sampling(own_sigmas=True, passes_mu=True),
    "hunyuan15": Sampling(own_sigmas=True, passes_mu=False),
    # Kandinsky5T2VPipeline / I2VPipeline: set_timesteps(steps) alone; the shift is the scheduler's.
    "kandinsky5": Sampling(own_sigmas=False, passes_mu=False),
    # ZImagePipeline passes its own sigmas and a mu from the image size.
    "z-image": Sampling(own_sigmas=True, passes_mu=True),
    # Krea2Pipeline passes its own sigmas and a mu (from the image size, or 1.15 when distilled).
    "krea2": Sampling(own_sigmas=True, passes_mu=True),
    # Ideogram4Pipeline passes its own logit-normal sigmas, no mu.
    "ideogram4": Sampling(own_sigmas=True, passes_mu=False),
    # ChromaPipeline passes its own sigmas and a mu from the image size, as FLUX.1's schedule.
    "chroma": Sampling(own_sigmas=True, passes_mu=True),
}


def solver_problem(family: str, model_id: str, solver: str, flow_shift: float | None) -> str | None:
    """None when `solver` can run on this family with this shift, else why not, in words."""
    if solver not in SOLVER_NAMES:
        return f"unknown sample_solver {solver!r}; allowed: {', '.join(SOLVER_NAMES)}"
    sampling = SAMPLING.get(family)
    if sampling is None:
        return f"{model_id}: no sampler rules for family {family!r}; known families: {', '.join(SAMPLING)}"
    if solver in WAN_ONLY and family != "wan":
        return (
            f"sample_solver {solver!r} is not available for {model_id}: it is a sampler of Wan models "
            f"only (step-distilled Wan); use {', '.join(n for n in SOLVER_NAMES if n not in WAN_ONLY)}"
        )
    if solver in LTX2_ONLY and family != "ltx2":
        return f"sample_solver {solver!r} is not available for {model_id}: a sampler of LTX-2 models only"
    if solver != "dpm++":
        return None
    if sampling.own_sigmas:
        return (
            f"sample_solver 'dpm++' is not available for {model_id}: its pipeline sets its own "
            "sigmas, which DPMSolverMultistepScheduler does not take; use 'unipc' or 'euler'"
        )
    if sampling.passes_mu and flow_shift is not None:
        return (
            f"sample_solver 'dpm++' on {model_id} takes its flow shift from the image size; "
            "leave flow_shift unset, or use 'unipc' or 'euler' for a fixed shift"
        )
    return None


def steps_run(solver: str, steps: int) -> int:
    """The denoising steps `solver` runs for `steps` requested: causvid at most 9, lcm at most 8."""
    if solver in LTX2_ONLY:
        return 8
    return min(steps, MAX_STEPS.get(solver, steps))
