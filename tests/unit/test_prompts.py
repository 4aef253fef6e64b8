"""WanGP's multi-line prompts: what `multi_prompts_gen_type` makes of one settings object's prompt
(one object per line or paragraph, comments and macros applied, the other keys kept), and the
modes WanFarm refuses by name."""

from __future__ import annotations

from typing import Any

import pytest

from models.prompts import (
    MAX_EXPANDED_CHARS,
    PromptError,
    PromptMode,
    expand_prompts,
    prompt_mode,
    window_commands,
    window_prompts,
)

THREE_LINES = "a red fox in the snow\na heron on a lake\na lighthouse at night"


def settings(prompt: str, mode: object = "G", **more: Any) -> dict[str, Any]:
    return {"model_type": "wan-tiny", "prompt": prompt, "multi_prompts_gen_type": mode, "seed": 7} | more


def prompts(data: dict[str, Any]) -> list[object]:
    return [unit["prompt"] for unit in expand_prompts(data)]


def test_each_line_is_a_settings_object_with_every_other_key_kept() -> None:
    data = settings(THREE_LINES, video_length=9, negative_prompt="blur", repeat_generation=2)
    units = expand_prompts(data)
    assert [u["prompt"] for u in units] == THREE_LINES.split("\n")
    for unit in units:
        assert {k: v for k, v in unit.items() if k != "prompt"} == {
            k: v for k, v in data.items() if k != "prompt"
        }
    assert data["prompt"] == THREE_LINES  # the caller's object is left as it was


def test_comment_and_empty_lines_make_no_video_and_lines_are_trimmed() -> None:
    prompt = "# the animals\n\n  a red fox  \n   # a heron, later\n\na lighthouse\n\n"
    assert prompts(settings(prompt)) == ["a red fox", "a lighthouse"]


def test_windows_line_endings_split_like_newlines() -> None:
    assert prompts(settings("a fox\r\na heron\ra lake")) == ["a fox", "a heron", "a lake"]


def test_paragraph_mode_makes_one_video_per_paragraph() -> None:
    prompt = "a fox runs\nthrough snow\n\n# not this\n\n\na heron\nstands still"
    assert prompts(settings(prompt, "PG")) == ["a fox runs\nthrough snow", "a heron\nstands still"]


def test_the_whole_mode_keeps_the_lines_one_prompt_without_its_comments() -> None:
    prompt = "a fox runs\n# a note\nthrough snow\n\nat dawn"
    assert prompts(settings(prompt, "FG")) == ["a fox runs\nthrough snow\nat dawn"]


def test_a_missing_mode_is_wangps_default_one_video_per_paragraph() -> None:
    data = {"model_type": "wan-tiny", "prompt": "a fox\nin snow\n\na heron"}
    assert prompt_mode(None) is PromptMode.PARAGRAPHS
    assert prompts(data) == ["a fox\nin snow", "a heron"]


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (0, PromptMode.LINES),
        ("1", PromptMode.WINDOW_LINES),
        (2, PromptMode.WHOLE),
        ("", PromptMode.WHOLE),
        ("p", PromptMode.PARAGRAPHS),
        (" pg ", PromptMode.PARAGRAPHS),
        ("pw", PromptMode.WINDOW_PARAGRAPHS),
    ],
)
def test_wangps_legacy_numbers_and_shorthands_name_their_modes(value: object, mode: PromptMode) -> None:
    assert prompt_mode(value) is mode


@pytest.mark.parametrize("value", ["X", 3, True, 1.5, ["G"]])
def test_a_value_that_is_no_mode_is_refused_naming_the_key_and_the_choices(value: object) -> None:
    with pytest.raises(PromptError) as refused:
        expand_prompts(settings("a fox", value))
    message = str(refused.value)
    assert message.startswith(f"multi_prompts_gen_type: {value!r} is not a WanGP mode")
    assert "'G' (one video per line)" in message and "'FG' (all the lines one prompt)" in message


@pytest.mark.parametrize(("seed", "expected"), [(42, 42), (-1, -1)])
def test_every_line_keeps_the_seed_as_wangp_queues_it(seed: int, expected: int) -> None:
    # A fixed seed renders every line with that seed; -1 stays -1, so each line draws its own.
    assert [u["seed"] for u in expand_prompts(settings(THREE_LINES, seed=seed))] == [expected] * 3


