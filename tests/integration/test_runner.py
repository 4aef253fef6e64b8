"""The pipeline host: hot reuse, progress, cancel, and loading after mmgp is imported."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from gpu_agent.render import render_job
from models import attention
from models.attention import AttentionMode, AttentionUnavailable, choose
from models.catalogue import get_model
from models.progress import Cancelled, Phase, Progress
from models.runner import PipelineHost
from models.settings import Job, parse_settings, resolve
from models.weights import WeightCache


def _job(tmp_path: Path, **changes: object) -> Job:
    settings = {"model_type": "wan-tiny", "prompt": "a fox", "video_length": 5, "seed": 3} | changes
    return resolve(parse_settings(settings), tmp_path)


def test_two_jobs_of_the_same_model_load_the_pipeline_once(tmp_path: Path, weight_cache: WeightCache) -> None:
    host = PipelineHost(weight_cache)
    first = render_job(host, _job(tmp_path), tmp_path / "out", "first")
    second = render_job(host, _job(tmp_path, seed=4), tmp_path / "out", "second")
    assert host.loads == 1 and host.hot_model == "wan-tiny"
    assert first[0].run.loaded and not second[0].run.loaded


def test_a_run_says_where_its_weights_came_from(tmp_path: Path) -> None:
    cache = WeightCache(tmp_path / "cache")
    host = PipelineHost(cache)
    [fetched] = render_job(host, _job(tmp_path), tmp_path / "out", "fetched")
    [hot] = render_job(host, _job(tmp_path, seed=4), tmp_path / "out", "hot")
    [disk] = render_job(PipelineHost(cache), _job(tmp_path), tmp_path / "out", "disk")
    assert (fetched.run.weights_source, hot.run.weights_source, disk.run.weights_source) == (
        "download",
        "hot",
        "disk",
    )
    assert 0 < fetched.run.bytes_fetched <= cache.cached_bytes()  # the folder adds its record file
    assert hot.run.bytes_fetched == disk.run.bytes_fetched == 0


def test_another_model_replaces_the_hot_one(tmp_path: Path, weight_cache: WeightCache) -> None:
    host = PipelineHost(weight_cache)
    render_job(host, _job(tmp_path), tmp_path / "out", "wan")
    flux = resolve(parse_settings({"model_type": "flux-tiny", "prompt": "x", "seed": 1}), tmp_path)
    render_job(host, flux, tmp_path / "out", "flux")
    assert host.loads == 2 and host.hot_model == "flux-tiny"


def test_progress_reports_every_step_then_decode_and_done(tmp_path: Path, weight_cache: WeightCache) -> None:
    seen: list[Progress] = []
    render_job(
        PipelineHost(weight_cache),
        _job(tmp_path, num_inference_steps=3),
        tmp_path / "out",
        "p",
        on_progress=seen.append,
    )
    steps = [(p.step, p.total) for p in seen if p.phase is Phase.DENOISING]
    assert steps == [(0, 3), (1, 3), (2, 3)]
    phases = [p.phase for p in seen]
    assert phases.index(Phase.DECODING) < phases.index(Phase.ENCODING) < phases.index(Phase.DONE)


def test_a_callback_cancels_between_steps_and_nothing_is_written(
    tmp_path: Path, weight_cache: WeightCache
) -> None:
    steps: list[int] = []

    def cancel_at_step_2(progress: Progress) -> None:
        if progress.phase is Phase.DENOISING:
            steps.append(progress.step)
            if progress.step == 2:
                raise Cancelled("user asked")

    with pytest.raises(Cancelled):
        render_job(
            PipelineHost(weight_cache),
            _job(tmp_path, num_inference_steps=6),
            tmp_path / "out",
            "c",
            on_progress=cancel_at_step_2,
        )
    assert steps == [0, 1, 2]
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_cpu_runs_sdpa_and_refuses_gpu_only_kernels() -> None:
    assert choose(AttentionMode.AUTO, None) is AttentionMode.SDPA
    with pytest.raises(AttentionUnavailable, match="sage2"):
        choose(AttentionMode.SAGE2, None)


@pytest.mark.parametrize(
    "settings",
    [
        {"model_type": "wan-tiny", "video_length": 5},
        {"model_type": "ltx-tiny", "video_length": 9},
        {"model_type": "flux-tiny"},
        {"model_type": "qwen-image-tiny"},
    ],
    ids=lambda settings: settings["model_type"],
)
def test_the_attention_kernel_that_ran_is_counted_for_every_kind_of_model(
    tmp_path: Path, weight_cache: WeightCache, settings: dict[str, object]
) -> None:
    job = resolve(parse_settings({"prompt": "a fox", "seed": 3} | settings), tmp_path)
    [output] = render_job(PipelineHost(weight_cache), job, tmp_path / "out", "a")
    # "sdpa" only when diffusers' native backend was really called: nothing counted reads "none".
    assert output.run.attention == "sdpa" and output.run.device == "cpu"


def test_attention_that_nothing_counted_is_recorded_as_none_not_as_a_default(
    tmp_path: Path, weight_cache: WeightCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextmanager
    def counts_nothing() -> Iterator[Counter[str]]:
        yield Counter()

    monkeypatch.setattr(attention, "record_backends", counts_nothing)
    [output] = render_job(PipelineHost(weight_cache), _job(tmp_path), tmp_path / "out", "a")
    assert output.run.attention == "none"


def test_weights_are_cached_once_and_complete(weight_cache: WeightCache) -> None:
    preset = get_model("wan-tiny")
    folder = weight_cache.ensure(preset)
    assert weight_cache.is_cached(preset) and "wan-tiny" in weight_cache.cached_ids()
    assert (folder / "model_index.json").is_file()
    assert not list(weight_cache.root.glob(".partial-*"))


def test_a_real_model_without_hub_access_fails_clearly_and_caches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from models.weights import WeightsUnavailable

    # huggingface_hub reads $HF_HUB_OFFLINE once, at import: offline mode is its constant.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    connects = refuse_connections(monkeypatch)
    cache = WeightCache(tmp_path / "cache")
    preset = get_model("t2v_1.3B")
    with pytest.raises(
        WeightsUnavailable, match=f"could not fetch {re.escape(preset.id)} from the Hugging Face hub"
    ) as refused:
        cache.ensure(preset)
    assert "offline" in str(refused.value).lower() and connects == []
    assert cache.cached_ids() == [] and not list(cache.root.glob(".partial-*"))


def refuse_connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make every outgoing socket connection fail; the list collects the addresses tried."""
    tried: list[object] = []

    def refuse(address: object) -> NoReturn:
        tried.append(address)
        raise OSError(f"test: no network ({address})")

    # Name lookups too: a client resolves the hub's host before it connects.
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *args, **kwargs: refuse((host, port)))
    monkeypatch.setattr(socket.socket, "connect", lambda _socket, address: refuse(address))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda _socket, address: refuse(address))
    return tried


