"""Every command-line flag the README and the documentation show exists in that command's --help."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashpa.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "guides").glob("*.md"))]
README = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)  # the pages that show commands (not the benchmark logs)
COMMANDS = sorted(cli.commands)


def flags_shown(command: str) -> set[str]:
    """--flags on README lines that run `hashpa <command>` (in code blocks and inline code), and
    those the prose names in backticks right after the command's name."""
    found = set()
    for line in README.splitlines():
        for use in re.finditer(rf"hashpa {re.escape(command)}(?![\w-])([^`|]*)", line):
            found.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", use.group(1)))
    return found


def benchmark_flags() -> set[str]:
    """The options every benchmark script in eval/ shares (eval.publish.add_output_options)."""
    import argparse

    from eval.publish import add_output_options

    parser = argparse.ArgumentParser()
    add_output_options(parser, "any")
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}


def help_flags(command: str) -> set[str]:
    text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_the_readme_shows_exists(command):
    missing = flags_shown(command) - help_flags(command)
    assert not missing, f"the README shows hashpa {command} {', '.join(sorted(missing))}, which --help does not list"


def test_the_readme_shows_flags_at_all():
    assert {"--bits", "--out", "--resume"} <= flags_shown("train") and {"--run-dir", "--codes"} <= flags_shown("index")


def test_every_flag_the_prose_names_is_an_option_of_some_command():
    """Flags named in the README's prose (outside code blocks and benchmark commands) are hashpa options."""
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    named = set()
    for line in prose.splitlines():
        if "python -m" not in line and "make " not in line and "torchrun" not in line:
            named.update(re.findall(r"`[^`]*?(?<![\w-])(--[a-z][a-z0-9-]*)", line))
    every = set().union(*(help_flags(command) for command in COMMANDS), benchmark_flags())
    assert not named - every, f"the README names {', '.join(sorted(named - every))}, which no hashpa command has"
