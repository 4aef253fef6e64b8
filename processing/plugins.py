"""Plugins: post-processors and model families found through Python entry points.

A pip package adds a post-processor by naming it in the entry-point group `wanfarm.postprocessors`
(a class or an instance satisfying `PostProcessor`), or a model family in `wanfarm.model_families`
(an object satisfying `ModelFamily`: a folder of catalogue presets). WanFarm's own film grain and
Lanczos resize are registered the same way, in its pyproject. What is installed is read from the
environment each time `refresh()` is called (once per process otherwise), so a package installed
with pip shows in `wanfarm models`, in an agent's inventory, and in the settings it accepts.

No torch here: the controller and the command line import this module.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

# The distribution that registers the built-ins: its plugins ship with every agent, so a job that
# needs only them places anywhere.
BUILTIN_DISTRIBUTION = "wanfarm"


class PluginGroup(StrEnum):
    """The entry-point groups WanFarm reads."""

    POSTPROCESSORS = "wanfarm.postprocessors"
    MODEL_FAMILIES = "wanfarm.model_families"


@dataclass(frozen=True)
class Clip:
    """What a post-processor reads and returns: RGB uint8 frames (F, H, W, 3), the frame rate (None
    for an image), the job's seed, the keys it adds to the output's metadata, and for a long video
    the frame count of each sliding window it was rendered in (WanGP post-processes each in turn;
    () for one window). A step that changes the frame count returns the windows' new counts."""

    frames: np.ndarray
    fps: int | None
    seed: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    windows: tuple[int, ...] = ()

    def with_frames(self, frames: np.ndarray, **metadata: Any) -> Clip:
        """The same clip with other frames, and `metadata` added to what it records."""
        return replace(self, frames=frames, metadata={**self.metadata, **metadata})


@runtime_checkable
class PostProcessor(Protocol):
    """A step run on a rendered output before it is encoded.

    `keys` are the settings keys it honours (WanGP's, or its own new ones); `order` places it
    among the others (WanGP's order: temporal 10, spatial 20, grain 30; others 50).
    """

    name: str
    keys: tuple[str, ...]
    order: int

    def wanted(self, settings: Mapping[str, Any]) -> bool:
        """Whether these settings ask for it (a key of it at a value that does something)."""
        ...

    def problems(self, settings: Mapping[str, Any], video: bool) -> list[str]:
        """One "key: rule" line per value it cannot honour for this output (video or image)."""
        ...

    def apply(self, clip: Clip, settings: Mapping[str, Any]) -> Clip:
        """The clip post-processed; frames, fps and metadata may all change."""
        ...


@runtime_checkable
class ModelFamily(Protocol):
    """A model family a package adds: its catalogue presets (models/presets' JSON format)."""

    name: str
    presets: Path


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as `wanfarm models` and an agent's inventory show it."""

    name: str
    group: PluginGroup
    distribution: str  # the pip package that registers it
    version: str
    keys: tuple[str, ...] = ()  # the settings keys a post-processor honours

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@dataclass(frozen=True)
class Wanted:
    """What a settings object asks of the post-processors: their names in the order they run,
    the keys they handle, and a "key: reason" line for each one asked for but not installed."""

    names: tuple[str, ...] = ()
    keys: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Known:
    """A WanGP post-processing key: what it does, and for the methods of WanGP's own handlers (the
    start of the value: "rife" of "rife2"), the plugin that would honour each and why it is absent."""

    what: str
    plugins: Mapping[str, tuple[str, str]]  # method -> (plugin, why it is not here)

    def refusal(self, key: str, value: object) -> str:
        text = str(value)
        methods = sorted((m for m in self.plugins if text.startswith(m)), key=len, reverse=True)
        plugin, why = self.plugins[methods[0]] if methods else ("", "")
        # Worded as every refusal of a key WanFarm cannot honour: "is not supported by WanFarm yet".
        head = f"{key}: {value!r} is not supported by WanFarm yet: {self.what}"
        if not plugin:
            return f"{head}; no installed post-processor honours it; {_ACCEPTED}"
        return f"{head}; it needs the post-processor {plugin!r}, which is not installed: {why}; {_ACCEPTED}"


_ACCEPTED = "accepted: empty, or a value an installed post-processor honours (`wanfarm models`)"
_NO_AUDIO = "WanGP's audio processors are not in WanFarm"
_NO_UPSCALER = "this upscaler network is not in WanFarm"
# WanGP 8681e9f7: postprocessing/temporal_upsamplers.py and rife/ ("rife2", "rife4": frames and
# fps x2 or x4 with the rife4.26 network), spatial_upsamplers.py and its handlers (the method,
# then the factor: "flashvsr2", "coz4", "vae2"), audio_processors.py (postprocess_audio's methods).
KNOWN_KEYS: dict[str, _Known] = {
    "temporal_upsampling": _Known(
        "interpolates frames after rendering ('rife2': a frame between each two, fps x2; 'rife4': three, x4)",
        {"rife": ("rife", "it ships with WanFarm; reinstall WanFarm to register it")},
    ),
    "spatial_upsampling": _Known(
        "upscales the output after rendering",
        {
            "lanczos": ("lanczos", "WanGP's Lanczos factors are 'lanczos1.5' and 'lanczos2'"),
            "flashvsr": ("flashvsr", _NO_UPSCALER),
            "seedvr2": ("seedvr2", _NO_UPSCALER),
            "pid": ("pid", _NO_UPSCALER),
            "coz": ("chain_of_zoom", _NO_UPSCALER),
            "ltx23": ("ltx2_upsampler", "LTX-2's pixel upscaler is not in WanFarm yet"),
            "ltx25": ("ltx2_upsampler", "LTX-2's pixel upscaler is not in WanFarm yet"),
            "vae": ("vae_upsampler", "decoding with the model's own upscaling VAE is not in WanFarm yet"),
        },
    ),
    "postprocess_audio": _Known(
        "generates or processes a soundtrack after rendering",
        {
            "mmaudio": ("mmaudio", "MMAudio is not on this stack: diffusers 0.42 has no MMAudio pipeline"),
            "prismaudio": ("prismaudio", _NO_AUDIO),
            "custom": ("custom_soundtrack", _NO_AUDIO),
            "remove_background": ("audio_background_removal", _NO_AUDIO),
            "seedvc_one_speaker": ("seedvc", _NO_AUDIO),
            "seedvc_two_speakers": ("seedvc", _NO_AUDIO),
        },
    ),
}


