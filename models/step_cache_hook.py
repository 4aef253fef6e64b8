"""Step skipping on a Wan transformer for one pipeline call: hooks that follow a models.step_cache plan.

The hooks sit on the transformer's blocks through diffusers' HookRegistry, keyed by the pipeline's
cache context ("cond", "uncond"): the first block either runs the blocks or, on a skipped step,
returns its input plus the residual that pass kept from its last computed step; the last block
keeps that residual. They are attached for one call and removed after it, error or not, so the
next job on the hot pipeline renders as on a fresh one.

diffusers' own MagCacheConfig is not used: it holds one ratio list for both passes, where WanGP's
MagCache decides each pass on its own ratios (a different plan in 255 of 40,000 cases of steps,
multiplier and start checked against WanGP's rule), and TeaCache as WanGP runs it on Wan (from the
time embedding alone) has no diffusers hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from diffusers.hooks.hooks import BaseState, CacheContext, HookRegistry, ModelHook, StateManager

from models.step_cache import CALIBRATIONS, CacheKind, StepCaching, StepPlan, mag_plan, tea_plan

HOOK_NAME = "wanfarm_step_cache"
COND = "cond"


@dataclass(frozen=True)
class StepsRun:
    """What one call ran: denoising steps whose blocks ran on the conditional pass, and those
    skipped; `plan` is None when the call had no step skipping."""

    run: int
    skipped: int
    plan: StepPlan | None = None


class StepCounter:
    """Filled while the call runs; read after it."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.plan: StepPlan | None = None
        self.ran: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def result(self) -> StepsRun:
        if self.plan is None and not self.ran:
            return StepsRun(self.steps, 0)  # no skipping asked: every step ran
        return StepsRun(self.ran.get(COND, 0), self.skipped.get(COND, 0), self.plan)


@contextmanager
def step_skipping(pipe: Any, caching: StepCaching | None, steps: int) -> Iterator[StepCounter]:
    """Skip steps of `pipe`'s transformer as `caching` plans for the call made inside; nothing
    when `caching` is None. Hooks are removed on the way out, whatever happened."""
    counter = StepCounter(steps)
    if caching is None:
        yield counter
        return
    transformer = pipe.transformer
    if getattr(pipe, "transformer_2", None) is not None:
        raise ValueError("step skipping across two transformers (Wan 2.2's experts) is not built")
    calibration = CALIBRATIONS[caching.calibration]
    if caching.skip.kind is CacheKind.MAG:
        plan = mag_plan(calibration, caching.skip, steps)
        planner: Callable[[], StepPlan] = lambda: plan  # noqa: E731
    else:
        # The time embedding of every step, from the timesteps the pipeline has set by its first
        # transformer call.
        planner = lambda: tea_plan(  # noqa: E731
            calibration, caching.skip, time_embedding_changes(transformer, pipe.scheduler.timesteps)
        )
    blocks = list(transformer.blocks)
    states = StateManager(_PassState)  # type: ignore[arg-type]  # typed as an instance, used as a class
    shared = _Shared(planner, counter)
    try:
        for index, block in enumerate(blocks):
            hook = _BlockHook(states, shared, head=index == 0, tail=index == len(blocks) - 1)
            HookRegistry.check_if_exists_or_initialize(block).register_hook(hook, HOOK_NAME)
        # The pipeline's cache_context reaches hooks through this cached list: rebuild it.
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
        yield counter
    finally:
        for block in blocks:
            HookRegistry.check_if_exists_or_initialize(block).remove_hook(HOOK_NAME, recurse=False)
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
        states.reset()


def time_embedding_changes(transformer: Any, timesteps: torch.Tensor) -> list[float]:
    """Per step, mean(|e_i - e_(i-1)|) / mean(|e_(i-1)|) of the transformer's time embedding e
    (0 for the first step): what TeaCache reads on Wan."""
    embedder = transformer.condition_embedder
    weight = next(embedder.time_embedder.parameters())
    with torch.inference_mode():
        sinusoids = embedder.timesteps_proj(timesteps.flatten().to(weight.device))
        embeddings = embedder.time_embedder(sinusoids.to(weight.dtype)).float()
    changes = [0.0]
    for before, now in pairwise(embeddings):
        changes.append(float((now - before).abs().mean() / before.abs().mean()))
    return changes


class _PassState(BaseState):
    """One pass's (cache context's) running state."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, *args: Any, **kwargs: Any) -> None:
        self.step = 0
        self.skipping = False
        self.input: torch.Tensor | None = None
        self.residual: torch.Tensor | None = None


class _Shared:
    """The plan (made at the first call: TeaCache needs the pipeline's timesteps) and the counts."""

    def __init__(self, planner: Callable[[], StepPlan], counter: StepCounter) -> None:
        self._planner = planner
        self.counter = counter

    def runs(self, name: str, step: int) -> bool:
        plan = self.counter.plan
        if plan is None:
            plan = self.counter.plan = self._planner()
        steps = plan.uncond if name != COND else plan.cond
        # A step outside the plan (a pipeline calling more often than planned) runs.
        return step >= len(steps) or steps[step]


class _BlockHook(ModelHook):
    _is_stateful = True

    def __init__(self, states: StateManager, shared: _Shared, head: bool, tail: bool) -> None:
        super().__init__()
        self.states = states
        self.shared = shared
        self.head = head
        self.tail = tail

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if self.states._context is None:  # a pipeline without cache contexts: one pass
            self.states.set_context(CacheContext(COND))
        state: _PassState = self.states.get_state()
        hidden = args[0] if args else kwargs["hidden_states"]
        if self.head:
            name = self.states.context.name
            state.skipping = state.residual is not None and not self.shared.runs(name, state.step)
            counts = self.shared.counter.skipped if state.skipping else self.shared.counter.ran
            counts[name] = counts.get(name, 0) + 1
            state.step += 1
            state.input = hidden
            if state.skipping:
                return hidden + state.residual
        if state.skipping:
            return hidden
        forward: Callable[..., Any] = self.fn_ref.original_forward  # type: ignore[assignment]
        output = forward(*args, **kwargs)
        if self.tail:
            state.residual = output - state.input
        return output

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.states.reset()
        return module
