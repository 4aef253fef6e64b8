"""models.ltx2_connectors' names against WanGP's own connector module (deepbeepmeep/Wan2GP@8681e9f7,
models/ltx2/ltx_core/text_encoders/gemma/embeddings_connector.py, read at test time from a git clone
of WanGP named by $WANFARM_WANGP_GIT, never copied; skipped without one): a connectors file written
in the layout this farm reads, with the 19B's learnable registers, loads strictly into WanGP's
video and audio Embeddings1DConnector once WanGP's key ops strip their prefixes, tensor for tensor."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
from safetensors.torch import load_file

from models.ltx2_connectors import diffusers_names
from models.tiny import seeded
from models.tiny_ltx2 import write_ltx2_connectors_file

MIRROR = Path(os.environ.get("WANFARM_WANGP_GIT", "/nonexistent"))
COMMIT = "8681e9f777f9f847f74a0bdefd13d5b9a6efe12d"
PACKAGE = "wangp_ltx_core"  # WanGP's ltx_core, under a name of its own beside this farm's `models`
# The packages whose __init__ would import far more than the connector needs (Gemma, einops).
_BARE_PACKAGES = ("", ".model", ".model.transformer", ".text_encoders", ".text_encoders.gemma")
HEADS, HEAD_DIM, LAYERS = 2, 8, 2

pytestmark = pytest.mark.skipif(
    not MIRROR.is_dir(), reason="no git clone of WanGP named by $WANFARM_WANGP_GIT"
)


@pytest.fixture
def wangp_connector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """WanGP's embeddings_connector module, imported from the clone at COMMIT."""
    archive = subprocess.run(
        ["git", "-C", str(MIRROR), "archive", COMMIT, "models/ltx2/ltx_core"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    root = tmp_path / PACKAGE
    (tmp_path / "models" / "ltx2" / "ltx_core").rename(root)
    for suffix in _BARE_PACKAGES:
        package = types.ModuleType(PACKAGE + suffix)
        package.__path__ = [str(root / suffix[1:].replace(".", "/"))]
        monkeypatch.setitem(sys.modules, PACKAGE + suffix, package)
    # WanGP's attention dispatcher probes CUDA when imported; the connector's names do not need it.
    shared, attention = types.ModuleType("shared"), types.ModuleType("shared.attention")
    attention.pay_attention = None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shared", shared)
    monkeypatch.setitem(sys.modules, "shared.attention", attention)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(f"{PACKAGE}.text_encoders.gemma.embeddings_connector")
    yield module
    for name in [name for name in sys.modules if name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def test_a_connectors_file_loads_strictly_into_wangps_connectors(
    wangp_connector: Any, tmp_path: Path
) -> None:
    config = {
        "transformer": {
            "connector_num_attention_heads": HEADS,
            "connector_attention_head_dim": HEAD_DIM,
            "connector_num_layers": LAYERS,
        }
    }
    # The 19B's connectors: 128 learnable registers each (WanGP's default), no gated attention.
    wangp = {
        "video": wangp_connector.Embeddings1DConnectorConfigurator.from_config(config),
        "audio": wangp_connector.AudioEmbeddings1DConnectorConfigurator.from_config(config),
    }
    ours = seeded(
        lambda: LTX2TextConnectors(
            caption_channels=HEADS * HEAD_DIM,
            text_proj_in_factor=2,
            video_connector_num_attention_heads=HEADS,
            video_connector_attention_head_dim=HEAD_DIM,
            video_connector_num_layers=LAYERS,
            audio_connector_num_attention_heads=HEADS,
            audio_connector_attention_head_dim=HEAD_DIM,
            audio_connector_num_layers=LAYERS,
        )
    )
    written = load_file(str(write_ltx2_connectors_file(tmp_path / "connectors.safetensors", ours)))
    assert set(diffusers_names(written)) == {k for k in ours.state_dict() if not k.startswith("text_proj_in")}
    state = ours.state_dict()
    for modality, connector in wangp.items():
        # WanGP's VIDEO_/AUDIO_EMBEDDINGS_CONNECTOR_KEY_OPS after its `model.` strip.
        prefix = f"model.diffusion_model.{modality}_embeddings_connector."
        part = {key.removeprefix(prefix): tensor for key, tensor in written.items() if key.startswith(prefix)}
        connector.load_state_dict(part, strict=True)
        loaded = connector.state_dict()
        for key, original in diffusers_names(written).items():
            if original.startswith(prefix):
                theirs = loaded[original.removeprefix(prefix)]  # WanGP builds its registers in bf16
                assert torch.equal(theirs, state[key].to(theirs.dtype)), key