_BROKEN: set[str] = set()
_READ_AT = [time.monotonic()]  # when the environment was last read


def refresh() -> None:
    """Read the installed plugins again (after a pip install or uninstall in this process)."""
    _READ_AT[0] = time.monotonic()
    importlib.invalidate_caches()  # a package installed since this process started must import
    _BROKEN.clear()
    _entry_points.cache_clear()
    _postprocessors.cache_clear()
    _families.cache_clear()


def refresh_stale(max_age_s: float) -> None:
    """`refresh()` when the environment was read more than `max_age_s` ago (reading it costs about
    20 ms, too much for every inventory an agent reports)."""
    if time.monotonic() - _READ_AT[0] > max_age_s:
        refresh()


def installed() -> tuple[PluginInfo, ...]:
    """Every installed plugin, post-processors first, each group by name."""
    infos = [_info(entry, p.name, PluginGroup.POSTPROCESSORS, p.keys) for entry, p in _postprocessors()]
    infos += [_info(entry, f.name, PluginGroup.MODEL_FAMILIES, ()) for entry, f in _families()]
    return tuple(infos)


def broken() -> tuple[str, ...]:
    """One line per entry point that did not load (its package is broken), for `wanfarm models`."""
    _postprocessors()  # loading both groups is what records the broken entry points
    _families()
    return tuple(sorted(_BROKEN))


def postprocessors() -> dict[str, PostProcessor]:
    """The installed post-processors by name, in the order they run."""
    found = sorted((p for _, p in _postprocessors()), key=lambda p: (p.order, p.name))
    return {p.name: p for p in found}


def model_families() -> dict[str, ModelFamily]:
    """The installed model families by name."""
    return {family.name: family for _, family in _families()}


def non_builtin(names: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """The plugins among `names` that do not ship with WanFarm: an agent must have them installed."""
    builtin = {info.name for info in installed() if info.builtin}
    return frozenset(name for name in names if name not in builtin)


def wanted(settings: Mapping[str, Any], video: bool) -> Wanted:
    """The post-processors `settings` ask for, and a refusal per key that no installed one honours
    (naming the plugin that would)."""
    found = postprocessors()
    names = [p.name for p in found.values() if p.wanted(settings)]
    problems = [line for name in names for line in found[name].problems(settings, video)]
    honoured = {key for name in names for key in found[name].keys}
    for key, known in KNOWN_KEYS.items():
        value = settings.get(key)
        if key in honoured or not _asks(value):
            continue
        problems.append(known.refusal(key, value))
    keys = frozenset(key for p in found.values() for key in p.keys) | KNOWN_KEYS.keys()
    return Wanted(tuple(names), frozenset(keys), tuple(problems))


def first_keys(names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, its first settings key) of each installed post-processor among `names`."""
    found = postprocessors()
    return [(name, found[name].keys[0]) for name in names if name in found and found[name].keys]


def run(names: tuple[str, ...], clip: Clip, settings: Mapping[str, Any]) -> Clip:
    """`clip` through the post-processors `names`, in turn; one not installed here is an error
    (the scheduler places a job only where its plugins are)."""
    found = postprocessors()
    for name in names:
        if name not in found:
            raise RuntimeError(f"post-processor {name!r} is not installed on this node")
        clip = found[name].apply(clip, settings)
    return clip


def _asks(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return value not in (None, 0, False, [], {})


def _info(entry: metadata.EntryPoint, name: str, group: PluginGroup, keys: tuple[str, ...]) -> PluginInfo:
    dist = entry.dist
    package = dist.metadata["Name"] if dist is not None else "?"
    version = dist.version if dist is not None else "?"
    return PluginInfo(name, group, package or "?", version, tuple(keys))


@cache
def _entry_points(group: PluginGroup) -> tuple[metadata.EntryPoint, ...]:
    # One entry per name: an editable install and a built one may both list the same package.
    unique = {entry.name: entry for entry in metadata.entry_points(group=group.value)}
    return tuple(unique[name] for name in sorted(unique))


@cache
def _postprocessors() -> tuple[tuple[metadata.EntryPoint, PostProcessor], ...]:
    return tuple(
        (entry, processor)
        for entry in _entry_points(PluginGroup.POSTPROCESSORS)
        if isinstance(processor := _load(entry), PostProcessor)
    )


@cache
def _families() -> tuple[tuple[metadata.EntryPoint, ModelFamily], ...]:
    return tuple(
        (entry, family)
        for entry in _entry_points(PluginGroup.MODEL_FAMILIES)
        if isinstance(family := _load(entry), ModelFamily)
    )


def _load(entry: metadata.EntryPoint) -> object:
    # An entry point names a class (built with no arguments) or a ready instance. A package that
    # fails to load is reported, not fatal: the farm runs on without it.
    try:
        loaded = entry.load()
        return loaded() if isinstance(loaded, type) else loaded
    except Exception as error:
        _BROKEN.add(f"{entry.group} {entry.name} ({entry.value}): {type(error).__name__}: {error}")
        return None
