"""WanFarm's own plugins, registered through its pyproject's entry points like any other package's:
RIFE frame interpolation, film grain and Lanczos resizing (WanGP's temporal_upsampling,
film_grain_* and spatial_upsampling), and the catalogue's own model family."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from processing import rife
from processing.plugins import Clip
from processing.postprocess import film_grain, resize_lanczos

# WanGP's Lanczos choices (postprocessing/lanczos at 8681e9f7) and the factor of each.
LANCZOS = {"lanczos1.5": 1.5, "lanczos2": 2.0}


class RifeUpsampling:
    """WanGP's RIFE temporal upsampling ('rife2': frames x2 less one, fps x2; 'rife4': x4), window
    by window for a long video (processing.rife)."""

    name = "rife"
    keys = ("temporal_upsampling",)
    order = 10

    def wanted(self, settings: Mapping[str, Any]) -> bool:
        value = settings.get("temporal_upsampling")
        return isinstance(value, str) and value.strip().lower().startswith(rife.METHOD)

    def problems(self, settings: Mapping[str, Any], video: bool) -> list[str]:
        value = settings["temporal_upsampling"]
        if rife.factor_of(value) is None:
            accepted = ", ".join(repr(f"{rife.METHOD}{factor}") for factor in rife.FACTORS)
            return [f"temporal_upsampling: {value!r} is not one of WanGP's RIFE values; accepted: {accepted}"]
        if not video:  # WanGP's own refusal (its validate_temporal_upsampling)
            return [
                f"temporal_upsampling: {value!r} cannot be used with an image: it interpolates video frames"
            ]
        return []

    def apply(self, clip: Clip, settings: Mapping[str, Any]) -> Clip:
        factor = rife.factor_of(settings["temporal_upsampling"])
        assert factor is not None  # problems() refuses any other value
        weights = rife.weights_path(tiny=_tiny_model(settings.get("model_type")))
        done = rife.upsample(clip.frames, factor, weights, clip.windows)
        assert clip.fps is not None  # problems() refuses it for an image
        return replace(clip.with_frames(done.frames), fps=clip.fps * factor, windows=done.windows)


class FilmGrain:
    """WanGP's film grain (film_grain_intensity, film_grain_saturation), seeded by the job's seed."""

    name = "film_grain"
    keys = ("film_grain_intensity", "film_grain_saturation")
    order = 30

    def wanted(self, settings: Mapping[str, Any]) -> bool:
        return _number(settings.get("film_grain_intensity")) > 0

    def problems(self, settings: Mapping[str, Any], video: bool) -> list[str]:
        return []  # the settings schema checks both ranges

    def apply(self, clip: Clip, settings: Mapping[str, Any]) -> Clip:
        intensity = _number(settings.get("film_grain_intensity"))
        saturation = _number(settings.get("film_grain_saturation", 0.5))
        return clip.with_frames(film_grain(clip.frames, intensity, saturation, seed=clip.seed))


class LanczosUpsampling:
    """WanGP's Lanczos spatial upsampling: x1.5 or x2, each side rounded to an even number (the
    video codec's yuv420p halves the chroma planes)."""

    name = "lanczos"
    keys = ("spatial_upsampling",)
    order = 20

    def wanted(self, settings: Mapping[str, Any]) -> bool:
        value = settings.get("spatial_upsampling")
        return isinstance(value, str) and value.startswith("lanczos")

    def problems(self, settings: Mapping[str, Any], video: bool) -> list[str]:
        value = settings["spatial_upsampling"]
        if value in LANCZOS:
            return []
        accepted = ", ".join(repr(name) for name in LANCZOS)
        return [f"spatial_upsampling: {value!r} is not a Lanczos factor of WanGP's; accepted: {accepted}"]

    def apply(self, clip: Clip, settings: Mapping[str, Any]) -> Clip:
        factor = LANCZOS[settings["spatial_upsampling"]]
        _, height, width, _ = clip.frames.shape
        width, height = (round(side * factor / 2) * 2 for side in (width, height))
        return clip.with_frames(resize_lanczos(clip.frames, width, height))


class CatalogueFamily:
    """The models WanFarm ships: models/presets."""

    name = "wanfarm"
    presets = Path(__file__).resolve().parent.parent / "models" / "presets"


def _tiny_model(model_type: object) -> bool:
    # A tiny model's job (random weights, built offline) runs a tiny RIFE too: no hub needed.
    from models.catalogue import UnknownModel, get_model

    try:
        return get_model(str(model_type)).tiny
    except UnknownModel:
        return False


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
