"""`wanfarm render`: validate every settings object first, then render them one by one."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from controller.cli.progress_bar import ProgressBar
from models.attention import AttentionMode, AttentionUnavailable
from models.memory import JobSize, estimate
from models.profiles import Profile
from models.settings import Job, SettingsError, parse_settings, resolve
from processing.settings_files import SettingsFileError, load_settings_files


@dataclass(frozen=True)
class PlannedJob:
    source: str
    job: Job
    loras: Mapping[str, Path] = field(default_factory=dict)  # LoRA files its queue.zip carries


def render_command(
    sources: list[Path],
    out_dir: Path,
    dry_run: bool,
    profile: Profile,
    attention_mode: AttentionMode,
    cache_dir: Path,
    lora_dir: Path | None = None,
) -> int:
    """Render (or with dry_run only check) every settings object; nothing is written if any is invalid.
    LoRAs that settings name are looked up under `lora_dir` (WanGP's loras/ layout)."""
    with tempfile.TemporaryDirectory(prefix="wanfarm-inputs-") as work:
        planned, problems = _plan(sources, Path(work))
        problems += _missing_loras(planned, lora_dir)
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            print(f"{len(problems)} problem(s); nothing rendered", file=sys.stderr)
            return EXIT_INVALID
        for item in planned:
            for warning in item.job.warnings:
                print(f"warning: {item.source}: {warning}", file=sys.stderr)
        if dry_run:
            for item in planned:
                print(_describe(item, _profile(item.job, profile)))
            print(f"{len(planned)} job(s) valid; dry run, nothing rendered")
            return EXIT_OK
        return _render_all(planned, out_dir, profile, attention_mode, cache_dir, lora_dir)


def _plan(sources: list[Path], work: Path) -> tuple[list[PlannedJob], list[str]]:
    planned: list[PlannedJob] = []
    problems: list[str] = []
    for path in sources:
        try:
            entries = load_settings_files(path, work)
        except SettingsFileError as error:
            problems.append(str(error))
            continue
        for entry in entries:
            try:
                settings = parse_settings(entry.data, entry.source)
                job = resolve(settings, entry.attachments, entry.source)
                planned.append(PlannedJob(entry.source, job, entry.loras))
            except SettingsError as error:
                problems.extend(f"{entry.source}: {p}" for p in error.problems)
    return planned, problems


def _missing_loras(planned: list[PlannedJob], lora_dir: Path | None) -> list[str]:
    """A problem for each LoRA named that is in no LoRA folder, not in its queue.zip, and no hub URL."""
    from models.loras import LoraLibrary, hub_file, lora_file_name

    library = LoraLibrary(lora_dir if lora_dir is not None and lora_dir.is_dir() else None)
    problems = []
    for item in planned:
        preset = item.job.preset
        for lora in item.job.generations[0].request.loras:
            name = lora.name
            if hub_file(name) or str(lora_file_name(name)) in item.loras or library.locate(name, preset):
                continue
            folders = ", ".join(str(folder) for folder in library.folders(preset)) or "no --lora-dir given"
            problems.append(
                f"{item.source}: activated_loras: {name!r} is found nowhere: not in the LoRA folders "
                f"({folders}), not in its queue.zip, and not a Hugging Face URL"
            )
    return problems


def _render_all(
    planned: list[PlannedJob],
    out_dir: Path,
    profile: Profile,
    attention_mode: AttentionMode,
    cache_dir: Path,
    lora_dir: Path | None,
) -> int:
    # torch and diffusers load here, once something is really rendered: a dry run stays light.
    from gpu_agent.lora_fetch import HubLoras, LoraCache, lora_cache_budget
    from gpu_agent.render import render_job, safe_stem
    from models.loras import FirstFound, LoraLibrary, NamedFiles
    from models.runner import PipelineHost
    from models.weights import WeightCache, WeightsUnavailable  # nor is the weight cache in a dry run

    if lora_dir is not None and not lora_dir.is_dir():
        print(f"error: --lora-dir: {lora_dir} is not a folder", file=sys.stderr)
        return EXIT_INVALID
    # After the folder, the LoRAs queue.zips carry, then hub URLs fetched into the cache.
    carried = NamedFiles({name: path for item in planned for name, path in item.loras.items()})
    hub = HubLoras(LoraCache(cache_dir / "loras", lora_cache_budget(None)))
    loras = LoraLibrary(lora_dir, fallback=FirstFound(carried, hub))
    try:
        host = PipelineHost(WeightCache(cache_dir), attention_mode=attention_mode, loras=loras)
    except AttentionUnavailable as error:
        print(f"error: --attention: {error}", file=sys.stderr)
        return EXIT_INVALID
    failed = 0
    for number, item in enumerate(planned, start=1):
        label = f"[{number}/{len(planned)}] {item.job.preset.id}"
        try:
            outputs = render_job(
                host,
                item.job,
                out_dir,
                safe_stem(item.source),
                _profile(item.job, profile),
                on_progress=ProgressBar(label),
            )
        except (WeightsUnavailable, RuntimeError, ValueError) as error:
            failed += 1
            print(f"failed: {item.source}: {error}", file=sys.stderr)
            continue
        for output in outputs:
            print(f"{item.source}: {output.path}  (seed {output.seed}, attention {output.run.attention})")
    print(f"{len(planned) - failed} of {len(planned)} job(s) rendered into {out_dir.resolve()}")
    return EXIT_FAILED if failed else EXIT_OK


def _profile(job: Job, chosen: Profile) -> Profile:
    # A job's own override_profile comes before --profile, as in WanGP before its default profile.
    return job.overrides.profile if job.overrides is not None and job.overrides.profile else chosen


def _describe(item: PlannedJob, profile: Profile) -> str:
    first = item.job.generations[0].request
    size = JobSize(first.width, first.height, first.frames, first.batch_size)
    need = estimate(item.job.preset, profile, size)
    seeds = ",".join(str(g.request.seed) for g in item.job.generations)
    return (
        f"{item.source}: {item.job.preset.id} {first.width}x{first.height} frames={first.frames} "
        f"steps={first.steps} seeds={seeds}; profile {profile.value} needs "
        f"{need.vram_bytes / 2**30:.1f} GiB VRAM, {need.ram_bytes / 2**30:.1f} GiB RAM"
    )
