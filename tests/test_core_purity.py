"""The core (shoppulse/streams/) is pure: no transport, no metrics, no I/O, no clock.

Two checks. The source of every core module, and of every shoppulse module that importing
the core loads (shoppulse.settings...), must not import a forbidden module nor call open()
or print(). And importing each core module in a fresh interpreter must not load a forbidden
module from shoppulse code, directly or through another shoppulse module: a meta-path hook
records each import and the module that asked for it. The worker's packages (faust, mode,
aiokafka, prometheus_client, rich) must not be loaded at all, whoever asks; the standard
I/O modules may be loaded by a dependency (numpy asks for os), never by shoppulse.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "shoppulse" / "streams"
WORKER_PACKAGES = frozenset({"faust", "mode", "aiokafka", "prometheus_client", "rich"})
IO_MODULES = frozenset({"socket", "subprocess", "os", "pathlib", "shutil", "urllib", "asyncio", "time"})
FORBIDDEN = WORKER_PACKAGES | IO_MODULES
FORBIDDEN_CALLS = frozenset({"open", "print"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


CORE_MODULES = sorted(_module_name(path) for path in CORE.rglob("*.py"))


def source_problems(source: str) -> list[str]:
    """Forbidden imports and calls in one module's source, as "line N: what"."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        problems += [f"line {node.lineno}: imports {name}" for name in names if name.split(".")[0] in FORBIDDEN]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"line {node.lineno}: calls {node.func.id}()")
    return problems


# Run with -S (no site: os, pathlib and urllib are then not preloaded, so the hook sees who
# loads them); the project and its dependencies come from the path given.
PROBE = """
import importlib, json, sys
FORBIDDEN = set(json.loads(sys.argv[2]))
loads = []

class Recorder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
                frame = frame.f_back
            loads.append([name, frame.f_globals.get("__name__") if frame is not None else None])
        return None

sys.meta_path.insert(0, Recorder)
importlib.import_module(sys.argv[1])
shoppulse = sorted(name for name in sys.modules if name == "shoppulse" or name.startswith("shoppulse."))
print(json.dumps({"loads": loads, "shoppulse": shoppulse}))
"""


def import_report(module: str) -> dict:
    """What importing `module` in a fresh interpreter loads: forbidden modules with who asked, and shoppulse modules."""
    path = [str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    result = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, module, json.dumps(sorted(FORBIDDEN))],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(path)},
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load_problems(report: dict) -> list[str]:
    problems = []
    for name, importer in report["loads"]:
        top = name.split(".")[0]
        if top in WORKER_PACKAGES:
            problems.append(f"loads {name} (asked by {importer})")
        elif importer is not None and (importer == "shoppulse" or importer.startswith("shoppulse.")):
            problems.append(f"{importer} imports {name}")
    return problems


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_source_imports_no_io_and_calls_no_open_or_print(module):
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    problems = source_problems(path.read_text())
    assert not problems, f"{module}: " + "; ".join(problems)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_importing_a_core_module_loads_no_worker_package_and_no_io_from_shoppulse(module):
    report = import_report(module)
    problems = load_problems(report)
    # The shoppulse modules the core pulls in (settings, errors...) are held to the same source rule.
    for name in report["shoppulse"]:
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if path.exists():
            problems += [f"{name}: {problem}" for problem in source_problems(path.read_text())]
    assert not problems, f"importing {module}: " + "; ".join(problems)


def test_the_checks_see_a_forbidden_import_and_an_indirect_load(tmp_path):
    """The two checks can fail: a faust import in source, and an I/O module asked for by shoppulse code."""
    assert source_problems("import os\nfrom faust import App\nprint(open('x'))\n") == [
        "line 1: imports os",
        "line 2: imports faust",
        "line 3: calls print()",
        "line 3: calls open()",
    ]
    report = {"loads": [["socket", "shoppulse.settings"], ["os", "numpy"], ["mode.utils", "faust"]], "shoppulse": []}
    assert load_problems(report) == ["shoppulse.settings imports socket", "loads mode.utils (asked by faust)"]
