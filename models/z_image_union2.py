"""Z-Image ControlNet Union 2.0 and 2.1 as WanGP adds their control (Wan2GP 8681e9f7
models/z_image/z_image_transformer2d.py), over diffusers' ZImageControlNetPipeline.

Union 2.x's control blocks first steer the noise refiner: WanGP runs each refiner layer's control
block on the latent as refined so far (in place, the hints of the layers before added), adds its
hint, scaled, to the latent it denoises, and runs the remaining control blocks (on 2.1, whose
refiner has blocks of its own, every main control block) on the refined latent before the main
layers take their hints. diffusers' ZImageControlNetModel runs the refiner's control blocks on the
unrefined latent, adds their hints to its own copy only, and on 2.1 skips that second pass; its
transformer refines the latent it denoises without them. Union2Call runs diffusers' pipeline with
hooks that live for one call and do it as WanGP does. One denoising call equals WanGP's own class
to 1e-5 (tests/integration/test_z_image_union2.py: two refiner layers, four main layers); diffusers
alone differs by more than the control's effect. No torch import at module level.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


class Union2Call:
    """Callable as the pipeline it wraps (a ZImageControlNetPipeline in mode "control_layers" or
    "control_noise_refiner"), its control added as WanGP adds it."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __getattr__(self, name: str) -> Any:
        # The transformer, scheduler and config, for step skipping and the progress callback.
        if name == "pipe":
            raise AttributeError(name)
        return getattr(self.pipe, name)

    def __call__(self, **kwargs: Any) -> Any:
        scale = kwargs.get("controlnet_conditioning_scale", 0.75)
        with wangp_refiner_control(self.pipe.controlnet, self.pipe.transformer, float(scale)):
            return self.pipe(**kwargs)


@dataclass
class _State:
    refiner_hints: dict[int, Any] = field(default_factory=dict)  # refiner layer -> scaled hint
    skips: list[Any] = field(default_factory=list)  # the refiner-phase control blocks' hints so far
    x: Any = None  # the latent as WanGP's refiner has it so far (its hints added)
    refined: int = 0  # refiner layers applied to `x`
    in_controlnet: bool = False
    refiner_done: bool = False  # this ControlNet call's refiner control blocks have run


@contextmanager
def wangp_refiner_control(controlnet: Any, transformer: Any, scale: float) -> Iterator[None]:
    """While inside, each ControlNet call's control blocks of the refiner phase see the latent as
    WanGP's refiner has it when they run (refined by the layers before, their hints added; the
    later blocks, and 2.1's main blocks run before the main layers, the refined latent), and their
    hints are added after the transformer's own refiner layers too (WanGP's BaseZImageTransformerBlock)."""
    dedicated = controlnet.config.add_control_noise_refiner == "control_noise_refiner"
    blocks = controlnet.control_noise_refiner if dedicated else controlnet.control_layers
    places = list(controlnet.config.control_refiner_layers_places)
    refiner = controlnet.noise_refiner  # the transformer's own, shared
    state = _State()

    def refined_to(count: int, rest: tuple[Any, ...]) -> Any:
        # WanGP refines the latent in place, its hint added after each steered layer.
        while state.refined < count:
            layer = state.refined
            state.x = refiner[layer](state.x, *rest)
            if layer in places:
                state.x = state.x + state.skips[places.index(layer)] * scale
            state.refined += 1
        return state.x

    def controlnet_starts(_module: Any, _args: Any) -> None:
        state.in_controlnet, state.refiner_done, state.refined, state.x = True, False, 0, None
        state.refiner_hints.clear()
        state.skips.clear()

    def controlnet_ends(_module: Any, _args: Any, _output: Any) -> None:
        state.in_controlnet = False

    def block_starts(index: int) -> Any:
        def hook(_module: Any, args: tuple[Any, ...]) -> Any:
            if not state.in_controlnet or state.refiner_done:
                return None
            c, x, *rest = args
            if state.x is None:
                state.x = x
            wanted = index if index < len(places) else len(refiner)
            return (c, refined_to(wanted, tuple(rest)), *rest)

        return hook

    def block_done(index: int) -> Any:
        def hook(_module: Any, args: tuple[Any, ...], output: Any) -> Any:
            if not state.in_controlnet or state.refiner_done:
                return None
            state.skips.append(output.unbind(0)[-2])
            if index < len(blocks) - 1:
                return None
            state.refiner_done = True
            hints, context = list(output.unbind(0)[:-1]), output.unbind(0)[-1]
            state.refiner_hints.update({place: hints[n] * scale for n, place in enumerate(places)})
            if not dedicated:
                return None
            # WanGP (2.1): every main control block over the image tokens' context, on the refined
            # latent, before the main layers.
            import torch

            _c, _x, *rest = args
            x = refined_to(len(refiner), tuple(rest))
            carried = context
            for block in controlnet.control_layers:
                carried = block(carried, x, *rest)
            return torch.stack([*hints, carried.unbind(0)[-1]])

        return hook

    def refiner_layer_done(index: int) -> Any:
        def hook(_module: Any, _args: Any, output: Any) -> Any:
            hint = state.refiner_hints.get(index)
            if state.in_controlnet or hint is None:  # the ControlNet's own copy: it adds its own
                return None
            return output + hint[:, : output.shape[1]]

        return hook

    handles = [
        controlnet.register_forward_pre_hook(controlnet_starts),
        controlnet.register_forward_hook(controlnet_ends),
    ]
    for index, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(block_starts(index)))
        handles.append(block.register_forward_hook(block_done(index)))
    handles += [
        layer.register_forward_hook(refiner_layer_done(index))
        for index, layer in enumerate(transformer.noise_refiner)
        if index in places
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
