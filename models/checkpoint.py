"""Checkpoints of a denoising run: its state at a step boundary, and a resume from it, bit for bit.

A pipeline's `__call__` owns its loop (and resets its scheduler), so a run resumes by replaying the
same call: same seed, same prompt and image encodings. Up to the checkpoint's step, its denoisers
answer zeros shaped as they answered when the run was checkpointed (no compute), and its
scheduler steps run on zeros; in the step the checkpoint closed, each scheduler step hands back
the sample saved for it and takes back its scheduler's saved state (a multistep solver's history
with it), and the RNG states are restored at the boundary. From there the run computes exactly what
the uninterrupted one computed. Scheduler steps are taken at the class, not the instance: a
pipeline may copy its scheduler inside the call (LTX-2's audio one), and each copy steps too.

What a run keeps outside its latents and scheduler is not captured: step skipping's cached
residuals (checkpoints are off under step skipping, `unsupported`).
"""

from __future__ import annotations

import importlib
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

FORMAT = 1  # the layout of a saved StepState; another is not read
DENOISER_NAMES = ("transformer", "transformer_2", "unet")


class ResumeMismatch(RuntimeError):
    """The replayed call does not follow the checkpointed one (another denoiser input, another
    number of scheduler steps): the run starts again from its first step."""


@dataclass(frozen=True)
class StepState:
    """A run's state once `step` of its `total` denoising steps are done."""

    step: int
    total: int
    fingerprint: str  # what was rendered, how (dtype, device): a resume needs the same
    samples: tuple[torch.Tensor, ...]  # each scheduler step's output in the step that closed, in order
    schedulers: tuple[dict[str, Any], ...]  # the stepping scheduler's state after each of them
    rng: dict[str, torch.Tensor]  # "generator", "cpu", "cuda<i>"
    shapes: dict[str, Any] = field(default_factory=dict)  # denoiser outputs by input signature

    def encode(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(
            {
                "format": FORMAT,
                "step": self.step,
                "total": self.total,
                "fingerprint": self.fingerprint,
                "samples": list(self.samples),
                "schedulers": list(self.schedulers),
                "rng": self.rng,
                "shapes": self.shapes,
            },
            buffer,
        )
        return buffer.getvalue()

    @staticmethod
    def decode(data: bytes) -> StepState:
        """The state `encode` wrote; ValueError for anything else (a foreign or truncated file)."""
        try:
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # a half-written or foreign file is never resumed from
            raise ValueError(f"not a readable checkpoint: {error}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"checkpoint format {raw.get('format') if isinstance(raw, dict) else '?'}")
        return StepState(
            step=int(raw["step"]),
            total=int(raw["total"]),
            fingerprint=str(raw["fingerprint"]),
            samples=tuple(raw["samples"]),
            schedulers=tuple(raw["schedulers"]),
            rng=dict(raw["rng"]),
            shapes=dict(raw["shapes"]),
        )


class Checkpoints(Protocol):
    """Where one generation's checkpoints come from and go (the agent's object storage)."""

    fingerprint: str  # of the work; the runner adds how it runs (dtype, device)

    def resume(self) -> StepState | None:
        """The last checkpoint saved for this generation, if any."""
        ...

    def due(self, step: int, total: int) -> bool:
        """Whether to save one now, `step` of `total` steps done."""
        ...

    def save(self, state: StepState) -> None: ...


# The recorder of the call running in this process; scheduler steps find it here.
_ACTIVE: StepRecorder | None = None
_PATCH_LOCK = threading.Lock()


class StepRecorder:
    """Follows one pipeline call step by step: records what a checkpoint needs, replays a resume."""

    def __init__(self, fingerprint: str, generator: torch.Generator, resume: StepState | None) -> None:
        self.fingerprint = fingerprint
        self.generator = generator
        self.resume = resume if resume is not None and resume.fingerprint == fingerprint else None
        self.refused = resume is not None and self.resume is None  # saved by another kind of run
        self.shapes: dict[str, Any] = dict(self.resume.shapes) if self.resume else {}
        self.steps_done = 0  # step boundaries passed in this call
        self._stepped: list[tuple[Any, torch.Tensor]] = []  # this step's scheduler outputs
        self._calls = 0  # scheduler steps so far in this step (while replaying)
        self.unsupported: str | None = None  # why this call cannot be checkpointed, if it cannot

    @property
    def replaying(self) -> bool:
        return self.resume is not None and self.steps_done < self.resume.step

    def step_ended(self) -> None:
        """The pipeline closed a step: restore the RNGs where the replay ends."""
        self.steps_done += 1
        self._calls = 0
        self._fresh = True
        if self.resume is not None and self.steps_done == self.resume.step:
            _set_rng(self.resume.rng, self.generator)

    def capture(self, total: int) -> StepState:
        """The state at the boundary just passed."""
        if self.unsupported:
            raise RuntimeError(self.unsupported)
        return StepState(
            step=self.steps_done,
            total=total,
            fingerprint=self.fingerprint,
            samples=tuple(sample.detach().to("cpu", copy=True) for _, sample in self._stepped),
            schedulers=tuple(_scheduler_state(scheduler) for scheduler, _ in self._stepped),
            rng=_rng(self.generator),
            shapes=dict(self.shapes),
        )

    _fresh = True  # the next scheduler step is a new step's first

    def scheduler_step(
        self, original: Any, scheduler: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """One scheduler step: kept for a checkpoint, or, replaying, taken on zeros (and in the
        step the checkpoint closed, given the saved sample and state)."""
        if self._fresh:  # the outputs kept are the latest step's
            self._stepped = []
            self._fresh = False
        if not self.replaying:
            out = original(scheduler, *args, **kwargs)
            self._stepped.append((scheduler, _prev_sample(out).detach().clone()))
            return out
        assert self.resume is not None
        sample = args[2] if len(args) > 2 else kwargs["sample"]
        zeros = torch.zeros_like(sample)
        if args:
            args = (zeros, *args[1:])
        else:
            kwargs = kwargs | {"model_output": zeros}
        out = original(scheduler, *args, **kwargs)
        if self.steps_done == self.resume.step - 1:  # the step the checkpoint closed
            index = self._calls
            if index >= len(self.resume.samples):
                raise ResumeMismatch(f"step {self.steps_done + 1}: more scheduler steps than were saved")
            _set_scheduler_state(scheduler, self.resume.schedulers[index])
            saved = self.resume.samples[index].to(sample.device, sample.dtype)
            out = _with_prev_sample(out, saved)
            self._stepped.append((scheduler, saved))  # a checkpoint at this boundary saves it again
        self._calls += 1
        return out

    def denoise(self, name: str, original: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = _signature(name, args, kwargs)
        if self.replaying:
            template = self.shapes.get(key)
            if template is None:
                raise ResumeMismatch(f"{name} called with inputs the checkpointed run never gave it")
            return _build(template)
        out = original(*args, **kwargs)
        if key not in self.shapes and self.unsupported is None:
            try:
                self.shapes[key] = _describe(out)
            except TypeError as error:
                self.unsupported = f"{name} returns {error}"
        return out


@contextmanager
def recording(call: Any, recorder: StepRecorder) -> Iterator[StepRecorder]:
    """Route `call`'s denoisers and every scheduler's step through `recorder` for the call made
    inside; all undone on the way out."""
    global _ACTIVE
    with _PATCH_LOCK:
        if _ACTIVE is not None:
            raise RuntimeError("one recorded pipeline call at a time in a process")
        _ACTIVE = recorder
    denoisers = _denoisers(call)
    steps = _scheduler_classes()
    try:
        for name, module, _ in denoisers:
            module.forward = _denoiser_forward(name, module.forward, recorder)
        for cls, original in steps:
            cls.step = _scheduler_step(original)
        yield recorder
    finally:
        for _, module, own in denoisers:
            if own is None:
                del module.forward  # the class's forward again
            else:
                module.forward = own  # a forward of its own (mmgp's hooks) stays
        for cls, original in steps:
            cls.step = original
        with _PATCH_LOCK:
            _ACTIVE = None


def _denoisers(call: Any) -> list[tuple[str, torch.nn.Module, Any]]:
    """The call's denoisers by name, each with the forward it holds as its own (None: its class's)."""
    found: list[tuple[str, torch.nn.Module, Any]] = []
    for name in DENOISER_NAMES:
        module = getattr(call, name, None)
        if isinstance(module, torch.nn.Module) and all(module is not m for _, m, _ in found):
            found.append((name, module, vars(module).get("forward")))
    return found


def _denoiser_forward(name: str, original: Any, recorder: StepRecorder) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return recorder.denoise(name, original, args, kwargs)

    return forward


def _scheduler_step(original: Any) -> Any:
    def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorder = _ACTIVE
        if recorder is None:
            return original(self, *args, **kwargs)
        return recorder.scheduler_step(original, self, args, kwargs)

    return step


def _scheduler_classes() -> list[tuple[Any, Any]]:
    """Every scheduler class that defines its own `step`, with that step."""
    from diffusers import SchedulerMixin

    found: list[tuple[Any, Any]] = []
    pending: list[type] = [SchedulerMixin]
    seen: set[type] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if "step" in vars(cls):
            found.append((cls, vars(cls)["step"]))
        pending.extend(cls.__subclasses__())
    return found


def _prev_sample(out: Any) -> torch.Tensor:
    sample = out[0] if isinstance(out, tuple) else out.prev_sample
    if not isinstance(sample, torch.Tensor):
        raise TypeError(f"a scheduler step returned {type(sample).__name__}, not a tensor")
    return sample


def _with_prev_sample(out: Any, sample: torch.Tensor) -> Any:
    if isinstance(out, tuple):
        return (sample, *out[1:])
    out.prev_sample = sample
    return out


# A scheduler's state: its attributes of these kinds (its config is rebuilt with it).
_SKIPPED = frozenset({"_internal_dict", "config"})


def _scheduler_state(scheduler: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, value in vars(scheduler).items():
        if name in _SKIPPED or callable(value):
            continue
        try:
            state[name] = _to_plain(value)
        except TypeError:
            continue  # not state a step changes (a module, a dict of settings)
    return state


def _set_scheduler_state(scheduler: Any, state: dict[str, Any]) -> None:
    for name, value in state.items():
        current = getattr(scheduler, name, None)
        device = current.device if isinstance(current, torch.Tensor) else None
        setattr(scheduler, name, _from_plain(value, device))


def _to_plain(value: Any) -> Any:
    """A value torch.load(weights_only=True) reads back: tensors on the CPU, tagged containers."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return {"tensor": value.detach().to("cpu", copy=True)}
    if isinstance(value, np.ndarray):
        return {"numpy": torch.from_numpy(np.array(value))}
    if isinstance(value, np.generic):
        return {"numpy_scalar": torch.tensor(value.item())}
    if isinstance(value, list | tuple):
        return {"list" if isinstance(value, list) else "tuple": [_to_plain(v) for v in value]}
    raise TypeError(type(value).__name__)


def _from_plain(value: Any, device: torch.device | None = None) -> Any:
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        return value["tensor"].to(device) if device is not None else value["tensor"]
    if "numpy" in value:
        return value["numpy"].numpy()
    if "numpy_scalar" in value:
        return value["numpy_scalar"].numpy()[()]
    if "list" in value:
        return [_from_plain(v) for v in value["list"]]
    return tuple(_from_plain(v) for v in value["tuple"])


def _rng(generator: torch.Generator) -> dict[str, torch.Tensor]:
    states = {"generator": generator.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{index}"] = state
    return states


def _set_rng(states: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    generator.set_state(states["generator"])
    torch.set_rng_state(states["cpu"])
    cuda = [states[f"cuda{i}"] for i in range(len(states)) if f"cuda{i}" in states]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _signature(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A denoiser call's inputs as shapes: the same step of a replay gives the same."""
    parts = [name, *(_shape_of(a) for a in args)]
    parts += [f"{k}={_shape_of(v)}" for k, v in sorted(kwargs.items())]
    return "|".join(parts)


def _shape_of(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)}{str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_shape_of(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shape_of(v)}" for k, v in sorted(value.items())) + "}"
    return type(value).__name__


def _describe(out: Any) -> Any:
    """A denoiser's output as a template of plain values; TypeError for what cannot be rebuilt."""
    if out is None or isinstance(out, bool | int | float | str):
        return {"value": out}
    if isinstance(out, torch.Tensor):
        return {
            "zeros": list(out.shape),
            "dtype": str(out.dtype).removeprefix("torch."),
            "device": str(out.device),
        }
    if isinstance(out, list | tuple) and type(out) in (list, tuple):
        return {type(out).__name__: [_describe(v) for v in out]}
    if isinstance(out, dict):  # diffusers' BaseOutput is an ordered dict of its fields
        cls = type(out)
        return {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "fields": {k: _describe(v) for k, v in out.items()},
        }
    raise TypeError(f"a {type(out).__name__}")


def _build(template: dict[str, Any]) -> Any:
    if "value" in template:
        return template["value"]
    if "zeros" in template:
        dtype = getattr(torch, template["dtype"])
        return torch.zeros(template["zeros"], dtype=dtype, device=template["device"])
    if "list" in template:
        return [_build(t) for t in template["list"]]
    if "tuple" in template:
        return tuple(_build(t) for t in template["tuple"])
    module, name = template["class"].split(":")
    cls: Any = importlib.import_module(module)
    for part in name.split("."):
        cls = getattr(cls, part)
    return cls(**{k: _build(t) for k, t in template["fields"].items()})
