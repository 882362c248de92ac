"""The package layout: stages import only earlier stages, no cycles, old paths still work."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sxtquant"

#: The stages in the order data flows through them; a module may import its own stage
#: and earlier ones, never a later one. ``core`` is what every stage shares.
STAGES = (
    "core",
    "io",
    "simulate",
    "nn",
    "quantify",
    "evaluate",
    "train",
    "scale",
    "pipeline",
    "report",
    "cli",
)
#: Modules that may exceed this many lines say why in their docstring ("Why this size").
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _lazy_table(package: str) -> dict[str, str]:
    """name -> submodule of a package's lazy re-exports (``sxtquant.core.lazy``)."""
    init = PACKAGE.parent.joinpath(*package.split("."), "__init__.py")
    table = {}
    if init.exists():
        for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and isinstance(value, ast.Tuple | ast.List):
                        where = (
                            key.value
                            if key.value.startswith("sxtquant.")
                            else f"{package}.{key.value}"
                        )
                        table |= {e.value: where for e in value.elts}
    return table


def _imports(path: Path) -> set[str]:
    """Every sxtquant module a file imports, at the top or inside functions; a name
    taken from a package's lazy re-exports counts as an import of its submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sxtquant")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sxtquant":
                found |= {f"sxtquant.{a.name}" for a in node.names}
            elif node.module.startswith("sxtquant"):
                table = _lazy_table(node.module)
                found |= {table.get(a.name, node.module) for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_legacy.py"
    }


def test_no_stage_imports_a_later_one():
    rank = {stage: i for i, stage in enumerate(STAGES)}
    problems = []
    for module, imported in _graph().items():
        here = _stage(module)
        if here is None:
            continue
        for other in imported:
            there = _stage(other)
            if there is not None and rank[there] > rank[here]:
                problems.append(f"{module} imports {other} ({there} comes after {here})")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules():
    graph = _graph()
    modules = set(graph)

    def resolve(name: str) -> str | None:  # a name imported from a package: the package
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {
        m: {r for i in imported if (r := resolve(i)) and r != m} for m, imported in graph.items()
    }
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend([*stack, node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, node]):
                return True
        state[node] = 2
        return False

    for module in sorted(edges):
        if state.get(module) is None and visit(module, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_long_modules_say_why():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > MAX_LINES * 1.1 and "Why this size" not in doc:
            long.append(f"{path.relative_to(PACKAGE)}: {lines} lines")
    assert not long, "modules over ~500 lines without a reason:\n" + "\n".join(long)


OLD_NAMES = json.loads((Path(__file__).parent / "fixtures" / "old_public_names.json").read_text())


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_module_paths_keep_their_public_names(old):
    module = importlib.import_module(old)
    missing = [name for name in OLD_NAMES[old] if not hasattr(module, name)]
    assert not missing, f"{old} lost {missing}"


def test_contract_names_are_the_new_objects():
    """The Python contract of DESIGN.md at its old module paths: the same objects."""
    old = {
        "sxtquant.morphology": ("measure_objects", "sxtquant.quantify.morphology"),
        "sxtquant.model": ("build_model", "sxtquant.nn.network"),
        "sxtquant.infer": ("predict_slices", "sxtquant.nn.predict"),
        "sxtquant.convert": ("load_keras_weights", "sxtquant.nn.keras"),
    }
    for path, (name, new) in old.items():
        assert getattr(importlib.import_module(path), name) is getattr(
            importlib.import_module(new), name
        )
    assert (
        importlib.import_module("sxtquant.model").load_model
        is importlib.import_module("sxtquant.nn.checkpoint").load_model
    )
