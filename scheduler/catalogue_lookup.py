"""The catalogue as a policy reads it: each lookup worked out once for the policy's lifetime.

The catalogue is read once per process, so a preset or an estimate found once stays true; an unknown
model is None, not an error.
"""

from __future__ import annotations

from collections.abc import Callable

from models.catalogue import ModelPreset, get_model
from models.memory import JobSize, MemoryNeed, estimate
from models.profiles import Profile


class CatalogueLookup:
    """`presets(model_id)` once per model, and models.memory.estimate once per (model, profile, size)."""

    def __init__(self, presets: Callable[[str], ModelPreset] = get_model) -> None:
        # Passed in so that tests and the simulator can use presets of their own.
        self._lookup = presets
        self._presets: dict[str, ModelPreset | None] = {}
        self._needs: dict[tuple[str, Profile, JobSize], MemoryNeed] = {}

    def preset(self, model_id: str) -> ModelPreset | None:
        """The model's preset; None when the catalogue does not know it."""
        if model_id not in self._presets:
            try:
                self._presets[model_id] = self._lookup(model_id)
            except LookupError:
                self._presets[model_id] = None
        return self._presets[model_id]

    def need(self, preset: ModelPreset, profile: Profile, size: JobSize) -> MemoryNeed:
        """models.memory.estimate: tens of microseconds, asked for the same few triples thousands of
        times a busy round."""
        key = (preset.id, profile, size)
        need = self._needs.get(key)
        if need is None:
            need = self._needs[key] = estimate(preset, profile, size)
        return need
