"""The package's import rules, read from the source with ``ast`` (so they hold without importing it):

* ``nnctl.engine`` (the math) imports nothing of nnctl but itself and ``nnctl.errors``, and no file,
  YAML or terminal library;
* only ``nnctl.cli`` imports rich, typer or click;
* ``nnctl.data``, ``nnctl.training`` and ``nnctl.sweep`` never import the command layer;
* the module-level imports between nnctl modules form no cycle.

Imports inside functions count for the first three rules (they run when the function does); the
cycle rule looks at module-level imports only, which is what Python executes on import.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nnctl"

#: What the engine must not import: terminal, YAML and file libraries, and nnctl's outer layers.
ENGINE_FORBIDDEN_LIBRARIES = (
    *("yaml", "rich", "typer", "click"),
    *("pathlib", "csv", "zipfile", "tempfile", "shutil"),
)
ENGINE_ALLOWED_NNCTL = ("nnctl.engine", "nnctl.errors")
TERMINAL_LIBRARIES = ("rich", "typer", "click")
COMMAND_LAYER = ("nnctl.cli", "nnctl.workflows")
BELOW_COMMANDS = ("nnctl.data", "nnctl.training", "nnctl.sweep")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. nnctl.engine.network
    target: str  # what it imports, resolved to a module where it names one (nnctl.engine.costs)
    line: int
    top_level: bool  # executed when the module is imported (not inside a function or TYPE_CHECKING)

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports included)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    is_package = modules()[module].name == "__init__.py"
    base = package if is_package else package[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _deferred(node: ast.AST) -> bool:
    """A function body or an ``if TYPE_CHECKING:`` block: not run when the module is imported."""
    if isinstance(node, ast.If):
        return _is_type_checking(node)
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)


def _walk(node: ast.AST, top_level: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if _deferred(child):
            yield from _walk(child, False)
        else:
            yield child, top_level
            yield from _walk(child, top_level)


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    return imports_in_source(module, modules()[module].read_text(encoding="utf-8"))


def imports_in_source(module: str, source: str) -> tuple[Import, ...]:
    tree = ast.parse(source)
    found = []
    for node, top_level in _walk(tree, True):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno, top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                target = submodule if submodule in modules() else source
                found.append(Import(module, target, node.lineno, top_level))
    return tuple(found)


def all_imports() -> list[Import]:
    return [imp for module in modules() for imp in imports_of(module)]


def _engine_rule(imp: Import) -> bool:
    if not is_within(imp.module, "nnctl.engine"):
        return True
    foreign_nnctl = is_within(imp.target, "nnctl") and not is_within(imp.target, ENGINE_ALLOWED_NNCTL)
    return not (foreign_nnctl or is_within(imp.target, ENGINE_FORBIDDEN_LIBRARIES))


def _terminal_rule(imp: Import) -> bool:
    return is_within(imp.module, "nnctl.cli") or not is_within(imp.target, TERMINAL_LIBRARIES)


def _layers_rule(imp: Import) -> bool:
    return not (is_within(imp.module, BELOW_COMMANDS) and is_within(imp.target, COMMAND_LAYER))


RULES: dict[str, Callable[[Import], bool]] = {
    "engine": _engine_rule,
    "terminal": _terminal_rule,
    "layers": _layers_rule,
}


def violations(rule: str, imports: list[Import] | None = None) -> list[str]:
    """The imports (default: the package's) that break ``rule``, one of the rules in the docstring."""
    holds = RULES[rule]
    return [str(imp) for imp in (all_imports() if imports is None else imports) if not holds(imp)]


def import_graph() -> dict[str, set[str]]:
    """nnctl module -> the nnctl modules its module-level imports execute (parent packages too)."""
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for imp in all_imports():
        if not imp.top_level or not is_within(imp.target, "nnctl"):
            continue
        parts = imp.target.split(".")
        for end in range(1, len(parts) + 1):
            target = ".".join(parts[:end])
            if target in graph and target != imp.module:
                graph[imp.module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(following) == 1:
                return [*path[path.index(following) :], following]
            elif following not in state:
                state[following] = 1
                path.append(following)
                stack.append(iter(sorted(graph[following])))
    return None


# -- the rules ---------------------------------------------------------------------------------


def test_the_reader_sees_every_module_and_its_imports() -> None:
    """Guards the rules below against passing because nothing was read."""
    names = modules()
    assert {"nnctl.engine.network", "nnctl.cli.app", "nnctl.sweep.worker", "nnctl.config"} <= set(names)
    targets = {imp.target for imp in imports_of("nnctl.engine.network")}
    assert {"numpy", "nnctl.engine.costs", "nnctl.engine.activations"} <= targets
    lazy = [imp for imp in imports_of("nnctl.cli.app") if not imp.top_level and imp.target.startswith("rich")]
    assert lazy, "imports inside functions are read"


def test_engine_imports_no_file_yaml_terminal_or_outer_nnctl_code() -> None:
    assert violations("engine") == []


def test_only_the_cli_imports_rich_or_typer() -> None:
    assert violations("terminal") == []


def test_data_training_and_sweep_never_import_the_command_layer() -> None:
    assert violations("layers") == []


def test_no_import_cycle_between_nnctl_modules() -> None:
    assert find_cycle(import_graph()) is None


# -- the checker itself catches what it must -----------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("nnctl.engine.metrics", "import yaml\n", "engine"),
        ("nnctl.engine.metrics", "def f():\n    from nnctl.config import Config\n", "engine"),
        ("nnctl.engine.metrics", "from nnctl.data import load\n", "engine"),
        ("nnctl.engine.metrics", "from .. import checkpoint\n", "engine"),
        ("nnctl.training.loop", "def f():\n    import rich.console\n", "terminal"),
        ("nnctl.sweep.store", "from nnctl.workflows import plan_training\n", "layers"),
        ("nnctl.data.load", "def f():\n    from nnctl.cli import app\n", "layers"),
    ],
)
def test_a_planted_violation_is_caught(module: str, source: str, rule: str) -> None:
    planted = imports_in_source(module, modules()[module].read_text(encoding="utf-8") + "\n" + source)
    others = [imp for imp in all_imports() if imp.module != module]
    assert violations(rule, others + list(planted)) != []


def test_a_planted_cycle_is_found() -> None:
    graph = import_graph()
    assert find_cycle(graph) is None
    graph["nnctl.engine.activations"].add("nnctl.engine.network")  # network imports activations
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"nnctl.engine.activations", "nnctl.engine.network"} <= set(cycle)
