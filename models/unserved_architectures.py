"""Why a WanGP architecture the farm has no pipeline for is refused, where more can be said than
"not supported yet": the architecture, and what WanGP does for it that the farm cannot (read in
Wan2GP 8681e9f7). Pure data, read by models.wangp_definitions.decide."""

from __future__ import annotations

# WanGP architecture -> what stands in the way, in words a refusal carries.
WHY: dict[str, str] = {
    # wgp.py generate_video: "B" in video_prompt_type runs extract_faces_from_video_with_mask (its
    # FaceProcessor, a face detector's crops at 512x512) and "P" its DWPose pose extraction over the
    # control video; every choice of models/wan/wan_handler.py's guide_custom_choices for animate
    # holds both, and any2video.py reads the face crops unconditionally. diffusers'
    # WanAnimatePipeline takes the pose and face videos already extracted.
    "animate": (
        "Wan Animate: WanGP extracts the pose video (DWPose) and the face crops (its face detector) "
        "from the control video (video_prompt_type P and B); diffusers' WanAnimatePipeline takes both "
        "already extracted, and the farm has neither detector yet"
    ),
    # models/wan/animate2.py: the I2V network attends the driving video's latents as extra reference
    # keys and values, the first generated frame's partition reweighted by animate2_log_scale
    # (defaults/animate2_distilled.json: -1.3; animate2.json: 0, none). diffusers 0.42.1 has the
    # network (WanAnimate2Transformer3DModel) behind a modular pipeline only, without that weight.
    "animate2": (
        "Wan Animate 2: diffusers has it only as a modular pipeline (WanAnimate2ModularPipeline), which "
        "the farm's pipeline host does not run yet, and without WanGP's reweighting of the first "
        "generated frame's reference attention (animate2_log_scale, -1.3 on the distilled model)"
    ),
    # models/qwen/qwen_main.py and pipeline_qwenimage.py: batch_size is the number of layers, all
    # denoised in one call at the canvas size (sigmas linspace(1, 1/steps), mu from every layer's
    # tokens) beside the control image, each decoded to RGBA by its 4-channel VAE; diffusers'
    # QwenImageLayeredPipeline denoises one more slot (the composite, dropped at decode), sizes the
    # output by a 640 or 1024 bucket and shifts by the image's tokens alone.
    "qwen_image_layered_20B": (
        "Qwen-Image-Layered: WanGP decomposes the control image into batch_size RGBA layers at the "
        "canvas size with its own schedule (models/qwen/pipeline_qwenimage.py); diffusers' "
        "QwenImageLayeredPipeline denoises an extra composite slot at a 640/1024 bucket with another "
        "shift, and the farm writes no RGBA layer sets yet"
    ),
    # models/ideogram4/ideogram4_handler.py: TurboTime runs the conditional transformer alone (no
    # CFG, guidance_phases 0) with its built-in LoRA ideogram_4_turbotime_v1 merged.
    "ideogram4_turbotime": (
        "Ideogram 4 TurboTime: the conditional transformer alone with WanGP's TurboTime LoRA "
        "(ideogram_4_turbotime_v1) merged, which the farm has no loader for on diffusers' Ideogram 4 "
        "transformer yet (and Ideogram4Pipeline always runs the unconditional one)"
    ),
}


def why_not(architecture: str) -> str:
    """The refusal of a definition on `architecture`, which the farm has no pipeline for."""
    why = WHY.get(architecture)
    return f"architecture {architecture!r} is not supported yet" + (f": {why}" if why else "")
