"""The deep-hashing datasets' protocols on small generated trees: CIFAR-10's three protocols (sizes,
what the database holds, disjointness, the seed), its export from torchvision's batches, and
HashNet-format list files (ImageNet-100; multi-label lists refused for training with a reason)."""

import pickle

import numpy as np
import pytest
from PIL import Image

from hashpa.data import hashing_datasets
from hashpa.data.hashing_datasets import CIFAR_PROTOCOLS, LIST_DATASETS, cifar10, load_hashing_dataset, read_label_list
from hashpa.data.retrieval_split import HASHING_DATASETS
from hashpa.data.splits import build_split
from hashpa.errors import HashpaError

CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture
def cifar_tree(tmp_path, monkeypatch):
    """10 classes, 8 training and 3 test photos each; the protocols draw 2 queries and 5 training photos a class."""
    monkeypatch.setattr(hashing_datasets, "QUERIES_PER_CLASS", 2)
    monkeypatch.setattr(hashing_datasets, "TRAIN_PER_CLASS", 5)
    for part, count in (("train", 8), ("test", 3)):
        for c in CLASSES:
            (tmp_path / part / c).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / part / c / f"{i}.png")
    return tmp_path


def paths(samples):
    return {s.path for s in samples}


def test_the_names_of_the_protocols_are_the_split_kinds():
    assert set(HASHING_DATASETS) == {*CIFAR_PROTOCOLS, *LIST_DATASETS}


def test_cifar10_queries_train_and_a_disjoint_database(cifar_tree):
    split = cifar10(cifar_tree, "cifar10")
    assert (len(split.test), len(split.train), len(split.gallery)) == (20, 50, 40)
    assert not paths(split.test) & paths(split.train) and not paths(split.gallery) & (paths(split.test) | paths(split.train))
    assert all(sum(s.label == c for s in split.test) == 2 for c in range(10)) and split.test_classes == CLASSES
    assert "1,000" not in split.description and "20 queries" in split.description


def test_cifar10_59k_trains_on_part_of_its_database(cifar_tree):
    split = cifar10(cifar_tree, "cifar10-59k")
    assert (len(split.test), len(split.train), len(split.gallery)) == (20, 50, 90)
    assert paths(split.train) <= paths(split.gallery) and not paths(split.test) & paths(split.gallery)


def test_cifar10_50k_queries_the_official_test_set_against_the_training_set(cifar_tree):
    split = cifar10(cifar_tree, "cifar10-50k")
    assert paths(split.test) == {p for p in cifar_tree.glob("test/*/*.png")}
    assert paths(split.train) == paths(split.gallery) == {p for p in cifar_tree.glob("train/*/*.png")}


def test_the_draw_follows_the_seed(cifar_tree):
    one, again, other = cifar10(cifar_tree, "cifar10", 0), cifar10(cifar_tree, "cifar10", 0), cifar10(cifar_tree, "cifar10", 1)
    assert paths(one.test) == paths(again.test) and paths(one.test) != paths(other.test)
    assert paths(build_split("cifar10", root=cifar_tree, seed=1).test) == paths(other.test)


def test_cifar10_is_exported_from_torchvisions_batches(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 255, (4, 3072), dtype=np.uint8)
        with open(batches / name, "wb") as handle:
            pickle.dump({"data": data, "labels": [0, 1, 2, 1]}, handle)
    with open(batches / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": ["cat", "dog", "frog"]}, handle)
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(CIFAR10, "_load_meta", lambda self: setattr(self, "classes", ["cat", "dog", "frog"]))
    root = hashing_datasets.cifar10_folders(tmp_path)
    assert len(list(root.glob("train/*/*.png"))) == 20 and len(list(root.glob("test/*/*.png"))) == 4
    first = np.asarray(Image.open(root / "train" / "cat" / "00000.png"))
    assert first.shape == (32, 32, 3)


def test_a_missing_cifar10_says_where_to_put_it(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(CIFAR10, "__init__", offline)
    with pytest.raises(HashpaError, match="cifar-10-batches-py"):
        cifar10(tmp_path, "cifar10")


def write_list(path, rows, n_labels):
    path.write_text("".join(f"{name} " + " ".join("1" if i in labels else "0" for i in range(n_labels)) + "\n" for name, labels in rows))


@pytest.fixture
def imagenet_tree(tmp_path):
    for synset in ("n01", "n02"):
        (tmp_path / synset).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8)).save(tmp_path / synset / f"{synset}_{i}.JPEG")
    return tmp_path


def test_imagenet100_lists_with_relative_and_foreign_absolute_paths(imagenet_tree):
    write_list(imagenet_tree / "train.txt", [("n01/n01_0.JPEG", {0}), ("n02/n02_0.JPEG", {1}), ("n02/n02_1.JPEG", {1})], 100)
    write_list(imagenet_tree / "test.txt", [("/dataset/imagenet/val/n01/n01_1.JPEG", {0}), ("n02/n02_2.JPEG", {1})], 100)
    write_list(imagenet_tree / "database.txt", [(f"n0{c}/n0{c}_{i}.JPEG", {c - 1}) for c in (1, 2) for i in range(4)], 100)
    split = load_hashing_dataset("imagenet100", imagenet_tree)
    assert (len(split.train), len(split.test), len(split.gallery)) == (3, 2, 8)
    assert split.test[0].path == imagenet_tree / "n01" / "n01_1.JPEG" and [s.label for s in split.train] == [0, 1, 1]


def test_multi_label_lists_give_multi_label_samples(imagenet_tree):
    rows = [("n01/n01_0.JPEG", {0, 3}), ("n02/n02_0.JPEG", {1}), ("n02/n02_1.JPEG", {1, 2})]
    for part in ("train", "test", "database"):
        write_list(imagenet_tree / f"{part}.txt", rows, 21)
    paths_, labels = read_label_list(imagenet_tree / "train.txt", imagenet_tree, 21)
    assert labels.shape == (3, 21) and labels[0, 3] and labels.sum() == 5
    split = load_hashing_dataset("nuswide", imagenet_tree)
    assert split.multi_label and split.train[0].labels == (0, 3) and split.train[1].labels == (1,) and len(split.test_classes) == 21


@pytest.mark.parametrize("line,needle", [("n01/n01_0.JPEG 0 1", "expected an image path and 100 labels"),
                                         ("n01/missing.JPEG " + " ".join(["0"] * 99 + ["1"]), "is not under")])
def test_bad_list_lines_are_clear_errors(imagenet_tree, line, needle):
    (imagenet_tree / "train.txt").write_text(line + "\n")
    with pytest.raises(HashpaError, match=needle):
        read_label_list(imagenet_tree / "train.txt", imagenet_tree, 100)
