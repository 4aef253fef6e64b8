"""A job's LoRAs in a hot pipeline: loaded once per file, weighted step by step, then switched off.

Each LoRA file becomes an adapter named after its sha256, loaded into every denoiser of the pipeline
(both experts of Wan 2.2) and kept while the pipeline stays hot, so the next job that names it loads
nothing. A job activates its adapters with the weights of step 0 and, at the end of each step, sets
those of the next (WanGP's comma and ';' schedules); when the job ends, by success, error or cancel,
the adapters are switched off, so the next job renders exactly as on a freshly loaded pipeline.

Two ways in, one interface (`Adapters`): diffusers' PEFT loaders on a plain pipeline (the CPU path,
and CUDA without an mmgp profile), and mmgp's own LoRA slots on a pipeline under an mmgp profile,
whose offloading hooks wrap the same Linear layers PEFT would replace. Both first convert the file
with the pipeline's `lora_state_dict` (diffusers' converters for the original and kohya layouts) and
refuse, naming the LoRA and the model, a file whose layers are not all in this model's denoiser:
diffusers would only log a warning and render without it.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

import torch
from safetensors.torch import load_file

from models.hunyuan_loras import readable_hunyuan_lora
from models.loras import AppliedLora, LoraFile, LoraMismatch, LoraRequest

DENOISERS = ("transformer", "transformer_2")  # in phase order: high noise, then low noise
KEPT_ADAPTERS = 8  # LoRA files kept loaded in a hot pipeline beyond the current job's
_PREFIX = "transformer."  # the converters' prefix for denoiser keys, whichever expert loads them


class Adapters(Protocol):
    """The LoRA adapters of one hot pipeline."""

    def load(self, files: Sequence[LoraFile]) -> None:
        """Make every file an adapter of each denoiser; LoraMismatch if one does not fit."""
        ...

    def set_weights(self, component: str, files: Sequence[LoraFile], weights: Sequence[float]) -> None:
        """Activate exactly `files` in the denoiser `component`, with these weights."""
        ...

    def switch_off(self) -> None:
        """No adapter acts on any layer: the pipeline computes as without LoRAs."""
        ...


def adapters_for(pipe: Any, model_id: str, offload: Any) -> Adapters:
    """The adapters of a hot pipeline: mmgp's when an mmgp profile holds it, else diffusers' PEFT."""
    if offload is not None:
        return MmgpAdapters(pipe, model_id)
    return PeftAdapters(pipe, model_id)


def denoisers(pipe: Any) -> list[str]:
    """The pipeline's denoiser components, in phase order."""
    return [name for name in DENOISERS if getattr(pipe, name, None) is not None]


class LoraRun:
    """One generation's LoRAs: the weights of each step set before it runs, and what was applied."""

    def __init__(
        self, adapters: Adapters, pipe: Any, requests: Sequence[LoraRequest], files: Sequence[LoraFile]
    ) -> None:
        self.adapters = adapters
        self.pipe = pipe
        self.requests = list(requests)
        self.files = list(files)
        self.components = denoisers(pipe)
        self._switch: int | None = None  # first step of the low-noise expert, when there are two
        self._starts: list[tuple[int, ...]] = [() for _ in self.requests]  # each one's phase starts
        self._last: dict[str, tuple[float, ...]] = {}
        self._applied: list[list[float]] = [[] for _ in self.requests]

    def start(self, steps: int) -> None:
        """Load what is missing and set the weights of step 0."""
        self.adapters.load(self.files)
        self._switch = switch_step(self.pipe, steps)
        if any(r.phases.starts for r in self.requests):
            # The guidance phases the multipliers follow start where the job's timesteps reach them.
            self.pipe.scheduler.set_timesteps(steps)
            timesteps = [float(t) for t in self.pipe.scheduler.timesteps]
            self._starts = [r.phases.start_steps(timesteps) for r in self.requests]
        self.before_step(0)

    def before_step(self, step: int) -> None:
        """Set the weights of `step`, on the expert that runs it (called at the end of the step
        before it)."""
        weights = [r.weight_at(step, starts) for r, starts in zip(self.requests, self._starts, strict=True)]
        self._set(self.components[self._phase(step)], weights)
        for applied, weight in zip(self._applied, weights, strict=True):
            applied.append(weight)

    def finish(self) -> None:
        self.adapters.switch_off()

    def applied(self) -> tuple[AppliedLora, ...]:
        return tuple(
            AppliedLora(request.name, file.sha256, request.multipliers, tuple(weights))
            for request, file, weights in zip(self.requests, self.files, self._applied, strict=True)
        )

    def _phase(self, step: int) -> int:
        if len(self.components) == 1 or self._switch is None:
            return 0
        return 0 if step < self._switch else 1

    def _set(self, component: str, weights: list[float]) -> None:
        # Setting a weight walks every LoRA layer: skip it while the schedule holds still.
        if self._last.get(component) == tuple(weights):
            return
        self.adapters.set_weights(component, self.files, weights)
        self._last[component] = tuple(weights)


