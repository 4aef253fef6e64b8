"""Running a model's pipeline: load once, keep it hot, generate with per-step progress and cancel.

On CUDA the pipeline is loaded in the card's half type (bf16 from sm80, fp16 below), handed to mmgp
under the chosen memory profile, and its transformers pointed at the chosen attention kernel. On
CPU it runs plain in fp32: mmgp and the fused kernels need CUDA. A request's LoRAs, found in the
host's LoraLibrary, are weighted step by step through models.lora_adapters and switched off after.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import attention
from models.attention import AttentionMode
from models.audio_call import is_audio, waveforms
from models.call_args import configure_scheduler, expert_switch, pipeline_kwargs
from models.catalogue import ModelPreset, Output, Role, get_model
from models.checkpoint import Checkpoints, ResumeMismatch, StepRecorder, StepState, recording
from models.device import LocalGpu, detect_gpus
from models.hf_logging import quiet_hf_libraries
from models.image_pipes import pipeline_for
from models.lora_adapters import DENOISERS, Adapters, LoraRun, adapters_for
from models.loras import AppliedLora, LoraError, LoraFile, LoraLibrary
from models.ltx2_call import soundtracks
from models.ltx2_connectors import connectors_url, load_connectors
from models.ltx2_render import StagesCall, load_upsampler
from models.model_attention import model_kernel
from models.profiles import Profile
from models.progress import Cancelled, Phase, Progress, ProgressFn, ignore_progress
from models.qwen_processor import processor_parts
from models.request import GenerationRequest
from models.run_info import RunInfo
from models.single_file import (
    FileChoice,
    choose_file,
    file_name,
    load_pipeline,
    quanto_installed,
    reads_int8,
    replaced_subfolders,
)
from models.soundtrack import Soundtrack
from models.step_cache_hook import step_skipping
from models.wangp_definitions import own_weights
from models.weights import WeightCache, components_id
from models.z_image_control import is_control, load_control_pipeline

NO_KERNEL = "none"  # recorded when no attention call went through the counted dispatcher


@dataclass(frozen=True)
class GenerationOutput:
    """Frames as uint8 (outputs, frames, height, width, 3); images have one frame, audio none
    (its waveforms are in `audio`)."""

    frames: np.ndarray
    info: RunInfo
    # One soundtrack per output, on models that render audio with the video (LTX-2) or alone
    # (Output.AUDIO); else None.
    audio: list[Soundtrack] | None = None


@dataclass
class _Hot:
    model_id: str
    profile: Profile | None
    pipe: Any
    offload: Any  # mmgp's handle, released on unload
    adapters: Adapters | None = None  # made by the first job with LoRAs, kept while hot
    attention: AttentionMode | None = None  # the kernel its transformers point at (on CUDA)
    model_file: str = ""  # the single file its transformer came from, if any
    folder: Path | None = None  # the model folder it was loaded from
    upsampler: Any = None  # LTX-2's latent upsampler, loaded by its first two-stage job


class PipelineHost:
    """Holds at most one hot pipeline; a job of the same model and profile reuses it."""

    def __init__(
        self,
        cache: WeightCache,
        device: str | None = None,
        attention_mode: AttentionMode = AttentionMode.AUTO,
        loras: LoraLibrary | None = None,
    ) -> None:
        # This process now builds and runs pipelines: their libraries' warnings and bars go quiet.
        quiet_hf_libraries()
        self.cache = cache
        gpus = detect_gpus()
        self.device = device or ("cuda" if gpus else "cpu")
        self.gpu: LocalGpu | None = gpus[0] if gpus and self.device.startswith("cuda") else None
        # Resolved now, so a kernel this machine cannot run is refused before any job starts.
        caps = self.gpu.caps if self.gpu else None
        self.attention_mode = attention.choose(attention_mode, caps)
        # What a job may force (override_attention), reported to the scheduler.
        self.attention_modes = frozenset(attention.installed_modes() & attention.allowed_modes(caps))
        self.loras = loras  # where LoRA files are found; None refuses jobs that name LoRAs
        self.loads = 0  # pipelines loaded since start: the hot path keeps this low
        self._hot: _Hot | None = None

    @property
    def hot_model(self) -> str | None:
        return self._hot.model_id if self._hot else None

    @property
    def dtype(self) -> torch.dtype:
        if self.gpu is None:
            return torch.float32
        return torch.bfloat16 if self.gpu.caps.bf16 else torch.float16

    def generate(
        self,
        preset: ModelPreset,
        request: GenerationRequest,
        profile: Profile = Profile.P4,
        on_progress: ProgressFn = ignore_progress,
        checkpoints: Checkpoints | None = None,
    ) -> GenerationOutput:
        """Render one request; `on_progress` may raise Cancelled to stop between steps. A request
        with LoRAs needs a LoraLibrary (LoraError otherwise, or when a file is missing or misfits).
        With `checkpoints`, the run resumes from the last one saved for it by a run of the same kind
        (dtype, device, quantization), and saves one at each step boundary they call due."""
        lora_files = self._lora_files(preset, request)  # before any load: a missing file fails fast
        kernel = self._attention_for(request, preset)
        load_started = time.monotonic()
        source, fetched_bytes = self._ensure_hot(preset, profile, on_progress)
        load_seconds = time.monotonic() - load_started
        assert self._hot is not None
        pipe = self._hot.pipe
        if self.gpu is not None and self._hot.attention is not kernel:
            attention.apply(pipe, kernel)
            self._hot.attention = kernel
        configure_scheduler(pipe, preset, request)
        # The hot pipeline, or an image-to-video one over its modules (models.image_pipes).
        call = pipeline_for(pipe, preset, request)
        stage_lora: list[AppliedLora] = []
        if request.ltx2_stages is not None:  # LTX-2's one or two render stages (models.ltx2_stages)
            call = self._stages(call, preset, request, stage_lora)
        total = request.steps
        lora_run = self._lora_run(request, lora_files)
        # Step skipping keeps residuals across steps that a checkpoint does not hold.
        checkpoints = checkpoints if request.step_caching is None else None
        resume = checkpoints.resume() if checkpoints is not None else None
        if self.gpu is not None:
            torch.cuda.reset_peak_memory_stats()
        started = time.monotonic()
        try:
            while True:  # twice at most: a replay that does not follow its checkpoint starts over
                generator = torch.Generator(device="cpu").manual_seed(request.seed)
                kwargs = pipeline_kwargs(call, preset, request, generator)
                recorder = self._recorder(checkpoints, generator, resume, profile)
                on_step_end = _step_end(recorder, checkpoints, total, on_progress, lora_run)
                on_progress(Progress(0, total, Phase.DENOISING))
                try:
                    # The job's expert switch, set before the LoRAs read it; the pipeline's own after.
                    with expert_switch((pipe, call), preset, request):
                        if lora_run is not None:
                            lora_run.start(total)
                        with (
                            attention.record_backends() as calls,
                            torch.inference_mode(),
                            step_skipping(call, request.step_caching, total) as steps,
                            recording(call, recorder) if recorder is not None else _nothing(),
                        ):
                            result = call(**kwargs, callback_on_step_end=on_step_end)
                    break
                except ResumeMismatch:
                    if resume is None:
                        raise
                    resume = None
        finally:
            # Whatever happened, the hot pipeline's next job renders as on a fresh one.
            if lora_run is not None:
                lora_run.finish()
            if stage_lora and self._hot.adapters is not None:
                self._hot.adapters.switch_off()
        if is_audio(preset):  # a waveform per output, no frames
            audio: list[Soundtrack] | None = waveforms(result, preset, call)
            frames = np.zeros((len(audio or ()), 0, 0, 0, 3), np.uint8)
        else:
            frames = _to_uint8(result, preset)
            audio = soundtracks(result, call)
        info = RunInfo(
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            profile=profile.value if self.gpu else "none (cpu)",
            # Never a default kernel: attention that bypassed the counted dispatcher shows as "none".
            attention=",".join(sorted(calls)) or NO_KERNEL,
            loaded=source != "hot",
            load_seconds=round(load_seconds, 3),
            generate_seconds=round(time.monotonic() - started, 3),
            peak_vram_bytes=torch.cuda.max_memory_allocated() if self.gpu else 0,
            weights_source=source,
            bytes_fetched=fetched_bytes,
            loras=(*stage_lora, *(lora_run.applied() if lora_run is not None else ())),
            steps_run=steps.result().run,
            steps_skipped=steps.result().skipped,
            model_file=self._hot.model_file,
            resumed_from=recorder.resume.step if recorder is not None and recorder.resume else 0,
        )
        return GenerationOutput(frames, info, audio)

    def _recorder(
        self,
        checkpoints: Checkpoints | None,
        generator: torch.Generator,
        resume: StepState | None,
        profile: Profile,
    ) -> StepRecorder | None:
        if checkpoints is None:
            return None
        # A resume computes as the saved run did only in the same type, on the same kind of device,
        # with the transformer quantized (or not) alike.
        quantized = self.gpu is not None and profile.spec.quantize
        how = f"{str(self.dtype).removeprefix('torch.')}|{self.device.split(':')[0]}|int8={quantized}"
        return StepRecorder(f"{checkpoints.fingerprint}|{how}", generator, resume)

    def unload(self) -> None:
        """Drop the hot pipeline and free its memory."""
        if self._hot is None:
            return
        if self._hot.offload is not None:
            self._hot.offload.release()
        self._hot = None
        if self.gpu is not None:
            torch.cuda.empty_cache()

    def _lora_files(self, preset: ModelPreset, request: GenerationRequest) -> list[LoraFile]:
        if not request.loras:
            return []
        if self.loras is None:
            names = ", ".join(lora.name for lora in request.loras)
            raise LoraError(f"this job names LoRAs ({names}) but no LoRA folder is configured (--lora-dir)")
        for lora in request.loras:
            if lora.steps != request.steps:
                raise LoraError(
                    f"LoRA {lora.name!r}: its schedule was parsed for {lora.steps} steps; this job runs "
                    f"{request.steps} steps of {preset.id}"
                )
        return [self.loras.find(lora.name, preset) for lora in request.loras]

    def _lora_run(self, request: GenerationRequest, files: list[LoraFile]) -> LoraRun | None:
        if not files:
            return None
        hot = self._hot
        assert hot is not None
        if hot.adapters is None:
            hot.adapters = adapters_for(hot.pipe, hot.model_id, hot.offload)
        return LoraRun(hot.adapters, hot.pipe, request.loras, files)

    def _stages(
        self, call: Any, preset: ModelPreset, request: GenerationRequest, applied: list[AppliedLora]
    ) -> StagesCall:
        """The call rendering LTX-2's plan: one stage on WanGP's sigmas, or two around the hot
        model's latent upsampler, the stage LoRA (found like a job's, in the host's LoRA folders)
        weighted per stage and recorded in `applied` (its weight at each step of both stages)."""
        hot = self._hot
        assert hot is not None and request.ltx2_stages is not None
        plan = request.ltx2_stages
        if plan.two and hot.upsampler is None:
            if hot.folder is None:
                raise FileNotFoundError(f"{preset.id}: the folder of its latent upsampler is unknown")
            hot.upsampler = load_upsampler(hot.folder, self.device, self.dtype)
        if not plan.lora:
            return StagesCall(call, plan, hot.upsampler)
        if self.loras is None:
            raise LoraError(
                f"{preset.id} refines its second stage with the LoRA {plan.lora!r}, but no LoRA folder is "
                "configured (--lora-dir)"
            )
        file = self.loras.find(plan.lora, preset)
        if hot.adapters is None:
            hot.adapters = adapters_for(hot.pipe, hot.model_id, hot.offload)
        adapters = hot.adapters
        adapters.load([file])
        steps = plan.steps
        weights = tuple(w for stage, w in enumerate(plan.lora_weights) for _ in range(steps[stage]))
        applied.append(AppliedLora(plan.lora, file.sha256, plan.multipliers, weights))

        def before_stage(stage: int) -> None:
            adapters.set_weights("transformer", [file], [plan.lora_weights[stage - 1]])

        return StagesCall(call, plan, hot.upsampler, before_stage)

    def _attention_for(self, request: GenerationRequest, preset: ModelPreset) -> AttentionMode:
        """The host's kernel, or the one the request forces (AttentionUnavailable names it when it
        cannot run here; on the CPU only sdpa does), or else the one the model imposes on this card
        (WanGP's `attention` key) where it can run here."""
        forced = request.overrides.attention if request.overrides is not None else None
        if forced is None:
            caps = self.gpu.caps if self.gpu else None
            own = model_kernel(preset.attention, self.gpu.capability if self.gpu else None)
            usable = attention.installed_modes() & attention.allowed_modes(caps)
            return own if own is not None and own in usable else self.attention_mode
        try:
            return attention.choose(forced, self.gpu.caps if self.gpu else None)
        except attention.AttentionUnavailable as error:
            raise attention.AttentionUnavailable(f"override_attention: {error}") from None

    def _ensure_hot(self, preset: ModelPreset, profile: Profile, on_progress: ProgressFn) -> tuple[str, int]:
        """Where the weights came from ("hot", "disk" or "download") and the bytes fetched."""
        wanted_profile = profile if self.gpu else None
        hot = self._hot
        if hot and hot.model_id == preset.id and hot.profile == wanted_profile:
            return "hot", 0
        self.unload()
        choices, modules, base = self._plan(preset, wanted_profile)
        chosen = [choice for choice in choices if choice is not None]
        # LTX-2's distilled 19B: its own text connectors over the folder's (models.ltx2_connectors).
        connectors = connectors_url(preset)
        urls = [choice.url for choice in (*chosen, *modules)] + ([connectors] if connectors else [])
        # Its denoisers that files replace are not fetched (WeightCache.ensure_components).
        replaced = replaced_subfolders(base, *choices) if urls else ()
        base_cached = self.cache.has_components(base, replaced)
        cached = base_cached and (not urls or self.cache.is_cached(preset, *urls))
        if not cached:
            on_progress(Progress(0, 1, Phase.FETCHING))
        # The base's folder is read while the job holds only its own model's: keep it from eviction.
        with self.cache.using(base.id), self.cache.using(components_id(base.id)):
            folder = self.cache.ensure_components(base, replaced)
            files = self.cache.ensure(preset, *urls) if urls else None
            on_progress(Progress(0, 1, Phase.LOADING))
            if files is not None and is_control(preset) and not chosen:
                parts = processor_parts(base.pipeline, folder)
                pipe = load_control_pipeline(folder, files / modules[0].filename, preset, self.dtype, **parts)
            elif files is not None:
                paths = [files / choice.filename if choice else None for choice in choices]
                merged = [files / module.filename for module in modules]
                dtype = self._file_dtype(chosen[0]) if chosen else self.dtype
                pipe = load_pipeline(preset, paths[0], dtype, folder, paths[1], modules=merged)
                if connectors:
                    load_connectors(pipe, files / file_name(connectors))
            else:
                import diffusers

                pipe = getattr(diffusers, preset.pipeline).from_pretrained(
                    folder, **processor_parts(preset.pipeline, folder), dtype=self.dtype
                )
        pipe.set_progress_bar_config(disable=True)
        offload = None
        if self.gpu is not None and wanted_profile is not None:
            # A prequantized file, held dequantized, is not quantized again (models.prequantized).
            requantize = not any(c.dequantized for c in preset.component(Role.TRANSFORMER))
            offload = _apply_profile(pipe, wanted_profile, self.loras is not None, requantize)
            # Whole-frame decoding needs 11.8 kB a pixel for the Wan VAE in bf16 (9.4 GB for a
            # 480p clip, more than the denoising itself on a 12 GB card); tiled, 2.5 kB.
            vae = getattr(pipe, "vae", None)
            if vae is not None and hasattr(vae, "enable_tiling"):
                vae.enable_tiling()
        else:
            pipe.to(self.device)
        model_file = chosen[0].filename if chosen else ""
        self._hot = _Hot(preset.id, wanted_profile, pipe, offload, model_file=model_file, folder=folder)
        self.loads += 1
        if cached:
            return "disk", 0
        fetched = [] if base_cached else [base.id if self.cache.is_cached(base) else components_id(base.id)]
        fetched += [preset.id] if base is not preset else []
        return "download", sum(self.cache.fetched_bytes(model_id) for model_id in fetched)

    def fetch(self, preset: ModelPreset, profile: Profile = Profile.P4) -> None:
        """Put the weights a job of `preset` under `profile` loads into the node cache, loading
        nothing: its base's folder and its own transformer files, as a render fetches them (an
        agent warming a model while idle)."""
        choices, modules, base = self._plan(preset, profile if self.gpu else None)
        urls = [choice.url for choice in (*choices, *modules) if choice is not None]
        urls += [connectors] if (connectors := connectors_url(preset)) else []
        # The same fetches as _ensure_hot's: the base's folder less the denoisers files replace.
        replaced = replaced_subfolders(base, *choices) if urls else ()
        with self.cache.using(base.id), self.cache.using(components_id(base.id)):
            self.cache.ensure_components(base, replaced)
            if urls:
                self.cache.ensure(preset, *urls)

    def _plan(
        self, preset: ModelPreset, profile: Profile | None
    ) -> tuple[list[FileChoice | None], list[FileChoice], ModelPreset]:
        """The files a load of `preset` reads: its own transformer file per expert (None where the
        folder supplies it), the module files merged into them, and the model whose folder it loads."""
        # A definition with a transformer file of its own: that file over its base's folder.
        # A two-expert Wan 2.2 may have one for each expert (URLs, URLs2).
        choices = [self._single_file(preset, profile, expert) for expert in (1, 2)]
        chosen = any(choice is not None for choice in choices)
        # WanGP's VACE module, merged into each transformer loaded from a file (unquantized files:
        # the merge reads plain tensors; a quantizing profile quantizes the merged transformer).
        # Z-Image's ControlNet module loads beside its base's folder (models.z_image_control).
        modules = [
            choose_file(module, self.gpu.caps if self.gpu else None, False, quanto_installed())
            for module in (preset.wangp_modules if chosen or is_control(preset) else [])
        ]
        beside = chosen or bool(modules) or bool(connectors_url(preset))
        base = get_model(preset.derived_from) if beside and preset.derived_from else preset
        return choices, modules, base

    def _single_file(self, preset: ModelPreset, profile: Profile | None, expert: int) -> FileChoice | None:
        """The file of a definition's own weights for `expert` (1, or 2: the low-noise one) this
        machine loads; None where the diffusers folder supplies that transformer."""
        urls = own_weights(preset, expert)
        if not urls:
            return None
        # A layout converted tensor by tensor cannot read an int8 file: its bf16 one is quantized.
        quantize = profile is not None and profile.spec.quantize and reads_int8(preset)
        quantize = quantize and not preset.wangp_modules  # modules merge into plain tensors only
        return choose_file(urls, self.gpu.caps if self.gpu else None, quantize, quanto_installed())

    def _file_dtype(self, choice: FileChoice) -> torch.dtype:
        # A quanto file computes in the type its name carries; any other is cast to the host's.
        if choice.quantized:
            return torch.float16 if choice.dtype == "fp16" else torch.bfloat16
        return self.dtype


def _step_end(
    recorder: StepRecorder | None,
    checkpoints: Checkpoints | None,
    total: int,
    on_progress: ProgressFn,
    lora_run: LoraRun | None,
) -> Any:
    """The pipeline's callback after each step: a checkpoint when due (before progress, whose
    callback may stop the run for a preemption), progress, the LoRAs' weights for the next step."""

    def on_step_end(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if recorder is not None and checkpoints is not None:
            recorder.step_ended()
            done = recorder.steps_done
            if (
                not recorder.replaying
                and done < total
                and not recorder.unsupported
                and checkpoints.due(done, total)
            ):
                checkpoints.save(recorder.capture(total))
        on_progress(Progress(step + 1, total, Phase.DENOISING if step + 1 < total else Phase.DECODING))
        if lora_run is not None and step + 1 < total:
            lora_run.before_step(step + 1)
        return tensors

    return on_step_end


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _apply_profile(pipe: Any, profile: Profile, lora_slots: bool, quantize: bool = True) -> Any:
    from models.mmgp_compat import import_offload

    offload = import_offload()
    spec = profile.spec
    overrides: dict[str, Any] = {"quantizeTransformer": spec.quantize and quantize}
    # WanGP's "+" variants are overrides of mmgp's base profiles.
    if profile is Profile.P3_PLUS:
        overrides["pinnedMemory"] = False
    if profile is Profile.P4_PLUS:
        overrides["asyncTransfers"] = False
    if lora_slots:
        # mmgp hooks LoRA slots into the layers of the models named here, and only at profile time;
        # a host that cannot take LoRAs spares every layer call that hook.
        overrides["loras"] = [name for name in DENOISERS if getattr(pipe, name, None) is not None]
    return offload.profile(pipe, profile_no=spec.mmgp_profile, **overrides)


def _to_uint8(result: Any, preset: ModelPreset) -> np.ndarray:
    """The pipeline's float [0, 1] numpy output as uint8 (outputs, frames, H, W, 3)."""
    video = preset.output is Output.VIDEO
    array = np.asarray(result.frames) if video else np.asarray(result.images)[:, None]
    if array.ndim != 5 or array.shape[-1] != 3:
        raise RuntimeError(
            f"{preset.pipeline} returned an array of shape {array.shape}, expected (N, F, H, W, 3)"
        )
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


__all__ = ["Cancelled", "GenerationOutput", "PipelineHost", "RunInfo"]
