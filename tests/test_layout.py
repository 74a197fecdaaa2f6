"""The layout shows the data flow, and stays so: layers, no import circles, and the README's
"follow one event" path names files and functions that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shoppulse"

# Lowest first. A module may import its own layer and the layers below, never one above.
LAYERS = (
    ("shoppulse.errors", "shoppulse.settings", "shoppulse.topics"),
    ("shoppulse.streams",),
    ("shoppulse.config",),
    ("shoppulse.kafka", "shoppulse.outputs", "shoppulse.deployfiles"),
    ("shoppulse.agents", "shoppulse.tools"),
    ("shoppulse.cli",),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Every shoppulse module `name` imports, at the top or inside a function."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from . import main` imports a module when `main` is one.
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def _layer(name: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in tests/test_layout.py")


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        if name != "shoppulse":
            _layer(name)


def test_no_module_imports_a_layer_above_it() -> None:
    wrong = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name in MODULES
        if name != "shoppulse"
        for target in _imports(name)
        if _layer(target) > _layer(name)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles() -> None:
    graph = {name: _imports(name) for name in MODULES}
    # A package's __init__ re-exporting its own modules is not a circle of ideas.
    for name, targets in graph.items():
        if MODULES[name].name == "__init__.py":
            graph[name] = {t for t in targets if not t.startswith(name + ".")}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


HOP = re.compile(r"`((?:agents|streams|outputs|kafka|tools|cli)/[\w/]+\.py):([\w.]+)`")
MAX_HOPS = 15


def _follow_one_event() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("Follow one clickstream event")
    return text[start : text.index("\n\n", start)].splitlines()


def _routes() -> dict[str, list[tuple[str, str]]]:
    """The README's routes of one event: the numbered hops they share, then each branch's."""
    lines = _follow_one_event()
    shared = [hop for line in lines if line[:1].isdigit() for hop in HOP.findall(line)]
    branches = {line.split(":", 1)[0]: HOP.findall(line) for line in lines if line.startswith("- To ")}
    return {name: shared + hops for name, hops in branches.items()}


def test_readme_follows_one_event_to_the_gauge_and_to_kpi_results_in_at_most_15_hops() -> None:
    routes = _routes()
    assert set(routes) == {"- To the gauge", "- To `kpi-results`"}, routes
    for name, hops in routes.items():
        assert 10 <= len(hops) <= MAX_HOPS, f"{name}: {len(hops)} hops"


def test_every_hop_the_readme_names_exists() -> None:
    for file, dotted in {hop for hops in _routes().values() for hop in hops}:
        tree = ast.parse((PACKAGE / file).read_text())
        scope: list[ast.stmt] = tree.body
        for part in dotted.split("."):
            found = [
                n
                for n in scope
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n.name == part
            ]
            assert found, f"README names {file}:{dotted}, but {part} is not defined there"
            scope = found[0].body