def switch_step(pipe: Any, steps: int) -> int | None:
    """The first step the low-noise expert runs, by diffusers' Wan 2.2 rule (a timestep below
    boundary_ratio of the training timesteps), or None for a single-expert pipeline. It sets the
    scheduler's timesteps for `steps`, as the pipeline call does again first thing."""
    ratio = getattr(pipe.config, "boundary_ratio", None)
    if ratio is None or getattr(pipe, "transformer_2", None) is None:
        return None
    pipe.scheduler.set_timesteps(steps)
    boundary = ratio * pipe.scheduler.config.num_train_timesteps
    timesteps = pipe.scheduler.timesteps
    return next((i for i, t in enumerate(timesteps) if t < boundary), len(timesteps))


def adapter_name(file: LoraFile) -> str:
    """The adapter a file becomes: named by content, so a renamed copy is the same adapter."""
    return f"lora_{file.sha256[:16]}"


def denoiser_state_dict(pipe: Any, file: LoraFile, model_id: str) -> dict[str, torch.Tensor]:
    """The file converted by the pipeline's own loader to diffusers names (`transformer.<module>...`),
    checked to name only layers of this model's denoiser."""
    try:
        # HunyuanVideo's converter misreads some original layouts: they are read here first.
        source = readable_hunyuan_lora(load_file(file.path)) if _hunyuan(type(pipe)) else str(file.path)
        converted = type(pipe).lora_state_dict(source)
    except Exception as error:  # a converter meeting another family's keys raises anything
        raise LoraMismatch(
            f"LoRA {file.name!r} cannot be read as a {model_id} LoRA ({type(error).__name__}: {error}); "
            "it is likely made for another model"
        ) from error
    state: dict[str, torch.Tensor] = converted[0] if isinstance(converted, tuple) else converted
    modules = {name for name, _ in pipe.transformer.named_modules()}
    # Keys without the denoiser's prefix (another component's, or not converted) load nowhere.
    layers = {_layer(key) for key in state}
    misfits = sorted(layer for layer in layers if layer.startswith("<") or layer not in modules)
    if not layers or misfits:
        found = f"{len(misfits)} of its {len(layers)} layers are not in the model ({_few(misfits)})"
        raise LoraMismatch(
            f"LoRA {file.name!r} does not fit {model_id}: {found if layers else 'it holds no layers'}; "
            "it is likely made for another model family or size"
        )
    return state


def _hunyuan(pipeline_class: Any) -> bool:
    """Whether the pipeline loads LoRAs through diffusers' HunyuanVideo converter."""
    return pipeline_class.__name__.startswith("HunyuanVideo")


