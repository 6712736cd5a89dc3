"""The floor plan: the library never imports the command line or the benchmarks, its lazy exports
resolve, and the light entry points stay light."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "hashpa"
PACKAGES = ["hashpa", "hashpa.data", "hashpa.indexdir", "hashpa.losses", "hashpa.metrics", "hashpa.models", "hashpa.report",
            "hashpa.runs", "hashpa.search", "hashpa.training"]


def test_the_library_never_imports_the_command_line_or_the_benchmarks():
    offending = [f"{path.relative_to(LIBRARY.parent)}:{number}: {line.strip()}"
                 for path in LIBRARY.rglob("*.py") for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\b(import|from)\s+(hashpa\.cli|hashpa\.eval|cli|eval)\b", line)]
    assert not offending, offending


@pytest.mark.parametrize("package", PACKAGES)
def test_every_lazy_export_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("code", ["import hashpa", "import hashpa.cli.main", "from hashpa.indexdir.facts import info"])
def test_light_entry_points_import_neither_torch_nor_faiss(code):
    check = f"{code}; import sys; print(sorted(m for m in ('torch', 'faiss', 'timm') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    """The hashpa modules `path` imports, anywhere in it (lazy imports inside functions too)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("hashpa"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("hashpa")}
    return found


def test_the_data_readers_do_not_import_each_other_in_a_circle():
    modules = {".".join(p.relative_to(LIBRARY.parent).with_suffix("").parts): p for p in (LIBRARY / "data").glob("*.py")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(step == goal or (step not in seen and reaches(step, goal, seen | {step})) for step in graph[start])

    circles = [name for name in graph if reaches(name, name, {name})]
    assert not circles, circles


def test_only_training_imports_training():
    """Reading a run (embedding, indexing, evaluation, serving) goes through hashpa.runs; training writes runs."""
    offending = [str(path.relative_to(LIBRARY.parent)) for path in LIBRARY.rglob("*.py")
                 if "training" not in path.relative_to(LIBRARY).parts[:1] and any(m.startswith("hashpa.training") for m in _imports(path))]
    assert not offending, offending
