"""WanGP's multi-line prompts: what `multi_prompts_gen_type` makes of one settings object's prompt.

WanGP reads a prompt as a small template, then cuts it into prompt units: one video per line,
one per paragraph, one sliding window per line or paragraph of a single long video, or the whole
text as one prompt. Read from WanGP 8681e9f7: shared/utils/prompt_parser.py (modes, lines 6-58;
templates, lines 177-339) and wgp.py (validate_settings, lines 1009-1055; one queued task per
unit, lines 633-723 and add_video_task 1559-1575; a missing or legacy mode, fix_settings
3061-3070; seeds, set_seed 5787-5795 and generate_video 7194 and 8301).

Each unit keeps every other key of its settings, the seed included: WanGP queues a copy of the
same inputs per unit, so a fixed seed renders every unit with that seed and -1 draws one per unit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

MODE_KEY = "multi_prompts_gen_type"
PROMPT_KEY = "prompt"
# A template can multiply its lines: this is 1,000 prompts of 2,000 characters, more than one batch
# may make, and it is refused before the lines fill the memory.
MAX_EXPANDED_CHARS = 2_000_000
# WanGP's voice models write "Speaker 1 {options}:" lines, which its template leaves alone.
_SPEAKER_LINE = re.compile(r"^\s*Speaker\s*\d+\s*\{[^{}\n]*\}\s*:", re.IGNORECASE)
_VARIABLE_REF = re.compile(r"\{([^}]+)\}")
# A macro line's `{name} = "value", "value"`, after any free text.
_ASSIGNMENT = re.compile(r'[^{}"]*\{([^{}]*)\}\s*=\s*("[^"]*"(?:\s*,\s*"[^"]*")*)')
_QUOTED = re.compile(r'"([^"]*)"')
_WINDOW_COMMAND = re.compile(r"\[\s*/\s*[^\]]+?\s*\]")


class PromptMode(Enum):
    """The values of `multi_prompts_gen_type`, as WanGP 2.56 and later write them."""

    LINES = "G"  # each line a new video
    PARAGRAPHS = "PG"  # each paragraph (lines up to an empty line) a new video
    WINDOW_LINES = "W"  # each line a new sliding window of one video
    WINDOW_PARAGRAPHS = "PW"  # each paragraph a new sliding window of one video
    WHOLE = "FG"  # all the lines one prompt

    @property
    def paragraphs(self) -> bool:
        return self in (PromptMode.PARAGRAPHS, PromptMode.WINDOW_PARAGRAPHS)

    @property
    def windows(self) -> bool:
        return self in (PromptMode.WINDOW_LINES, PromptMode.WINDOW_PARAGRAPHS)

    @property
    def unit(self) -> str:
        return "paragraph" if self.paragraphs else "line"

    @property
    def meaning(self) -> str:
        if self is PromptMode.WHOLE:
            return "all the lines one prompt"
        return f"one sliding window per {self.unit}" if self.windows else f"one video per {self.unit}"


# WanGP's own default (its server config) when a settings object does not say.
DEFAULT_MODE = PromptMode.PARAGRAPHS
# What WanGP reads besides the current letters: its legacy numbers and shorthands.
_ALIASES = {"0": PromptMode.LINES, "1": PromptMode.WINDOW_LINES, "2": PromptMode.WHOLE}
_ALIASES |= {"": PromptMode.WHOLE, "P": PromptMode.PARAGRAPHS}
_BY_VALUE = {mode.value: mode for mode in PromptMode}


class PromptError(ValueError):
    """A prompt, or its `multi_prompts_gen_type`, that WanFarm cannot turn into jobs."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def expand_prompts(data: Mapping[str, object], max_units: int | None = None) -> list[dict[str, object]]:
    """One settings object per prompt unit; a one-unit prompt comes back as one object.

    The units are the prompt with WanGP's comments, macros and blank lines applied, so expanding
    an expanded object changes nothing. Raises PromptError naming the key at fault, also when
    the prompt holds more than `max_units` units.
    """
    given = data.get(MODE_KEY)
    mode = prompt_mode(model_mode(data.get("model_type")) if given is None else given)
    prompt = data.get(PROMPT_KEY)
    if not isinstance(prompt, str):
        return [dict(data)]  # no prompt, or not text: the settings schema reports it
    units = prompt_units(prompt, mode, template=takes_template(data.get("model_type")))
    if len(units) <= 1:
        # WanGP refuses an empty prompt; WanFarm leaves that to the model (an empty prompt is "").
        return [{**data, PROMPT_KEY: units[0] if units else ""}]
    if mode.windows:
        # One video whose windows take the units in turn (models.settings checks the model has
        # windows): one settings object, its prompt the units as WanGP writes them back.
        return [{**data, PROMPT_KEY: ("\n\n" if mode.paragraphs else "\n").join(units)}]
    if max_units is not None and len(units) > max_units:
        raise PromptError(
            PROMPT_KEY,
            f"holds {len(units)} prompts ({mode.meaning}), more than the {max_units} jobs one "
            "submission may make; split it over several",
        )
    return [{**data, PROMPT_KEY: unit} for unit in units]


def window_prompts(data: Mapping[str, object]) -> list[str]:
    """The prompt of each sliding window, in order, when the mode gives one per unit (WanGP's
    generate_video: window i reads unit i, the last unit the windows past it); [] otherwise."""
    mode, prompt = prompt_mode(data.get(MODE_KEY)), data.get(PROMPT_KEY)
    return prompt_units(prompt, mode) if mode.windows and isinstance(prompt, str) else []


def window_commands(prompt: str) -> list[str]:
    """WanGP's "[/duration 2s]"-style window commands in `prompt` (shared/utils/frame_scheduler.py),
    which reshape a long video's windows."""
    return [match[0] for match in _WINDOW_COMMAND.finditer(prompt)]


