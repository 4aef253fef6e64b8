"""How loud the Hugging Face libraries are in a process that builds or runs pipelines."""

from __future__ import annotations


def quiet_hf_libraries() -> None:
    """Errors only from transformers and diffusers, and none of their progress bars: their warnings
    (a missing optional torchvision) and bars ("Writing model shards") say nothing a user can act on,
    and interleave with the job's own progress. Process-wide and idempotent."""
    import diffusers.utils.logging
    import transformers.utils.logging

    for library in (diffusers.utils.logging, transformers.utils.logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
