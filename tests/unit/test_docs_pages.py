"""The README is the user guide and docs/ holds the rest: every link between them resolves, every
docs page is in the index, and the README's command block names every command and flag."""

from __future__ import annotations

import contextlib
import io
import re
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, REPO / "helm" / "wanfarm" / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_relative_link_names_a_file_and_heading_that_exist() -> None:
    broken = [
        f"{page.relative_to(REPO)}: {target}"
        for page in PAGES
        for target in LINK.findall(page.read_text())
        if not target.startswith(("http://", "https://")) and not _resolves(page, target)
    ]
    assert broken == []


def test_every_docs_page_is_listed_in_the_docs_index() -> None:
    index = (DOCS / "README.md").read_text()
    listed = {target.partition("#")[0] for target in LINK.findall(index)}
    assert {page.name for page in DOCS.glob("*.md")} - {"README.md"} <= listed


def test_the_readme_stays_a_user_guide_of_about_250_lines() -> None:
    assert len(README.read_text().splitlines()) <= 260


def test_the_readme_command_block_names_every_command_and_flag() -> None:
    block = _command_block()
    missing = [
        f"{command} {flag}"
        for command in _commands()
        for flag in [f"wanfarm {command}", *_flags(command)]
        if flag not in block
    ]
    assert missing == []


def _resolves(page: Path, target: str) -> bool:
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.exists():
        return False
    return not anchor or destination.is_dir() or anchor in _anchors(destination)


def _anchors(page: Path) -> set[str]:
    # GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens.
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def _command_block() -> str:
    section = README.read_text().split("## Command line", 1)[1]
    return section.split("```")[1]


def _commands() -> list[str]:
    usage = _help()
    choices = re.search(r"\{([a-z,]+)\}", usage)
    assert choices, usage
    return choices.group(1).split(",")


def _flags(command: str) -> list[str]:
    return sorted(set(re.findall(r"--[a-z][a-z-]*", _help(command))) - {"--help"})


def _help(*command: str) -> str:
    # The installed `wanfarm` entry point, wherever the command line's module lives.
    (main,) = [entry.load() for entry in entry_points(group="console_scripts", name="wanfarm")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*command, "--help"])
    return out.getvalue()
