"""Importing mmgp safely: it swaps `safe_open` in safetensors, accelerate and transformers.

transformers 5 calls `safe_open(..., backend="mmap")`, which mmgp's replacement does not accept,
so every later `from_pretrained` of a text encoder would fail. After importing mmgp we wrap the
replacement in transformers so the argument is dropped (mmgp reads the file its own way anyway).
Import mmgp only through here, and only on the CUDA path.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def import_offload() -> ModuleType:
    """mmgp.offload, with transformers' loading repaired."""
    from mmgp import offload

    _drop_backend_argument()
    return offload


def _drop_backend_argument() -> None:
    import transformers.modeling_utils as modeling_utils

    current: Any = modeling_utils.safe_open
    if getattr(current, "_drops_backend", False):
        return

    def safe_open(*args: Any, backend: str | None = None, **kwargs: Any) -> Any:
        return current(*args, **kwargs)

    safe_open._drops_backend = True  # type: ignore[attr-defined]
    setattr(modeling_utils, "safe_open", safe_open)  # noqa: B010 (mypy sees a class here)
