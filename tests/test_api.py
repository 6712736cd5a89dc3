"""The Python examples of the README and of the Python API guide run as they are written (in a
scratch folder, on the built-in digits)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_block(page: Path) -> str:
    return re.search(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S).group(1)


def test_the_python_api_guide_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block(ROOT / "docs" / "guides" / "python-api.md"), "docs/guides/python-api.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "(3, 64) float32 (3, 8) uint8" in printed
    assert (tmp_path / "runs" / "notebook" / "best.pt").is_file() and (tmp_path / "indexes" / "notebook-itq" / "index.json").is_file()
    first_hit = re.search(r"\['([^']+)'", printed).group(1)
    assert first_hit == "3_three/0003.png"  # the query is in the index: rerank finds it first (cosine 1)


def test_the_readme_python_example_runs_on_the_demo_it_follows(tmp_path, monkeypatch, capsys):
    import hashpa

    monkeypatch.chdir(tmp_path)
    hashpa.train(hashpa.resolve_config({"split": "half", "bits": 32, "epochs": 1, "code_epochs": 0, "baseline": False, "out": "runs/demo"}))
    hashpa.build_index(None, "runs/demo", "indexes/demo", split="test")
    exec(compile(python_block(ROOT / "README.md"), "README.md", "exec"), {})
    assert re.search(r"\['([^']+)'", capsys.readouterr().out).group(1) == "7_seven/0007.png"  # the query itself, cosine 1
