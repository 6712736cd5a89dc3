"""eval/gpu_checks.sh cannot run without a GPU machine: check here that every command it runs exists
with every option it passes, so that its few minutes of device time are not lost to a typo."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashpa.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (ROOT / "eval" / "gpu_checks.sh").read_text().replace("\\\n", " ")
FLAG = r"(?<![\w-])--[a-z][a-z0-9-]*"


def uses(pattern: str) -> list[tuple[str, set[str]]]:
    """(name, flags) of every command line of the script matching `pattern` (its group 1 the name)."""
    found = []
    for line in SCRIPT.splitlines():
        for use in re.finditer(pattern, line):
            found.append((use.group(1), set(re.findall(FLAG, line[use.end():]))))
    return found


HASHPA_USES = uses(r"-m hashpa\.cli (\w[\w-]*)")
EVAL_USES = uses(r"-m (eval\.\w+)")


def test_the_script_runs_hashpa_and_benchmarks():
    assert {"train", "index"} <= {name for name, _ in HASHPA_USES} and len(EVAL_USES) >= 4


@pytest.mark.parametrize("command,flags", HASHPA_USES, ids=[name for name, _ in HASHPA_USES])
def test_every_hashpa_option_exists(command, flags):
    text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
    assert not flags - set(re.findall(FLAG, text)), f"hashpa {command} has no {flags - set(re.findall(FLAG, text))}"


@pytest.mark.parametrize("module", sorted({name for name, _ in EVAL_USES}))
def test_every_benchmark_option_exists(module):
    text = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    wanted = set().union(*(flags for name, flags in EVAL_USES if name == module))
    assert not wanted - set(re.findall(FLAG, text)), f"{module} has no {wanted - set(re.findall(FLAG, text))}"
