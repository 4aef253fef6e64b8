"""Catalogue lookups for one round or one policy, memoised; an unknown model is None, not an error."""

from __future__ import annotations

from collections.abc import Callable

from models.catalogue import ModelPreset


class KnownPresets:
    """`presets(model_id)` once per model; None when the catalogue does not know it."""

    def __init__(self, presets: Callable[[str], ModelPreset]) -> None:
        self._lookup = presets
        self._found: dict[str, ModelPreset | None] = {}

    def get(self, model_id: str) -> ModelPreset | None:
        if model_id not in self._found:
            try:
                self._found[model_id] = self._lookup(model_id)
            except LookupError:
                self._found[model_id] = None
        return self._found[model_id]
