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
            "hashpa.search", "hashpa.training"]


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
