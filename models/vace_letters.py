"""Which of WanGP's `video_prompt_type` letters WanFarm renders on a VACE model, as a pure rule (the
settings' key table reads it; models.vace feeds the files to the pipeline).

WanGP (wgp.py at Wan2GP 8681e9f7: generate_media, preprocess_video_with_mask,
process_map_video_guide; models/wan/wan_handler.py, the VACE choices): V uses the control video
(`video_guide`) raw, A its mask (`video_mask`), I reference images (`image_refs`), whose
backgrounds WanGP removes with a segmentation model unless remove_background_images_ref is 0.
Every other letter asks for a preprocessor (pose, depth, flow, scribble, grey), flat-colour
inpainting, an inverted or processed-outside mask, outpainting, landscape or positioned frames,
or denoising strength: none of them is rendered here.
"""

from __future__ import annotations

from collections.abc import Callable

# Each letter WanFarm renders and the guide file it reads.
RENDERED = {"V": "video_guide", "A": "video_mask", "I": "image_refs"}
BACKGROUND_KEY = "remove_background_images_ref"
WORDS = (
    "on VACE letters of V (a raw control video, video_guide), A (its mask, video_mask) and I "
    f"(reference images, image_refs, with {BACKGROUND_KEY} 0), each with its file and each file "
    "with its letter"
)


def letters_as_rendered(value: object, get: Callable[[str], object]) -> bool:
    """Whether a VACE job with video_prompt_type `value` renders here as in WanGP; `get` reads
    the job's other settings at WanGP's defaults (a missing background key is WanGP's 1)."""
    letters = value if isinstance(value, str) else ""
    if value is not None and not isinstance(value, str):
        return False
    if set(letters) - set(RENDERED):
        return False
    # Without letters, the files given say which guides are used (WanGP's API adds their letters).
    used = set(letters) if letters else {letter for letter, key in RENDERED.items() if get(key)}
    if letters and any(bool(get(key)) != (letter in used) for letter, key in RENDERED.items()):
        return False
    return "I" not in used or get(BACKGROUND_KEY) in (0, False)


def implied_letters(value: object, get: Callable[[str], object]) -> str:
    """The video_prompt_type a VACE job renders with: the given letters, or those its files imply."""
    if isinstance(value, str) and value:
        return value
    return "".join(letter for letter, key in RENDERED.items() if get(key))
