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


def test_the_kill_and_resume_comparisons_see_a_changed_tensor_and_a_changed_row(trained_run, tmp_path):
    import shutil

    import h5py
    import torch

    from eval.kill_resume import same_index, same_training
    from hashpa.indexdir import build_index
    from tests.conftest import index_file, make_image_folder

    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    assert same_training(trained_run, copy) == []
    state = torch.load(copy / "last.pt", weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1e-6
    torch.save(state, copy / "last.pt")
    assert same_training(trained_run, copy) == ["last.pt model"]
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=3)
    for out in ("a", "b"):
        build_index(folder, trained_run, tmp_path / out, workers=0)
    assert same_index(tmp_path / "a", tmp_path / "b") == []
    with h5py.File(index_file(tmp_path / "b", "store.h5"), "r+") as h5:
        h5["codes"][0, 0] ^= 1
    assert same_index(tmp_path / "a", tmp_path / "b") == ["store.h5 codes"]


def test_merging_into_a_folder_of_pages_finds_the_page_of_each_benchmark(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    report.add_output_options(parser, "speed")
    for name in ("speed", "lonely"):
        report.publish(parser.parse_args(["--out", str(tmp_path / "gpu"), "--tag", "gpu"]), name, "python -m x", {"value": 3}, f"\n{name} on a GPU")
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "a.md").write_text("# A\n\n<!-- other:cpu:start -->\nx\n<!-- other:cpu:end -->\n")
    (pages / "b.md").write_text("# B\n\n<!-- speed:cpu:start -->\ncpu figures\n<!-- speed:cpu:end -->\n")
    assert report.merge_sections(pages, [tmp_path / "gpu"]) == ["speed:gpu"]
    assert "speed on a GPU" in (pages / "b.md").read_text() and "speed" not in (pages / "a.md").read_text()
    assert "no page of" in capsys.readouterr().out  # lonely has no page: said, not guessed