@pytest.mark.parametrize("mode", ["G", "PG", "FG", "W", "PW", None])
def test_expanding_an_expanded_object_changes_nothing(mode: object) -> None:
    prompt = '# notes\n! {animal}="fox","heron"\na {animal} at dawn\n\n  a lake  \n#!PROMPT!: a lake\n'
    for unit in expand_prompts(settings(prompt, "G" if mode in ("W", "PW") else mode)):
        unit["multi_prompts_gen_type"] = mode
        assert expand_prompts(unit) == [unit]


def test_a_one_line_prompt_comes_back_as_it_is() -> None:
    data = settings("a red fox in the snow, cinematic")
    assert expand_prompts(data) == [data]


def test_settings_without_a_text_prompt_come_back_for_the_schema_to_judge() -> None:
    assert expand_prompts({"model_type": "wan-tiny"}) == [{"model_type": "wan-tiny"}]
    assert expand_prompts(settings(None)) == [settings(None)]  # type: ignore[arg-type]
    assert prompts(settings("# only a note")) == [""]


@pytest.mark.parametrize(
    ("mode", "windows"),
    [
        ("W", ["a fox", "at dawn", "a heron"]),
        ("PW", ["a fox\nat dawn", "a heron"]),
        (1, ["a fox", "at dawn", "a heron"]),
    ],
)
def test_one_sliding_window_per_unit_keeps_one_video_whose_windows_read_the_units(
    mode: object, windows: list[str]
) -> None:
    # The template applied, comments gone: one settings object, its units as WanGP writes them back.
    [video] = expand_prompts(settings("# notes\na fox\nat dawn\n\n\na heron", mode))
    assert video["prompt"] == ("\n\n" if mode == "PW" else "\n").join(windows)
    assert window_prompts(video) == windows and expand_prompts(video) == [video]
    assert window_prompts(settings("a fox\na heron", "G")) == []  # one video per line, not windows


def test_wangps_window_commands_are_found() -> None:
    assert window_commands("[/duration 2s] a fox\na heron [ / new_shot ]") == [
        "[/duration 2s]",
        "[ / new_shot ]",
    ]
    assert window_commands("a fox [in brackets]") == []


def test_a_window_mode_with_a_single_prompt_is_one_ordinary_video() -> None:
    assert prompts(settings("a fox\n# one window only", "W")) == ["a fox"]


def test_a_macro_line_makes_its_lines_once_per_value() -> None:
    prompt = '! {animal}="fox","heron" : {light}="dawn"\na {animal} at {light}\n! no variables\na lake'
    assert prompts(settings(prompt)) == ["a fox at dawn", "a heron at dawn", "a lake"]


def test_wangps_enhanced_prompt_marker_is_not_a_prompt() -> None:
    assert prompts(settings("!enhanced!\na fox in the snow\na heron")) == ["a fox in the snow", "a heron"]


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("a {colour} fox", "line 1 uses {colour}, which no macro line above it defines"),
        ('! {animal}="fox" "heron"\na {animal}', 'write each variable as {name}="value","value"'),
        ('! {animal}="fox\na {animal}', "a double quote is not closed"),
    ],
    ids=["undefined variable", "missing comma", "open quote"],
)
def test_a_broken_template_is_refused_naming_the_prompt_and_the_line(prompt: str, words: str) -> None:
    with pytest.raises(PromptError) as refused:
        expand_prompts(settings(prompt, "FG"))
    assert str(refused.value).startswith("prompt: ") and words in str(refused.value)


def test_a_voice_models_speaker_options_are_not_template_variables() -> None:
    assert prompts(settings("Speaker 1 {calm}: hello", "FG")) == ["Speaker 1 {calm}: hello"]


def test_more_units_than_allowed_are_refused_before_any_copy_is_made() -> None:
    with pytest.raises(PromptError, match=r"prompt: holds 3 prompts \(one video per line\), more than the 2"):
        expand_prompts(settings(THREE_LINES), max_units=2)
    assert len(expand_prompts(settings(THREE_LINES), max_units=3)) == 3


def test_a_macro_that_would_fill_the_memory_is_refused() -> None:
    values = ",".join(f'"{n}"' for n in range(2_000))
    prompt = f"! {{n}}={values}\n" + "\n".join(f"shot {{n}} of a long story, line {i}" for i in range(40))
    with pytest.raises(PromptError, match=f"over {MAX_EXPANDED_CHARS:,} characters"):
        expand_prompts(settings(prompt))
