"""How loud the Hugging Face libraries are in a process that builds or runs pipelines."""

from __future__ import annotations

import os


def quiet_hf_libraries() -> None:
    """Errors only from transformers and diffusers, and none of their progress bars: their warnings
    (a missing optional torchvision) and bars ("Writing model shards") say nothing a user can act on,
    and interleave with the job's own progress. A library whose TRANSFORMERS_VERBOSITY or
    DIFFUSERS_VERBOSITY is set keeps the level asked for. Process-wide and idempotent."""
    import diffusers.utils.logging
    import transformers.utils.logging

    for library, variable in (
        (diffusers.utils.logging, "DIFFUSERS_VERBOSITY"),
        (transformers.utils.logging, "TRANSFORMERS_VERBOSITY"),
    ):
        if variable not in os.environ:
            library.set_verbosity_error()
            library.disable_progress_bar()
