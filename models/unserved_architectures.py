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
}


def why_not(architecture: str) -> str:
    """The refusal of a definition on `architecture`, which the farm has no pipeline for."""
    why = WHY.get(architecture)
    return f"architecture {architecture!r} is not supported yet" + (f": {why}" if why else "")