LOAD_AFTER_MMGP = """
import sys, diffusers
from pathlib import Path
{prelude}
pipe = diffusers.WanPipeline.from_pretrained(Path(sys.argv[1]))
print("loaded", type(pipe.text_encoder).__name__)
"""


def test_loading_still_works_after_mmgp_is_imported(weight_cache: WeightCache) -> None:
    folder = str(weight_cache.ensure(get_model("wan-tiny")))
    repaired = LOAD_AFTER_MMGP.format(
        prelude="from models.mmgp_compat import import_offload; import_offload()"
    )
    result = subprocess.run([sys.executable, "-c", repaired, folder], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded UMT5EncoderModel" in result.stdout
    # Without the repair the same load fails: the pitfall the wrapper exists for.
    raw = LOAD_AFTER_MMGP.format(prelude="from mmgp import offload")
    broken = subprocess.run([sys.executable, "-c", raw, folder], capture_output=True, text=True)
    assert broken.returncode != 0 and "backend" in broken.stderr


LOAD_VAE_AFTER_MMGP = """
import sys, diffusers
from models.mmgp_compat import import_offload
import_offload()
vae = diffusers.AutoencoderKLFlux2.from_pretrained(sys.argv[1], subfolder="vae")
print("batches tracked", tuple(vae.bn.num_batches_tracked.shape))
"""


def test_a_zero_dimensional_tensor_loads_as_one_after_mmgp_is_imported(weight_cache: WeightCache) -> None:
    # mmgp's own reader loads it as shape (1,): the FLUX.2 VAE's BatchNorm then refuses to load.
    folder = str(weight_cache.ensure(get_model("flux2-klein-tiny")))
    result = subprocess.run(
        [sys.executable, "-c", LOAD_VAE_AFTER_MMGP, folder], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "batches tracked ()" in result.stdout
