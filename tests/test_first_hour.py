"""What a new user meets first: nested class folders, the run's own test split as an index, presets,
the first lines of a run, quiet verbose logs."""

import json

import pytest
from click.testing import CliRunner

from hashpa.cli.main import cli
from hashpa.data import class_of, split_folder
from hashpa.indexdir import read_store
from hashpa.runs.config import resolve_config
from tests.conftest import index_file, make_image_folder

TINY = ["--backbone", "smallcnn", "--weights", "none", "--dim", "16", "--bits", "16", "--epochs", "1", "--batch-size", "16",
        "--workers", "0", "--warmup-epochs", "0", "--code-epochs", "0"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    """groups/<group>/<class>/*.png: 2 groups of 3 classes; "owls" appears in both groups."""
    root = tmp_path_factory.mktemp("nested") / "collection"
    for group, names, seed in (("birds", ("owls", "finches", "gulls"), 0), ("toys", ("owls", "cars", "dolls"), 1)):
        flat = make_image_folder(root.parent / f"flat-{group}", classes=3, per_class=8, seed=seed)
        (root / group).mkdir(parents=True)
        for name, folder in zip(names, sorted(flat.iterdir())):
            folder.rename(root / group / name)
    return root


def test_the_class_is_the_folder_an_image_is_in(nested):
    assert class_of("birds/owls/1.png") == "birds/owls" and class_of("birds/owls/1.png", depth=1) == "birds" and class_of("1.png") is None
    split = split_folder(nested, "seen")
    assert split.train_classes == ["birds/finches", "birds/gulls", "birds/owls", "toys/cars", "toys/dolls", "toys/owls"]
    assert split_folder(nested, "seen", class_depth=1).train_classes == ["birds", "toys"]


def test_nested_folders_from_training_to_index_compare_and_search(nested, tmp_path):
    trained = run("train", "--data", nested, "--split", "seen", "--out", tmp_path / "run", *TINY)
    assert trained.exit_code == 0, trained.output
    first_epoch = trained.output.index("epoch 1/1")
    assert "training images of 6 classes" in trained.output[:first_epoch] and "test images of 6 classes" in trained.output[:first_epoch]
    assert run("index", nested, "--run-dir", tmp_path / "run", "--out", tmp_path / "idx", "--workers", 0).exit_code == 0
    store = read_store(index_file(tmp_path / "idx", "store.h5"))
    assert store.class_names == ["birds/finches", "birds/gulls", "birds/owls", "toys/cars", "toys/dolls", "toys/owls"]
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["class_depth"] == 0
    result = json.loads(run("search", tmp_path / "idx", nested / "toys" / "owls" / "img_003.png", "-k", 2, "--json").stdout)[0]
    assert result["label"] == "toys/owls" and result["hits"][0]["label"] == "toys/owls"
    report = json.loads(run("compare", tmp_path / "idx", "--queries", nested, "--latency-queries", 1, "--repeats", 1, "--json").stdout)
    assert report["labelled_queries"] == 48
    by_top = run("index", nested, "--run-dir", tmp_path / "run", "--out", tmp_path / "idx1", "--workers", 0, "--class-depth", 1)
    assert by_top.exit_code == 0 and read_store(index_file(tmp_path / "idx1", "store.h5")).class_names == ["birds", "toys"]


def test_index_the_runs_own_test_split(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=6, per_class=8)
    assert run("train", "--data", folder, "--split", "half", "--out", tmp_path / "run", *TINY).exit_code == 0
    indexed = run("index", "--split", "test", "--run-dir", tmp_path / "run", "--out", tmp_path / "idx", "--workers", 0, "--json")
    assert indexed.exit_code == 0, indexed.output
    store = read_store(index_file(tmp_path / "idx", "store.h5"))
    assert store.class_names == ["class_03", "class_04", "class_05"] and len(store) == 24  # the unseen half only
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["folder"] == str(folder.resolve())
    again = json.loads(run("index", "--split", "test", "--run-dir", tmp_path / "run", "--out", tmp_path / "idx", "--workers", 0, "--json").stdout)
    assert again["embedded"] == 0 and again["reused"] == 24
    both = CliRunner().invoke(cli, ["index", str(folder), "--split", "test", "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "without an image folder" in both.output
    neither = CliRunner().invoke(cli, ["index", "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "x")])
    assert neither.exit_code == 2 and "give an image folder" in neither.output


def test_presets_resolve_by_name_and_for_the_machine(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = resolve_config({"data": "photos"})
    assert (auto.preset, auto.epochs, auto.model.image_size, auto.batch_size) == ("cpu-quick", 6, 112, 120)
    assert resolve_config({"data": "photos", "epochs": 2}).epochs == 2  # the user's settings win
    assert resolve_config({"data": "photos", "backbone": "resnet18"}).preset == "none"  # a backbone the user chose: no recipe
    paper = resolve_config({"data": "photos", "preset": "gpu-paper"})
    assert (paper.epochs, paper.model.image_size, paper.batch_size) == (40, 224, 180)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_config({"data": "photos"}).preset == "none"


def test_the_first_lines_say_the_settings_and_verbose_logs_stay_readable(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=4, per_class=8)
    result = CliRunner().invoke(cli, ["-v", "train", "--data", str(folder), "--split", "seen", "--out", str(tmp_path / "run"), *TINY])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("settings: no preset; smallcnn (none weights) at 32 px, 1 epochs, batch 16, 16-bit codes") for line in lines)
    assert not [line for line in lines if "STREAM" in line or "PngImagePlugin" in line]  # PIL's chunk debug lines
