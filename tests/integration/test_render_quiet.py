"""`wanfarm render` shows the job's own progress and result, and none of the libraries' noise: no
torchvision warning from transformers, no "Writing model shards" bars while a tiny model is built."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

NOISE = ("requires torchvision", "Writing model shards", "it/s]")
# flux-tiny: its pipeline imports CLIP and Siglip image processors, which warn without torchvision.
LIGHTHOUSE = {"model_type": "flux-tiny", "prompt": "a lighthouse", "resolution": "64x64", "seed": 1}


def test_rendering_a_tiny_model_from_an_empty_cache_prints_only_the_jobs_progress(tmp_path: Path) -> None:
    settings = tmp_path / "lighthouse.json"
    settings.write_text(json.dumps(LIGHTHOUSE | {"num_inference_steps": 2}))
    args = [settings, "--out", tmp_path / "out", "--cache", tmp_path / "cache"]
    command = [sys.executable, "-m", "controller.cli", "render", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[1/1] flux-tiny  fetching" in done.stderr and "[1/1] flux-tiny  done" in done.stderr
    assert "1 of 1 job(s) rendered" in done.stdout
    noise = [line for line in done.stderr.splitlines() if any(mark in line for mark in NOISE)]
    assert noise == []


def test_a_verbosity_the_user_sets_for_a_library_is_kept() -> None:
    probe = (
        "from models.hf_logging import quiet_hf_libraries; quiet_hf_libraries(); "
        "import diffusers.utils.logging as d, transformers.utils.logging as t; "
        "print(t.get_verbosity(), d.get_verbosity())"
    )
    env = os.environ | {"TRANSFORMERS_VERBOSITY": "info"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == [str(logging.INFO), str(logging.ERROR)]
