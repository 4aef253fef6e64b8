"""How a generation really ran (RunInfo), and one attempt's figures from several runs: a batch's
outputs, or a long video's windows. Torch-free, so the agent and its long videos read it cheaply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from models.loras import AppliedLora

# From the coldest source of weights to the hottest.
_COLDNESS = ("download", "disk", "hot")


@dataclass(frozen=True)
class RunInfo:
    """How a generation really ran, for the output's record."""

    device: str
    dtype: str
    profile: str  # the memory profile applied, or "none (cpu)"
    attention: str  # the kernels the transformer really called; "none" when it called none we count
    loaded: bool  # False when the hot pipeline was reused
    load_seconds: float
    generate_seconds: float
    peak_vram_bytes: int
    weights_source: str = "hot"  # "hot" (reused), "disk" (the node cache) or "download" (fetched now)
    bytes_fetched: int = 0
    loras: tuple[AppliedLora, ...] = ()  # name, sha256, multipliers as written, weight of each step
    # Denoising steps whose transformer blocks ran, and those step skipping (WanGP's
    # skip_steps_cache_type) left out; counted on the conditional pass, as WanGP counts them.
    steps_run: int = 0
    steps_skipped: int = 0
    # The single file the transformer was loaded from (a WanGP definition's own weights, WanGP's
    # model_filename); "" when the model's diffusers folder supplied it.
    model_file: str = ""
    # The step a checkpoint let this run resume from (models.checkpoint); 0 when it ran them all.
    resumed_from: int = 0


def combined(runs: Sequence[RunInfo]) -> RunInfo:
    """One attempt's run from its runs': times, bytes and steps add up, the peak is the highest and
    the weights came from the coldest source (a batch loads once, then runs hot). Outputs of one
    generation share its RunInfo, which counts once."""
    distinct = list({id(run): run for run in runs}.values())
    return replace(
        distinct[0],
        load_seconds=sum(r.load_seconds for r in distinct),
        generate_seconds=sum(r.generate_seconds for r in distinct),
        peak_vram_bytes=max(r.peak_vram_bytes for r in distinct),
        weights_source=min((r.weights_source for r in distinct), key=_COLDNESS.index),
        bytes_fetched=sum(r.bytes_fetched for r in distinct),
        steps_run=sum(r.steps_run for r in distinct),
        steps_skipped=sum(r.steps_skipped for r in distinct),
    )
