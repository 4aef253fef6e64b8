"""WanGP's guidance phases as one CFG weight a step, over Ideogram 4's logit-normal schedule
(Wan2GP 8681e9f7 models/ideogram4/scheduler.py, ideogram4_main.py): the record a generation request
carries (models.ideogram4_call reads it from the settings and builds the call)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# The schedule's clamp in log-SNR (models/ideogram4/scheduler.py LogitNormalSchedule), and the
# resolution its mean is given at.
_LOGSNR_MIN, _LOGSNR_MAX = -15.0, 18.0
_KNOWN_PIXELS = 512 * 512


@dataclass(frozen=True)
class PhasedGuidance:
    """WanGP's guidance phases and schedule for a model whose pipeline takes one CFG weight a step."""

    scales: tuple[float, ...]  # of phases 1, 2 and 3 (as many as run)
    switches: tuple[float, ...]  # the noise level (0-1000) where phases 2 and 3 start; 0: never
    mu: float  # the logit-normal schedule's mean at 512x512
    std: float

    def per_step(self, steps: int, width: int, height: int) -> list[float]:
        """Each step's CFG weight, first step first, as WanGP assigns them: a phase's scale from
        the first step whose noise level is at or below its switch."""
        sigmas = noise_levels(steps, width, height, self.mu, self.std)
        weights = [self.scales[0]] * steps
        for phase in range(1, len(self.scales)):
            switch = self.switches[phase - 1]
            if switch > 0:
                threshold = switch / 1000.0
                weights = [
                    self.scales[phase] if s <= threshold else w for s, w in zip(sigmas, weights, strict=True)
                ]
        return weights


def noise_levels(steps: int, width: int, height: int, mu: float, std: float) -> list[float]:
    """The noise level of each step's input, first step first, in float32 as WanGP computes them
    (a logit-normal schedule over linspace(0, 1, steps + 1), its mean shifted by resolution)."""
    import torch

    mean = mu + 0.5 * math.log(width * height / _KNOWN_PIXELS)
    intervals = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float32).to(torch.float64)
    times = 1.0 - torch.special.expit(mean + std * torch.special.ndtri(intervals))
    low, high = 1.0 / (1 + math.exp(0.5 * _LOGSNR_MAX)), 1.0 / (1 + math.exp(0.5 * _LOGSNR_MIN))
    sigmas = 1.0 - times.clamp(low, high).to(torch.float32)
    # WanGP walks the schedule from its noisiest end; step k's input is sigmas[steps - k].
    return [float(sigmas[steps - k]) for k in range(steps)]
