"""Flow-matching schedulers for WanGP's distilled-model samplers, in diffusers' scheduler interface.

Both step as Euler on the flow (x + v * (sigma_next - sigma)); they differ from diffusers' own
FlowMatchEulerDiscreteScheduler only in the timesteps they run. "causvid" runs a fixed list of
timesteps made for CausVid-distilled Wan (sigma = t / 1000, no shift, ending at 0); "lcm" runs a
linear, shifted schedule that stops at the training's smallest sigma instead of 0. Each runs at most
as many steps as WanGP does with it (`max_steps`): a longer request runs that many.
"""

from __future__ import annotations

import torch

# diffusers' top-level names are typed as dummy classes under mypy: import from the module.
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from models.samplers import MAX_STEPS

CAUSVID_TIMESTEPS = (1000, 934, 862, 756, 603, 410, 250, 140, 74)
# The smallest sigma of the flow-matching training schedule, where the lcm schedule ends.
LCM_SIGMA_MIN = 0.003 / 1.002


class _ListedEulerScheduler(FlowMatchEulerDiscreteScheduler):
    """FlowMatchEulerDiscreteScheduler's step over timesteps and sigmas its subclass lists."""

    max_steps: int

    def listed(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The timesteps of `steps` steps and their sigmas (one more: where the last step lands)."""
        raise NotImplementedError

    def set_timesteps(  # type: ignore[override]
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        **_unused: object,
    ) -> None:
        timesteps, sigmas = self.listed(_steps(num_inference_steps, self.max_steps))
        self.num_inference_steps = len(timesteps)
        self.timesteps = timesteps.to(device)  # type: ignore[assignment]  # a tensor after set_timesteps
        self.sigmas = sigmas.to(device)
        self._step_index = None
        self._begin_index = None


class CausVidScheduler(_ListedEulerScheduler):
    """Euler over the first `num_inference_steps` of CAUSVID_TIMESTEPS (all 9 at most); the shift
    in the config is not used."""

    max_steps = MAX_STEPS["causvid"]  # len(CAUSVID_TIMESTEPS)

    def listed(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        timesteps = torch.tensor(CAUSVID_TIMESTEPS[:steps], dtype=torch.float32)
        return timesteps, torch.cat([timesteps / self.config["num_train_timesteps"], torch.zeros(1)])


class LcmFlowScheduler(_ListedEulerScheduler):
    """Euler over num_inference_steps (at most 8) sigmas linear from 1 down to LCM_SIGMA_MIN, with
    the config's `shift` applied as flow matching does (shift * s / (1 + (shift - 1) * s))."""

    max_steps = MAX_STEPS["lcm"]

    def listed(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        # In float32 and in this order, so the sigmas are WanGP's to the bit.
        fraction = torch.linspace(0, 1, steps + 1, dtype=torch.float32)
        sigmas = LCM_SIGMA_MIN + (1.0 - LCM_SIGMA_MIN) * (1 - fraction)
        shift = float(self.config["shift"])
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        return sigmas[:-1] * self.config["num_train_timesteps"], sigmas


def _steps(requested: int | None, most: int) -> int:
    if requested is None or requested < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {requested}")
    return min(requested, most)
