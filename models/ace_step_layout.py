"""WanGP's ACE-Step 1.5 transformer files in the original release's layout, read as diffusers'.

A file (ace_step_v1_5_transformer_bf16.safetensors and the XL one, Wan2GP 8681e9f7) holds the
whole AceStepConditionGenerationModel of models/TTS/ace_step15/models/modeling_acestep_v15_turbo.py:
its DiT under `decoder.`, its condition encoder under `encoder.`, the learned `null_condition_emb`,
and the LM path's audio tokenizer and detokenizer. Diffusers' AceStepPipeline splits the first
three into `transformer` and `condition_encoder` (which also holds the silence latent, a file of its
own in WanGP) with its attention names; the audio codes' modules are not read without the LM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TRANSFORMER = "transformer"
CONDITION_ENCODER = "condition_encoder"
# The LM path's modules (audio codes), which the DiT-only render does not read.
UNREAD = ("tokenizer.", "detokenizer.")
# Original attention names and diffusers' (in both the DiT and the condition encoder).
_ATTENTION = (
    (".q_proj.", ".to_q."),
    (".k_proj.", ".to_k."),
    (".v_proj.", ".to_v."),
    (".o_proj.", ".to_out.0."),
    (".q_norm.", ".norm_q."),
    (".k_norm.", ".norm_k."),
)
# The DiT's patch convolutions sit in nn.Sequential wrappers in the original model.
_PATCHES = (("proj_in.1.", "proj_in_conv."), ("proj_out.1.", "proj_out_conv."))


class LayoutError(ValueError):
    """A file that is not an ACE-Step 1.5 transformer in the original layout."""


def diffusers_states(original: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The transformer's and the condition encoder's state dicts (by component name) from a file's
    tensors in the original layout; LayoutError naming keys that belong to neither."""
    states: dict[str, dict[str, Any]] = {TRANSFORMER: {}, CONDITION_ENCODER: {}}
    strange = []
    for key, tensor in original.items():
        if key.startswith(UNREAD):
            continue
        if key == "null_condition_emb":
            states[CONDITION_ENCODER][key] = tensor
        elif key.startswith("decoder."):
            states[TRANSFORMER][diffusers_name(key.removeprefix("decoder."))] = tensor
        elif key.startswith("encoder."):
            states[CONDITION_ENCODER][diffusers_name(key.removeprefix("encoder."))] = tensor
        else:
            strange.append(key)
    if strange or not states[TRANSFORMER]:
        shown = ", ".join(strange[:3]) or "no decoder.* keys"
        raise LayoutError(f"not an ACE-Step 1.5 transformer in WanGP's layout: {shown}")
    return states


def diffusers_name(key: str) -> str:
    """Diffusers' name of a key of the original DiT or condition encoder (without its prefix)."""
    for original, renamed in _PATCHES:
        if key.startswith(original):
            return renamed + key.removeprefix(original)
    for original, renamed in _ATTENTION:
        key = key.replace(original, renamed)
    return key


def load_into(pipe: Any, path: str) -> None:
    """Load a WanGP ACE-Step 1.5 transformer file (original layout) into `pipe`'s transformer and
    condition encoder, in place; the silence latent stays the pipeline's (WanGP's is a file of its
    own). LayoutError naming the tensors a file lacks or adds."""
    from safetensors.torch import load_file

    for component, state in diffusers_states(load_file(path)).items():
        module = getattr(pipe, component)
        missing, unexpected = module.load_state_dict(state, strict=False)
        missing = [key for key in missing if key != "silence_latent"]
        if missing or unexpected:
            shown = ", ".join([*missing, *unexpected][:3])
            raise LayoutError(f"{path} does not fit {component} of {type(pipe).__name__}: {shown}")
