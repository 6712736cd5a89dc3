import argparse
import json
import sys

from eval import publish as report


def test_publish_then_merge_brings_a_section_into_another_file(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    report.add_output_options(parser, "speed")
    args = parser.parse_args(["--out", str(tmp_path / "gpu"), "--tag", "gpu"])
    report.publish(args, "speed", "python -m x", {"value": 3}, "\n| a |\n|---|\n| 3 |")
    assert json.loads((tmp_path / "gpu" / "speed.json").read_text())["settings"]["tag"] == "gpu"
    assert "| 3 |" in capsys.readouterr().out
    bench = tmp_path / "BENCH.md"
    bench.write_text("# B\n\n<!-- speed:cpu:start -->\ncpu figures\n<!-- speed:cpu:end -->\n")
    report.main([str(bench), str(tmp_path / "gpu")])
    text = bench.read_text()
    assert "cpu figures" in text  # the CPU section stays
    gpu = text[text.index("<!-- speed:gpu:start -->"):text.index("<!-- speed:gpu:end -->")]
    assert "Command: `python -m x`" in gpu and "| 3 |" in gpu


def test_machine_info_without_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    info = report.machine_info()
    assert info["versions"]["faiss"] == "not installed" and "FAISS" not in report.describe_machine(info)