def _layer(key: str) -> str:
    """`transformer.blocks.0.attn1.to_q.lora_A.weight` -> `blocks.0.attn1.to_q`; a key of anything
    else is kept whole in <>, so it never matches a denoiser layer."""
    if not key.startswith(_PREFIX):
        return f"<{key}>"
    return key.removeprefix(_PREFIX).split(".lora_")[0]


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class PeftAdapters:
    """Adapters through diffusers' PEFT integration: one PEFT adapter per file, per denoiser."""

    def __init__(self, pipe: Any, model_id: str) -> None:
        self.pipe = pipe
        self.model_id = model_id
        self._loaded: OrderedDict[str, None] = OrderedDict()  # adapter names, least recently used first

    def load(self, files: Sequence[LoraFile]) -> None:
        for file in files:
            name = adapter_name(file)
            if name not in self._loaded:
                self._load(file, name)
            self._loaded[name] = None
            self._loaded.move_to_end(name)
        self._forget_beyond(KEPT_ADAPTERS + len(files))

    def set_weights(self, component: str, files: Sequence[LoraFile], weights: Sequence[float]) -> None:
        model = getattr(self.pipe, component)
        model.enable_lora()
        model.set_adapters([adapter_name(f) for f in files], list(weights))

    def switch_off(self) -> None:
        if not self._loaded:
            return
        for component in denoisers(self.pipe):
            getattr(self.pipe, component).disable_lora()

    def _load(self, file: LoraFile, name: str) -> None:
        state = denoiser_state_dict(self.pipe, file, self.model_id)
        for component in denoisers(self.pipe):
            extra = {"load_into_transformer_2": True} if component == "transformer_2" else {}
            try:
                with warnings.catch_warnings():
                    # PEFT warns on each adapter after the first that a model holds several: intended.
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    self.pipe.load_lora_weights(dict(state), adapter_name=name, **extra)
            except (RuntimeError, ValueError) as error:  # shapes of another size of the model
                self._drop(name)
                raise LoraMismatch(f"LoRA {file.name!r} does not fit {self.model_id}: {error}") from error
            if name not in getattr(getattr(self.pipe, component), "peft_config", {}):
                self._drop(name)
                raise LoraMismatch(f"LoRA {file.name!r} loaded no layer into {self.model_id}'s {component}")

    def _drop(self, name: str) -> None:
        for component in denoisers(self.pipe):
            model = getattr(self.pipe, component)
            if name in getattr(model, "peft_config", {}):
                model.delete_adapters(name)

    def _forget_beyond(self, keep: int) -> None:
        while len(self._loaded) > keep:
            name, _ = self._loaded.popitem(last=False)
            self._drop(name)


class MmgpAdapters:
    """Adapters through mmgp's LoRA slots, for a pipeline under an mmgp profile: the profile must
    have been applied with `loras=` naming the denoisers. mmgp loads a set of files at once (adapters
    "0", "1", ... in file order) and replaces the previous set, so a job whose files differ from the
    loaded set reloads them all."""

    def __init__(self, pipe: Any, model_id: str) -> None:
        from models.mmgp_compat import import_offload

        self.offload = import_offload()
        self.pipe = pipe
        self.model_id = model_id
        self._loaded: list[str] = []  # sha256 of the loaded files, in adapter order

    def load(self, files: Sequence[LoraFile]) -> None:
        if [f.sha256 for f in files] == self._loaded:
            return
        for file in files:  # refuse a misfit by name before mmgp prints its own message
            denoiser_state_dict(self.pipe, file, self.model_id)
        self._loaded = []
        for component in denoisers(self.pipe):
            model = getattr(self.pipe, component)
            self.offload.load_loras_into_model(
                model,
                [str(f.path) for f in files],
                activate_all_loras=False,
                preprocess_sd=partial(_mmgp_state_dict, type(self.pipe)),
                verboseLevel=0,
            )
            errors = getattr(model, "_loras_errors", None)
            if errors:
                path, message = errors[0]
                raise LoraMismatch(f"LoRA {path} does not fit {self.model_id}: {message}")
        self._loaded = [f.sha256 for f in files]

    def set_weights(self, component: str, files: Sequence[LoraFile], weights: Sequence[float]) -> None:
        if [f.sha256 for f in files] != self._loaded:
            raise RuntimeError("mmgp holds other LoRAs than this job's: load them first")
        model = getattr(self.pipe, component)
        self.offload.activate_loras(model, [str(i) for i in range(len(files))], list(weights))

    def switch_off(self) -> None:
        for component in denoisers(self.pipe):
            self.offload.activate_loras(getattr(self.pipe, component), [], [])


def _mmgp_state_dict(pipeline_class: Any, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What mmgp reads: diffusers' conversion, with the names of the denoiser's own modules."""
    # mmgp hands over read-only mapped tensors; some converters scale theirs in place.
    state = {key: value.clone() for key, value in state.items()}
    if _hunyuan(pipeline_class):
        state = readable_hunyuan_lora(state)
    converted = pipeline_class.lora_state_dict(state)
    converted = converted[0] if isinstance(converted, tuple) else converted
    return {key.removeprefix(_PREFIX): value for key, value in converted.items() if key.startswith(_PREFIX)}


__all__ = [
    "Adapters",
    "LoraRun",
    "MmgpAdapters",
    "PeftAdapters",
    "adapter_name",
    "adapters_for",
    "denoiser_state_dict",
    "switch_step",
]
