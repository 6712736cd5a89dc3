import pytest

from hashpa.data import split_dirs, split_folder
from hashpa.errors import HashpaError
from tests.conftest import make_image_folder


def test_half_split_is_class_disjoint(tmp_path):
    root = make_image_folder(tmp_path, classes=6, per_class=3)
    split = split_folder(root, "half")
    assert split.train_classes == ["class_00", "class_01", "class_02"]
    assert split.test_classes == ["class_03", "class_04", "class_05"]
    assert {s.label for s in split.train} == {0, 1, 2} and {s.label for s in split.test} == {0, 1, 2}
    assert all(s.path.parent.name in split.test_classes for s in split.test)
    assert len(split.train) == len(split.test) == 9


def test_seen_split_holds_out_part_of_every_class(tmp_path):
    root = make_image_folder(tmp_path, classes=3, per_class=10)
    split = split_folder(root, "seen", test_fraction=0.2, seed=1)
    assert len(split.test) == 6 and len(split.train) == 24
    assert {s.label for s in split.test} == {0, 1, 2}
    assert not {s.path for s in split.train} & {s.path for s in split.test}
    again = split_folder(root, "seen", test_fraction=0.2, seed=1)
    assert [s.path for s in again.test] == [s.path for s in split.test]


def test_explicit_dirs(tmp_path):
    train = make_image_folder(tmp_path / "train", classes=2, per_class=2)
    test = make_image_folder(tmp_path / "test", classes=3, per_class=2, seed=1)
    split = split_dirs(train, test)
    assert len(split.train_classes) == 2 and len(split.test_classes) == 3


def test_split_errors(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=2)
    with pytest.raises(HashpaError, match="at least 4 class folders"):
        split_folder(root, "half")
    with pytest.raises(HashpaError, match="unknown split"):
        split_folder(root, "random")
