"""The package keeps its floors: no module imports from a floor above its own, and no files import each
other in a circle (docs/architecture.md, "Layers").

The imports are read from the source (every `import` statement, including those inside functions and
under TYPE_CHECKING), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import compofa

PACKAGE = Path(compofa.__file__).parent

#: Floors from the ground up; a part is a subpackage or a top-level module of compofa.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "fileio", "registry", "extras", "torchfile", "data"),
    ("space",),
    ("lut",),
    ("graphs",),
    ("supernet",),
    ("sources",),
    ("devices",),
    ("profiler",),
    ("agent",),
    ("remote",),
    ("tables",),
    ("jobs",),
    ("search",),
    ("report",),
    ("cli", "__main__"),
)
FLOOR_OF = {part: level for level, parts in enumerate(FLOORS) for part in parts}
#: Downward imports that are still wrong: these parts must work without PyTorch, which `supernet`
#: needs, and backends are handed their networks by a source instead of building them.
NEVER = {
    "devices": ("supernet", "graphs", "sources"),
    "profiler": ("supernet",),
    "agent": ("supernet",),
    "remote": ("supernet",),
    "tables": ("supernet", "devices"),
    "search": ("supernet",),
    "report": ("supernet",),
}


def module_name(path: Path) -> str:
    parts = ("compofa", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def part_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def resolve(name: str) -> str | None:
    """The compofa module (file) an imported name lives in, or None outside compofa."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = resolve(name) if name.startswith("compofa") else None
            if target and target != module:
                found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_part_has_a_floor() -> None:
    assert {part_of(module) for module in MODULES} <= set(FLOOR_OF), "add the new part to FLOORS and the docs"


def test_no_import_goes_up_a_floor() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if FLOOR_OF[part_of(target)] > FLOOR_OF[part_of(module)]
    ]
    assert not upward, "imports from a higher floor:\n" + "\n".join(upward)


def test_torch_free_parts_never_import_the_supernet() -> None:
    wrong = [
        f"{module} -> {target}"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if part_of(target) in NEVER.get(part_of(module), ())
    ]
    assert not wrong, "imports against the rules of NEVER:\n" + "\n".join(wrong)


def test_no_files_import_each_other_in_a_circle() -> None:
    # A package's __init__ is a face: importing it means importing what it re-exports, so edges are
    # followed through it, and the __init__ files themselves are left out of the circles.
    def through(module: str, seen: set[str]) -> set[str]:
        out: set[str] = set()
        for target in GRAPH[module]:
            if MODULES[target].name == "__init__.py":
                if target not in seen:
                    seen.add(target)
                    out |= through(target, seen)
            else:
                out.add(target)
        return out

    files = [module for module in MODULES if MODULES[module].name != "__init__.py"]
    edges = {module: through(module, set()) for module in files}
    circles = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(", ".join(sorted(component)))

    for module in files:
        if module not in index:
            visit(module)
    assert not circles, "files importing each other in a circle:\n" + "\n".join(circles)
