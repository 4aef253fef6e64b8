"""Static checks of a Helm chart's templates without a helm binary: balanced actions, and every
`.Values` path a template reads exists in values.yaml (`range`/`with` scopes resolved roughly)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
OPENERS = ("if", "range", "with", "define", "block")
VALUES_PATH = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
DOT_PATH = re.compile(r"(?<![\w$)\]])\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
BUILTINS = {"Values", "Release", "Chart", "Files", "Capabilities", "Template"}


@dataclass(frozen=True)
class Scope:
    """What `.` means inside a block: a values node (`items`: ranging over a list), the root, or unknown."""

    kind: str  # "root" | "values" | "unknown"
    path: tuple[str, ...] = ()
    items: bool = False


def unbalanced(template: str) -> str | None:
    """Why the template's block actions do not balance, or None when they do."""
    depth = 0
    for action in ACTION.findall(template):
        word = action.split(maxsplit=1)[0] if action.strip() else ""
        if word in OPENERS:
            depth += 1
        elif word == "end":
            depth -= 1
            if depth < 0:
                return "an {{ end }} closes nothing"
    return None if depth == 0 else f"{depth} block(s) never closed"


def missing_values(template: str, values: dict[str, Any]) -> list[str]:
    """The values paths the template reads that values.yaml lacks (dotted, list items as [])."""
    missing: list[str] = []
    stack = [Scope("root")]
    for action in ACTION.findall(template):
        if action.startswith("/*"):
            continue
        word, _, rest = action.partition(" ")
        for path in _paths(action, stack[-1]):
            if not _exists(values, path):
                missing.append(".".join(path))
        if word in ("range", "with"):
            stack.append(_scope_of(rest, ranging=word == "range"))
        elif word in ("if", "block"):
            stack.append(stack[-1])
        elif word == "define":
            stack.append(Scope("root"))
        elif word == "end" and len(stack) > 1:
            stack.pop()
    return missing


def _paths(action: str, scope: Scope) -> list[tuple[str, ...]]:
    code = STRING.sub('""', action)
    paths = [tuple(match.group(1)[1:].split(".")) for match in VALUES_PATH.finditer(code)]
    if scope.kind == "values":
        without_values = VALUES_PATH.sub("", code)
        for match in DOT_PATH.finditer(without_values):
            relative = tuple(match.group(1).split("."))
            if relative[0] not in BUILTINS:
                paths.append((*scope.path, *(("[]",) if scope.items else ()), *relative))
    return paths


def _scope_of(expression: str, ranging: bool) -> Scope:
    match = VALUES_PATH.fullmatch(expression.strip())
    if match:
        return Scope("values", tuple(match.group(1)[1:].split(".")), items=ranging)
    return Scope("unknown")


def _exists(node: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if key == "[]":
            if not isinstance(node, list) or not node:
                return False
            node = node[0]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return False
    return True
