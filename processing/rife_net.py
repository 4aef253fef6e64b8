"""RIFE 4.26's network (Practical-RIFE's IFNet with its feature head), as WanGP runs it for
temporal_upsampling: the module names and shapes of `rife4.26.pkl`, so that file loads as it is.

Read at deepbeepmeep/Wan2GP@8681e9f7, postprocessing/rife/RIFE_V4.py; written here anew. The flow
blocks' widths are read off the weights, so a tiny file (the same layout at a smaller width) loads
through the same code. Imports torch: only processing.rife imports this, inside its functions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

# The flow blocks' widths of the released rife4.26.pkl, coarsest first.
FULL_WIDTHS = (192, 128, 96, 64, 32)
# Each block sees the frames at 1/16, 1/8, ... of their size (WanGP runs RIFE at scale 1).
BLOCK_SCALES = (16.0, 8.0, 4.0, 2.0, 1.0)
FEATURES = 4  # channels of the head's features of each frame
HEAD_WIDTH = 16
# A block returns two flows (4), a blend mask (1) and 8 channels of features for the next block.
_BLOCK_OUT = 4 + 1 + 8
_FIRST_IN = 3 + 3 + FEATURES + FEATURES + 1  # both frames, their features, the timestep
_LATER_IN = 3 + 3 + FEATURES + FEATURES + 1 + 1 + 8 + 4  # warped ones, mask, features, flow
_RESIDUALS = 8
_SLOPE = 0.2


class WeightsMismatch(ValueError):
    """A weight file that is not RIFE 4.26's layout."""


class Rife(nn.Module):
    """The feature head (`encode`) and five flow blocks (`block0`..`block4`)."""

    def __init__(self, widths: tuple[int, ...] = FULL_WIDTHS) -> None:
        super().__init__()
        if len(widths) != len(BLOCK_SCALES) or any(w < 2 or w % 2 for w in widths):
            raise WeightsMismatch(f"RIFE 4.26 has 5 flow blocks of even widths, not {widths}")
        self.widths = widths
        self.encode = _Head()
        for index, width in enumerate(widths):
            self.add_module(f"block{index}", _FlowBlock(_FIRST_IN if index == 0 else _LATER_IN, width))
        self._grids: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> Rife:
        """The network holding `state` (a `module.` prefix, from training in parallel, is dropped);
        a key it lacks is an error naming it, keys it does not use are ignored as WanGP ignores them."""
        state = {key.removeprefix("module."): value for key, value in state.items()}
        widths = []
        for index in range(len(BLOCK_SCALES)):
            key = f"block{index}.conv0.1.0.weight"
            if key not in state:
                raise WeightsMismatch(f"not RIFE 4.26's weights: no {key}")
            widths.append(int(state[key].shape[0]))
        net = cls(tuple(widths))
        try:
            missing = net.load_state_dict(state, strict=False).missing_keys
        except RuntimeError as error:  # a shape that differs
            raise WeightsMismatch(f"not RIFE 4.26's weights: {error}") from error
        if missing:
            raise WeightsMismatch(f"not RIFE 4.26's weights: {len(missing)} missing, e.g. {missing[:3]}")
        return net.eval()

    def between(self, first: torch.Tensor, second: torch.Tensor, timestep: float) -> torch.Tensor:
        """The frame at `timestep` (0..1) between two (1, 3, H, W) frames in 0..1, H and W on 64."""
        first, second = first.clamp(0.0, 1.0), second.clamp(0.0, 1.0)
        features = (self.encode(first), self.encode(second))
        height, width = first.shape[2:]
        time = torch.full((1, 1, height, width), float(timestep), dtype=first.dtype, device=first.device)
        warped = (first, second)
        flow = mask = carried = None
        for index, scale in enumerate(BLOCK_SCALES):
            block = getattr(self, f"block{index}")
            if flow is None:
                flow, mask, carried = block(torch.cat((first, second, *features, time), 1), None, scale)
            else:
                assert mask is not None and carried is not None
                moved = (self._warp(features[0], flow[:, :2]), self._warp(features[1], flow[:, 2:4]))
                inputs = torch.cat((*warped, *moved, time, mask, carried), 1)
                change, mask, carried = block(inputs, flow, scale)
                flow = flow + change
            warped = (self._warp(first, flow[:, :2]), self._warp(second, flow[:, 2:4]))
        assert mask is not None
        weight = torch.sigmoid(mask)
        return warped[0] * weight + warped[1] * (1 - weight)

    def _warp(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        # Backward warping: each pixel reads the image where its flow (in pixels) points.
        half_sides, base = self._grid(image.shape[2], image.shape[3], image.device)
        flow = flow.float()
        flow = torch.cat((flow[:, 0:1] / half_sides[0], flow[:, 1:2] / half_sides[1]), 1)
        grid = (base + flow).permute(0, 2, 3, 1)
        sampled = F.grid_sample(
            image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        return sampled.to(image.dtype)

    def _grid(self, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (height, width, str(device))
        if key not in self._grids:
            half_sides = torch.tensor([(width - 1.0) / 2.0, (height - 1.0) / 2.0], device=device)
            across = torch.linspace(-1.0, 1.0, width, device=device).view(1, 1, 1, width)
            down = torch.linspace(-1.0, 1.0, height, device=device).view(1, 1, height, 1)
            base = torch.cat((across.expand(1, 1, height, width), down.expand(1, 1, height, width)), 1)
            self._grids[key] = (half_sides, base)
        return self._grids[key]


class _Head(nn.Module):
    # Four channels of features of a frame, at its size.
    def __init__(self) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, HEAD_WIDTH, 3, 2, 1)
        self.cnn1 = nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, 1, 1)
        self.cnn2 = nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(HEAD_WIDTH, FEATURES, 4, 2, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        hidden = image.clamp(0.0, 1.0)
        for layer in (self.cnn0, self.cnn1, self.cnn2):
            hidden = F.leaky_relu(layer(hidden), _SLOPE)
        return self.cnn3(hidden)


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, width, 1, 1)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(hidden) * self.beta + hidden, _SLOPE)


def _down(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, 2, 1), nn.LeakyReLU(_SLOPE))


class _FlowBlock(nn.Module):
    # One scale: the flows' correction, the mask and features, from the inputs seen at 1/scale.
    def __init__(self, channels_in: int, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_down(channels_in, width // 2), _down(width // 2, width))
        self.convblock = nn.Sequential(*(_Residual(width) for _ in range(_RESIDUALS)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * _BLOCK_OUT, 4, 2, 1), nn.PixelShuffle(2))

    def forward(
        self, inputs: torch.Tensor, flow: torch.Tensor | None, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = F.interpolate(inputs, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            inputs = torch.cat((inputs, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(inputs)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]
