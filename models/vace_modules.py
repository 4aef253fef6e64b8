"""WanGP's VACE modules: which merged modules a VACE definition may name, and over which weights.

WanGP ships VACE as a module (the VACE context blocks, `vace_blocks.N.*` and
`vace_patch_embedding.*`) that it merges at load into a text-to-video transformer: a VACE
definition says `"URLs": "t2v"` and `"modules": [[<module files>]]` (or the model type whose
module list it takes, `"modules": ["vace_14B"]`). VACE trains its context blocks over a frozen
backbone, so Wan 2.1 T2V plus the module is the Wan 2.1 VACE checkpoint that Wan-AI's diffusers
repos hold: such a definition renders the catalogue's VACE model. The same module over other
weights (a finetune's file, Wan 2.2's two experts) is loaded as WanGP loads it: the definition's
transformer files with the module's blocks merged into each (models.single_file), over the
folder of the catalogue's VACE model of that architecture (its config, text encoder and VAE).
Read from Wan2GP 8681e9f7: wgp.py (get_model_recursive_prop, get_model_filename, load_models: a
module named by model type is that definition's one-entry module list; a module, submodel 0, is
merged into every transformer), models/wan/any2video.py (the shared modules of two experts),
models/wan/wan_handler.py (test_vace, the VACE base types), models/wan/configs/vace_14B*.json and
the defaults/vace_*.json definitions. Pure: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

# A VACE architecture -> the model type of the backbone its module was made for (the backbone the
# catalogue's VACE repo holds); None: the catalogue's model of that architecture has weights of
# its own (Wan 2.2 VACE Fun's two experts, the tiny VACE), VACE blocks included.
VACE_BACKBONES: dict[str, str | None] = {
    "vace_1.3B": "t2v_1.3B",
    "vace_14B": "t2v",
    "vace_14B_2_2": None,
    "wan-vace-tiny": None,
}
# Each VACE architecture's module: the definition whose `modules` list it is (others name it by
# that model type), and the size its file names carry (WanGP's wan2.1_Vace_1_3B_module...).
_MODULES = {
    "vace_1.3B": ("vace_1.3B", "1_3b"),
    "vace_14B": ("vace_14B", "14b"),
    "vace_14B_2_2": ("vace_14B", "14b"),
    "wan-vace-tiny": ("wan-vace-tiny", "tiny"),
}


def is_vace_module(name: str, architecture: str) -> bool:
    """A module entry (a file name, or a model type whose modules it takes) that is the VACE
    module of `architecture`'s size."""
    if architecture not in _MODULES:
        return False
    model_type, size = _MODULES[architecture]
    lowered = name.lower()
    return name == model_type or ("vace" in lowered and "module" in lowered and size in lowered)


def module_problem(
    architecture: str,
    modules: Sequence[str],
    weights_of: str,
    module_files: Sequence[Sequence[str]] | None = None,
) -> str:
    """Why a definition of `architecture` with these merged `modules` over the weights of the
    model type `weights_of` ("" when it names files) cannot be served; "" when it has no module,
    or only its VACE module. `module_files`: each module's files (its precisions), () for one
    named by a model type that was not found; None: not known here (the names are judged alone)."""
    backbone = VACE_BACKBONES.get(architecture)
    if not modules:
        # The backbone's files alone would render the VACE model's folder: without its VACE blocks
        # WanGP's load would fail, so no such definition is a model.
        if backbone is not None and weights_of == backbone:
            return f"{architecture} over the weights of {backbone!r} needs the VACE module; it names none"
        return ""
    foreign = [name for name in modules if not is_vace_module(name, architecture)]
    if foreign:
        return f"modules merged into the model are not supported yet: {', '.join(foreign)}"
    if backbone is not None and weights_of == backbone:
        return ""
    if backbone is not None and weights_of in VACE_BACKBONES.values():
        # The module's blocks are sized for its own backbone: another size's weights cannot take it.
        return f"the VACE module of {architecture} is made for {backbone!r}; {weights_of!r} is another size"
    if module_files is not None:
        unknown = [name for name, files in zip(modules, module_files, strict=True) if not files]
        if unknown:
            return (
                f"the VACE module ({', '.join(unknown)}): the files of a definition not given cannot be found"
            )
    return ""


def blocks_twice_problem(architecture: str, own_files: Sequence[bool]) -> str:
    """Why the VACE module cannot go over weights whose transformers are not all the definition's
    own files (`own_files`: per transformer, whether its file is the definition's own): "" when
    every one is, or (a VACE model made of backbone plus module) none is, the folder then holding
    both. A VACE model with weights of its own holds VACE blocks already: a module over them
    would be merged twice."""
    if all(own_files):
        return ""
    backbone = VACE_BACKBONES.get(architecture)
    if backbone is not None and not any(own_files):
        return ""
    if backbone is None:
        return (
            f"the VACE module over the files of {architecture}'s own VACE model, which hold VACE "
            "blocks already, is not supported: name text-to-video files in URLs (and URLs2)"
        )
    return "the VACE module over one transformer's own file and another's folder weights is not supported"
