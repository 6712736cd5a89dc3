"""The README's notebook example runs as it is written (in a scratch folder, on the built-in digits)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    section = README.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_notebook_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_block("Python API"), "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out
    assert "(3, 64) float32 (3, 8) uint8" in printed
    assert (tmp_path / "runs" / "notebook" / "best.pt").is_file() and (tmp_path / "indexes" / "notebook-itq" / "index.json").is_file()
    first_hit = re.search(r"\['([^']+)'", printed).group(1)
    assert first_hit == "3_three/0003.png"  # the query is in the index: rerank finds it first (cosine 1)
