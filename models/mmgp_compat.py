"""Importing mmgp safely: on import it swaps `safe_open` and `load_file` in safetensors, accelerate
and transformers for its own readers, process-wide.

Its readers load a 0-d tensor as shape (1,) (so a BatchNorm's `num_batches_tracked` no longer
loads: the FLUX.2 VAE fails in any `from_pretrained` after the import) and refuse transformers 5's
`backend=` argument. mmgp's own loading calls its readers directly (mmgp.safetensors2), so after
importing it we give the libraries their own readers back. Import mmgp only through here, and only
where its loading or offloading is used.
"""

from __future__ import annotations

from types import ModuleType


def import_offload() -> ModuleType:
    """mmgp.offload, with the libraries' safetensors readers restored."""
    from mmgp import offload, safetensors2

    _restore_readers(safetensors2)
    return offload


def _restore_readers(swapper: ModuleType) -> None:
    import accelerate.utils.modeling as accelerate_modeling
    import safetensors
    import safetensors.torch
    import transformers.modeling_utils as transformers_modeling

    # mmgp keeps the readers it replaced.
    open_file, load_file = swapper._old_safe_open, swapper._old_torch_load_file
    safetensors.torch.load_file = load_file
    for module in (safetensors, accelerate_modeling, transformers_modeling):
        setattr(module, "safe_open", open_file)  # noqa: B010 (mypy sees a class here)
    for module in (accelerate_modeling, transformers_modeling):
        setattr(module, "safe_load_file", load_file)  # noqa: B010