# Families whose WanGP model reads its prompt as written, braces and all (skip_prompt_template:
# Ideogram 4's JSON captions), where the others read macros.
_NO_TEMPLATE_FAMILIES = frozenset({"ideogram4"})


def takes_template(model_type: object) -> bool:
    """Whether WanGP reads macros in the prompt of `model_type`'s model (an unknown one: yes)."""
    from models.catalogue import UnknownModel, get_model

    if not isinstance(model_type, str):
        return True
    try:
        return get_model(model_type).family not in _NO_TEMPLATE_FAMILIES
    except UnknownModel:
        return True


def model_mode(model_type: object) -> object:
    """The model's own default mode, which WanGP reads where a settings object leaves the key out
    (clean_settings): its music models (ACE-Step 1.5) sing the whole prompt, "FG". None where the
    model says nothing or is unknown (resolving the settings names it), for DEFAULT_MODE."""
    from models.catalogue import UnknownModel, get_model  # the catalogue reads this module's callers
    from models.wangp_keys import model_facts

    if not isinstance(model_type, str):
        return None
    try:
        preset = get_model(model_type)
    except (UnknownModel, OSError):  # a name no file can have is no model either
        return None
    return preset.wangp_defaults.get(MODE_KEY, model_facts(preset.wangp_model_types).factory.get(MODE_KEY))


def prompt_mode(value: object) -> PromptMode:
    """The mode `value` names (WanGP's letters, its legacy 0/1/2, "P"), DEFAULT_MODE for None."""
    if value is None:
        return DEFAULT_MODE
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(text, str):
        text = text.strip().upper()
        if text in _ALIASES:
            return _ALIASES[text]
        if text in _BY_VALUE:
            return _BY_VALUE[text]
    # WanGP falls back to its default here; a typo is better named than silently replaced.
    choices = ", ".join(f"{m.value!r} ({m.meaning})" for m in PromptMode)
    raise PromptError(MODE_KEY, f"{value!r} is not a WanGP mode; use one of {choices}")


def prompt_units(prompt: str, mode: PromptMode, template: bool = True) -> list[str]:
    """The prompts `prompt` holds under `mode`, after comments, macros (unless `template` is False)
    and blank lines."""
    text = prompt.replace("\r\n", "\n").replace("\r", "\n")
    # Only paragraphs need the blank lines. WanGP also keeps them in a whole prompt carrying
    # "#!PROMPT!:" history lines; dropping them there keeps a second expansion a no-op.
    text = (_apply_template(text, keep_blank_lines=mode.paragraphs) if template else text).strip()
    lines = [line.rstrip() for line in text.split("\n") if not line.strip().startswith("#")]
    text = "\n".join(lines).strip()
    if not text:
        return []
    if mode is PromptMode.WHOLE:
        return [text]
    if mode.paragraphs:
        return [block.strip() for block in re.split(r"\n{2,}", text)]
    return [line.strip() for line in lines if line.strip()]


@dataclass
class _Block:
    """Template lines under one macro line, and that line's variables."""

    variables: dict[str, list[str]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def expanded(self) -> Iterator[str]:
        # Every line once per value, cycling through shorter lists, as WanGP does.
        rounds = max((len(values) for values in self.variables.values()), default=1)
        for round_no in range(rounds):
            for line in self.lines:
                for name, values in self.variables.items():
                    line = line.replace(f"{{{name}}}", values[round_no % len(values)])
                yield line


class _Output:
    """The template's lines, refused past MAX_EXPANDED_CHARS before they fill the memory."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.size = 0

    def add(self, lines: Iterator[str]) -> None:
        for line in lines:
            self.size += len(line) + 1
            if self.size > MAX_EXPANDED_CHARS:
                raise PromptError(
                    PROMPT_KEY, f"over {MAX_EXPANDED_CHARS:,} characters once its macros are applied"
                )
            self.lines.append(line)


def _apply_template(text: str, keep_blank_lines: bool) -> str:
    """WanGP's prompt template: "#" lines dropped; a "!" line sets {variables} for the lines
    after it (`! {animal}="cat","dog"`), which repeat once per value; other "!" lines vanish."""
    output = _Output()
    block = _Block()
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line.startswith("!"):
            output.add(block.expanded())
            block = _Block(_macro_variables(line, number))
        elif line or keep_blank_lines:
            _check_references(line, block.variables, number)
            block.lines.append(line)
    output.add(block.expanded())
    return "\n".join(output.lines)


def _macro_variables(line: str, number: int) -> dict[str, list[str]]:
    if line.count('"') % 2:
        raise PromptError(PROMPT_KEY, f"line {number} ({line!r}): a double quote is not closed")
    variables: dict[str, list[str]] = {}
    for section in line[1:].split(":"):
        if "{" not in section and "}" not in section:
            continue  # free text on a macro line, which WanGP ignores
        match = _ASSIGNMENT.fullmatch(section.strip())
        if match is None or not match[1].strip():
            raise PromptError(
                PROMPT_KEY,
                f'line {number} ({line!r}): write each variable as {{name}}="value","value", '
                'the variables separated by ":"',
            )
        variables[match[1].strip()] = _QUOTED.findall(match[2])
    return variables


def _check_references(line: str, variables: Mapping[str, list[str]], number: int) -> None:
    if _SPEAKER_LINE.search(line):
        return
    for name in _VARIABLE_REF.findall(line):
        if name not in variables:
            raise PromptError(
                PROMPT_KEY,
                f"line {number} uses {{{name}}}, which no macro line above it defines "
                f'(WanGP refuses it too); define it with ! {{{name}}}="a","b" or remove the braces',
            )
