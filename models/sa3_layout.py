"""Stable Audio 3's original key layout (WanGP's transformer files) and diffusers' names for it.

WanGP (deepbeepmeep/Wan2GP 8681e9f7, models/TTS/stable_audio3: loading_utils.load_diffusion_cond,
models/diffusion.py, dit.py, transformer.py, conditioners.py) loads its file into the whole
conditioned model: the DiT under `model.model.` (its ContinuousTransformer under `transformer.`),
and the conditioners' weights: the prompt's learned padding embedding and the duration
(`seconds_total`) embedder's linear layer. Its T5Gemma encoder is held outside the module tree and
its autoencoder is loaded from a file of its own over whatever the file holds. diffusers splits the
same weights into StableAudio3DiTModel (the padding embedding inside) and
StableAudio3DurationEmbedder (whose Fourier frequencies are fixed, not weights): one file holds two
of the pipeline's components, so a file loads both, never the transformer alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from models.preset import ModelPreset

DURATION = "duration_embedder"
# WanGP's name -> diffusers' name: whole-key prefixes, longest first where one extends another.
_TRANSFORMER_PREFIXES = (
    ("model.model.transformer.project_in.", "proj_in."),
    ("model.model.transformer.project_out.", "proj_out."),
    ("model.model.transformer.memory_tokens", "memory_tokens"),
    ("model.model.transformer.rotary_pos_emb.", "rotary_pos_emb."),
    ("model.model.transformer.global_cond_embedder.", "global_cond_embedder."),
    ("model.model.transformer.layers.", "transformer_blocks."),
    ("model.model.", ""),
    ("conditioner.conditioners.prompt.padding_embedding", "prompt_padding_embedding"),
)
# Inside a block: the feed-forward's GLU input and output layers.
_FEED_FORWARD = ((".ff.ff.0.proj.", ".ff.proj_in."), (".ff.ff.2.", ".ff.proj_out."))
_DURATION_PREFIX = ("conditioner.conditioners.seconds_total.embedder.embedding.1.", "linear.")
# WanGP reads the autoencoder from its own file (stable_audio3_same_*), over any copy in this one.
_AUTOENCODER = "pretransform."


class UnknownKey(KeyError):
    """A key of neither layout."""


def sa3_to_diffusers(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """WanGP's Stable Audio 3 state dict as (the DiT's, the duration embedder's) in diffusers'
    names; a key of neither is kept in the DiT's as it is (the caller's key check names it). Every
    tensor is a fresh copy: one read from a file may sit at an offset whose alignment sends the
    CPU's kernels down a path that rounds differently from the same weights loaded by
    from_pretrained."""
    transformer: dict[str, Any] = {}
    duration: dict[str, Any] = {}
    for key, tensor in state.items():
        if key.startswith(_AUTOENCODER):
            continue
        value = tensor.clone()
        if key.startswith(_DURATION_PREFIX[0]):
            duration[_DURATION_PREFIX[1] + key.removeprefix(_DURATION_PREFIX[0])] = value
            continue
        transformer[_renamed(key, _TRANSFORMER_PREFIXES, _FEED_FORWARD) or key] = value
    return transformer, duration


def sa3_to_original(transformer: dict[str, Any], duration: dict[str, Any]) -> dict[str, Any]:
    """The DiT's and the duration embedder's diffusers state dicts as one file of WanGP's layout (the
    embedder's fixed frequencies left out, as WanGP's module has none); UnknownKey for a key this
    mapping does not cover."""
    back = tuple((new, old) for old, new in _TRANSFORMER_PREFIXES if new)
    blocks = tuple((new, old) for old, new in _FEED_FORWARD)
    out = {}
    for key, value in transformer.items():
        # The DiT's embedders and convolutions keep their names under model.model.
        out[_renamed(key, back, blocks) or f"model.model.{key}"] = value
    for key, value in duration.items():
        if key.startswith(_DURATION_PREFIX[1]):
            out[_DURATION_PREFIX[0] + key.removeprefix(_DURATION_PREFIX[1])] = value
        elif key != "freqs":
            raise UnknownKey(key)
    return out


def load_sa3_pipeline(preset: ModelPreset, path: Path, dtype: torch.dtype, base: Path) -> Any:
    """The preset's StableAudio3Pipeline from the diffusers folder `base` (its configs, encoder and
    autoencoder) with its DiT and duration embedder from WanGP's file `path`; SingleFileRefused
    names the keys of a file that does not fit, and refuses an int8 quanto file."""
    import diffusers
    from diffusers.models.transformers.transformer_stable_audio3 import StableAudio3DiTModel
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
    from safetensors.torch import load_file

    from models.single_file_refused import SingleFileRefused

    state = load_file(str(path))
    if any(key.endswith(("._data", "._scale")) for key in state):
        raise SingleFileRefused(
            f"{path.name}: an int8 quanto file of Stable Audio 3, which is not supported yet"
        )
    transformer, duration = sa3_to_diffusers(state)
    parts = {
        "transformer": _built(StableAudio3DiTModel, transformer, base / "transformer", path, dtype),
        DURATION: _built(StableAudio3DurationEmbedder, duration, base / DURATION, path, dtype),
    }
    return getattr(diffusers, preset.pipeline).from_pretrained(base, **parts, dtype=dtype)


def _built(model_class: Any, state: dict[str, Any], config_dir: Path, path: Path, dtype: torch.dtype) -> Any:
    """`model_class` from the config in `config_dir` with the weights of `state`, checked key by key;
    the buffers its config computes (rotary and Fourier frequencies) are its own where `state` has
    none."""
    import json

    from accelerate import init_empty_weights

    from models.single_file_refused import SingleFileRefused

    with init_empty_weights():  # parameters without storage; buffers are computed as usual
        model = model_class.from_config(json.loads((config_dir / "config.json").read_text()))
    expected = model.state_dict()
    given = {key: value for key, value in expected.items() if key in _COMPUTED} | state
    missing = sorted(expected.keys() - given.keys())
    unknown = sorted(given.keys() - expected.keys())
    if missing or unknown:
        raise SingleFileRefused(
            f"{path.name} does not fit {model_class.__name__}: it lacks "
            f"{', '.join(missing[:8]) or 'no key'}; it has unknown {', '.join(unknown[:8]) or 'none'}"
        )
    model.load_state_dict(given, strict=True, assign=True)
    return model.to(dtype).eval()


# Buffers the classes compute from their config, which a file may leave out.
_COMPUTED = frozenset({"freqs", "rotary_pos_emb.inv_freq"})


def _renamed(
    key: str, prefixes: tuple[tuple[str, str], ...], inside: tuple[tuple[str, str], ...]
) -> str | None:
    for old, new in prefixes:
        if key.startswith(old):
            renamed = new + key.removeprefix(old)
            for block_old, block_new in inside:
                renamed = renamed.replace(block_old, block_new)
            return renamed
    return None


def sa3_transformer(state: dict[str, Any]) -> dict[str, Any]:
    """The DiT's part of sa3_to_diffusers (models.single_file's layout row; a file loads through
    load_sa3_pipeline, which keeps the duration embedder's part too)."""
    return sa3_to_diffusers(state)[0]
