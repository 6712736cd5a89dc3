"""The paper's dataset loaders on tiny fake trees with the real metadata formats."""

import numpy as np
import pytest
from scipy.io import savemat

from hashpa.data import load_paper_dataset
from hashpa.errors import HashpaError


def test_cub(tmp_path):
    lines, labels = [], []
    for i, cls in enumerate([1, 2, 100, 101, 150, 200], start=1):
        lines.append(f"{i} {cls:03d}.Bird_{cls}/img_{i}.jpg")
        labels.append(f"{i} {cls}")
    (tmp_path / "images.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    split = load_paper_dataset("cub", tmp_path)
    assert len(split.train) == 3 and len(split.test) == 3
    assert split.train_classes == ["001.Bird_1", "002.Bird_2", "100.Bird_100"]
    assert split.test[0].path == tmp_path / "images" / "101.Bird_101" / "img_4.jpg"


def test_cars(tmp_path):
    annotations = np.array(
        [(f"car_ims/{i:06d}.jpg", c) for i, c in enumerate([1, 98, 99, 196, 5], start=1)],
        dtype=[("relative_im_path", "O"), ("class", "O")],
    )
    savemat(tmp_path / "cars_annos.mat", {"annotations": annotations})
    split = load_paper_dataset("cars", tmp_path)
    assert len(split.train) == 3 and len(split.test) == 2
    assert split.test[0].path == tmp_path / "car_ims" / "000003.jpg"


def test_sop(tmp_path):
    header = "image_id class_id super_class_id path\n"
    (tmp_path / "Ebay_train.txt").write_text(header + "1 1 1 bicycle_final/111_0.JPG\n2 1 1 bicycle_final/111_1.JPG\n3 2 1 bicycle_final/222_0.JPG\n")
    (tmp_path / "Ebay_test.txt").write_text(header + "4 11319 2 cabinet_final/333_0.JPG\n5 11319 2 cabinet_final/333_1.JPG\n")
    split = load_paper_dataset("sop", tmp_path)
    assert [s.label for s in split.train] == [0, 0, 1]
    assert split.test_classes == ["11319"] and len(split.test) == 2


def test_inshop(tmp_path):
    (tmp_path / "Eval").mkdir()
    (tmp_path / "Eval" / "list_eval_partition.txt").write_text(
        "5\nimage_name item_id evaluation_status\n"
        "img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train\n"
        "img/WOMEN/Dresses/id_00000003/02_1_front.jpg id_00000003 train\n"
        "img/MEN/Denim/id_00000080/01_1_front.jpg id_00000080 query\n"
        "img/MEN/Denim/id_00000080/01_2_side.jpg id_00000080 gallery\n"
        "img/MEN/Denim/id_00000081/01_2_side.jpg id_00000081 gallery\n"
    )
    split = load_paper_dataset("inshop", tmp_path)
    assert len(split.train) == 2 and len(split.test) == 1 and len(split.gallery) == 2
    assert split.test[0].label == split.gallery[0].label != split.gallery[1].label


@pytest.mark.parametrize(
    "name,setup,match",
    [
        ("cub", lambda root: None, "images.txt"),
        ("cars", lambda root: None, "cars_annos.mat"),
        ("sop", lambda root: None, "Ebay_train.txt"),
        ("inshop", lambda root: None, "list_eval_partition.txt"),
        ("cub", lambda root: (root / "images.txt").write_text("1 a.jpg extra\n"), "expected 2 columns"),
        ("cars", lambda root: (root / "cars_annos.mat").write_bytes(b"garbage"), "cannot read"),
        ("inshop", lambda root: (root / "list_eval_partition.txt").write_text("1\nh\nimg/a.jpg id_1 test\n"), "line 3"),
    ],
)
def test_missing_or_malformed_roots_name_the_expected_file(tmp_path, name, setup, match):
    setup(tmp_path)
    with pytest.raises(HashpaError, match=match):
        load_paper_dataset(name, tmp_path)


def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(HashpaError, match="unknown dataset"):
        load_paper_dataset("mnist", tmp_path)
    with pytest.raises(HashpaError, match="root not found"):
        load_paper_dataset("cub", tmp_path / "missing")
