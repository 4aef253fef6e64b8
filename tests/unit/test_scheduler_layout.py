"""The scheduler's folders tell its design: the interface and registry at the top, each policy in the
folder of its kind, no import circle (function-level imports included), short module docstrings."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

from scheduler.registry import get_policy, policy_names

ROOT = Path(__file__).resolve().parents[2]
SCHEDULER = ROOT / "scheduler"
POLICY_FOLDERS = ("wanfarm", "baselines")
# The simulator's ground truth states its formulas: the contract of the simulated world.
WORLD_MODELS = {"sim/truth.py", "sim/memory_truth.py"}
DOCSTRING_LINES = 12
# What a policy module may import beside its own folder: the records, the interface, the shared
# catalogue arithmetic and the preemption rule (the simulator and controller read its priority
# classes too), never the registry (which imports the policies).
SHARED = {
    "scheduler.snapshot",
    "scheduler.policy",
    "scheduler.feasibility",
    "scheduler.cost",
    "scheduler.catalogue_lookup",
    "scheduler.preemption",
}


def test_no_scheduler_module_imports_its_way_back_to_itself() -> None:
    graph = _import_graph()
    assert _circles(graph) == []


def test_each_policy_lives_in_the_folder_of_its_kind() -> None:
    homes = {name: type(get_policy(name)).__module__ for name in policy_names()}
    expected = {
        name: "scheduler.wanfarm" if name.startswith("wanfarm") else "scheduler.baselines" for name in homes
    }
    assert {name: module.rsplit(".", 1)[0] for name, module in homes.items()} == expected


def test_policy_modules_import_only_the_interface_and_their_own_folder() -> None:
    graph = _import_graph()
    strays = {
        module: sorted(target for target in targets if not _may_import(module, target))
        for module, targets in graph.items()
        if module.split(".")[1:2] and module.split(".")[1] in POLICY_FOLDERS
    }
    assert {module: targets for module, targets in strays.items() if targets} == {}


def test_only_wanfarm_calls_itself_the_farms_default() -> None:
    claims = []
    for name in policy_names():
        policy = type(get_policy(name))
        texts = [inspect.getdoc(policy) or "", inspect.getdoc(sys.modules[policy.__module__]) or ""]
        if not name.startswith("wanfarm") and any("default" in text.lower() for text in texts):
            claims.append(name)
    assert claims == []


def test_module_docstrings_state_a_contract_not_a_lab_notebook() -> None:
    long = {
        str(path.relative_to(SCHEDULER)): len(
            (ast.get_docstring(ast.parse(path.read_text())) or "").splitlines()
        )
        for path in SCHEDULER.rglob("*.py")
        if str(path.relative_to(SCHEDULER)) not in WORLD_MODELS
    }
    assert {name: lines for name, lines in long.items() if lines > DOCSTRING_LINES} == {}


def _may_import(module: str, target: str) -> bool:
    folder = ".".join(module.split(".")[:2])
    return target in SHARED or target.startswith(f"{folder}.")


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(SCHEDULER.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text())
    return modules


def _import_graph() -> dict[str, set[str]]:
    # Every import anywhere in a module, inside functions too; `from a import b` names the module
    # a.b when there is one, else a.
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in modules else node.module)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    # Strongly connected components of more than one module (Tarjan's algorithm).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(circles)
