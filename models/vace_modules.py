"""WanGP's VACE modules: which merged modules a VACE definition may name, and over which weights.

WanGP ships VACE as a module (the VACE context blocks, `vace_blocks.N.*` and
`vace_patch_embedding.*`) that it merges at load into a text-to-video transformer: a VACE
definition says `"URLs": "t2v"` and `"modules": [[<module files>]]` (or the model type whose
module list it takes, `"modules": ["vace_14B"]`). VACE trains its context blocks over a frozen
backbone, so Wan 2.1 T2V plus the module is the Wan 2.1 VACE checkpoint that Wan-AI's diffusers
repos hold: such a definition renders the catalogue's VACE model. The same module over other
weights (a finetune's file, Wan 2.2's experts) is another model, refused by name until a module
loads over a single file. Read from Wan2GP 8681e9f7: wgp.py (get_model_recursive_prop,
load_models: a module is merged into every transformer, submodel 0), models/wan/wan_handler.py
(test_vace, the VACE base types) and the defaults/vace_*.json definitions. Pure: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

# A VACE architecture -> the model type of the backbone its module was made for (the backbone the
# catalogue's VACE repo holds); None: the catalogue's model of that architecture has weights of
# its own (Wan 2.2 VACE Fun's two experts), so no module makes it.
VACE_BACKBONES: dict[str, str | None] = {
    "vace_1.3B": "t2v_1.3B",
    "vace_14B": "t2v",
    "vace_14B_2_2": None,
}
# Each VACE architecture's module: the definition whose `modules` list it is (others name it by
# that model type), and the size its file names carry (WanGP's wan2.1_Vace_1_3B_module...).
_MODULES = {
    "vace_1.3B": ("vace_1.3B", "1_3b"),
    "vace_14B": ("vace_14B", "14b"),
    "vace_14B_2_2": ("vace_14B", "14b"),
}


def is_vace_module(name: str, architecture: str) -> bool:
    """A module entry (a file name, or a model type whose modules it takes) that is the VACE
    module of `architecture`'s size."""
    if architecture not in _MODULES:
        return False
    model_type, size = _MODULES[architecture]
    lowered = name.lower()
    return name == model_type or ("vace" in lowered and "module" in lowered and size in lowered)


def module_problem(architecture: str, modules: Sequence[str], weights_of: str) -> str:
    """Why a definition of `architecture` with these merged `modules` over the weights of the
    model type `weights_of` ("" when it names files) is another model than the catalogue's; ""
    when it has no module, or only the VACE module over its own backbone."""
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
    over = f"the weights of {weights_of!r}" if weights_of else "weights of its own"
    served = (
        f"only over {backbone!r}, the weights its diffusers repo holds"
        if backbone is not None
        else f"{architecture} is served from a VACE model's own files (URLs, URLs2)"
    )
    return f"the VACE module ({', '.join(modules)}) merged over {over} is not supported yet: {served}"
