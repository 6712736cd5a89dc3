"""The Proxy Anchor paper's benchmarks, read from a local copy with the paper's splits.

- ``cub``: CUB-200-2011 (``images.txt``, ``image_class_labels.txt``, ``images/``): classes 1-100
  train, 101-200 test.
- ``cars``: Cars-196 (``cars_annos.mat`` beside ``car_ims/``): classes 1-98 train, 99-196 test.
- ``sop``: Stanford Online Products (``Ebay_train.txt``, ``Ebay_test.txt``): the given split,
  11,318 train and 11,316 test classes.
- ``inshop``: In-Shop Clothes Retrieval (``list_eval_partition.txt``, in the root or in ``Eval/``;
  images under ``img/`` or ``Img/img/``): train items; query images searched against gallery images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hashpa.data.folder import Sample
from hashpa.data.retrieval_split import DATASETS, RetrievalSplit
from hashpa.errors import HashpaError


def load_paper_dataset(name: str, root: str | Path) -> RetrievalSplit:
    loaders: dict[str, Callable[[Path], RetrievalSplit]] = {"cub": load_cub, "cars": load_cars, "sop": load_sop, "inshop": load_inshop}
    if name not in loaders:
        raise HashpaError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (or --data DIR for an image folder)")
    root = Path(root)
    if not root.is_dir():
        raise HashpaError(f"{name}: dataset root not found: {root}")
    return loaders[name](root).check()


def load_cub(root: Path) -> RetrievalSplit:
    images = _table(_require(root, "images.txt", "CUB-200-2011"), 2, "CUB-200-2011")
    labels = dict(_table(_require(root, "image_class_labels.txt", "CUB-200-2011"), 2, "CUB-200-2011"))
    items = []
    for image_id, relative in images:
        if image_id not in labels:
            raise HashpaError(f"CUB-200-2011: image {image_id} of images.txt has no line in image_class_labels.txt")
        items.append((root / "images" / relative, _int(labels[image_id], "image_class_labels.txt"), Path(relative).parts[0]))
    return _split_by_class_id(items, 100, "CUB-200-2011")


def load_cars(root: Path) -> RetrievalSplit:
    path = _require(root, "cars_annos.mat", "Cars-196")
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise HashpaError("Cars-196's annotations are a MATLAB file: install scipy to read them (pip install 'hashpa[paper]')") from None

    try:
        annotations = loadmat(str(path), squeeze_me=True)["annotations"]
        items = [(root / str(a["relative_im_path"]), int(a["class"]), f"class_{int(a['class']):03d}") for a in annotations]
    except (KeyError, ValueError, TypeError, OSError, MatReadError) as error:
        raise HashpaError(f"Cars-196: cannot read {path} ({error}); expected the struct array 'annotations' with fields relative_im_path and class") from None
    return _split_by_class_id(items, 98, "Cars-196")


def load_sop(root: Path) -> RetrievalSplit:
    def read(name: str) -> list[tuple[Path, int]]:
        rows = _table(_require(root, name, "Stanford Online Products"), 4, "Stanford Online Products", header=True)
        return [(root / r[3], _int(r[1], name)) for r in rows]

    train, train_classes = _relabel(read("Ebay_train.txt"))
    test, test_classes = _relabel(read("Ebay_test.txt"))
    return RetrievalSplit(train, test, train_classes, test_classes, description=f"Stanford Online Products at {root}")


def load_inshop(root: Path) -> RetrievalSplit:
    candidates = [root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise HashpaError(f"In-Shop: list_eval_partition.txt not found in {root} or {root / 'Eval'}")
    lines = path.read_text().splitlines()
    if len(lines) < 3 or not lines[0].strip().isdigit():
        raise HashpaError(f"In-Shop: {path} must start with the image count and a header line")
    image_base = root / "Img" if (root / "Img" / "img").is_dir() else root
    parts = {"train": [], "query": [], "gallery": []}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != 3 or fields[2] not in parts:
            raise HashpaError(f"In-Shop: {path}, line {number}: expected 'image_name item_id train|query|gallery', got {line!r}")
        parts[fields[2]].append((image_base / fields[0], fields[1]))
    train, train_classes = _relabel(parts["train"])
    items = sorted({item for _, item in parts["query"] + parts["gallery"]})
    index = {item: i for i, item in enumerate(items)}
    query = [Sample(p, index[i]) for p, i in parts["query"]]
    gallery = [Sample(p, index[i]) for p, i in parts["gallery"]]
    return RetrievalSplit(train, query, train_classes, items, gallery=gallery, description=f"In-Shop at {root}")


def _split_by_class_id(items: list[tuple[Path, int, str]], last_train_class: int, dataset: str) -> RetrievalSplit:
    train = [(p, name) for p, c, name in items if c <= last_train_class]
    test = [(p, name) for p, c, name in items if c > last_train_class]
    (train_samples, train_classes), (test_samples, test_classes) = _relabel(train), _relabel(test)
    return RetrievalSplit(train_samples, test_samples, train_classes, test_classes, description=dataset)


def _relabel(rows) -> tuple[list[Sample], list[str]]:
    """(path, class key) rows -> samples labelled 0..C-1 in sorted class order, and the class names."""
    keys = sorted({key for _, key in rows})
    index = {key: i for i, key in enumerate(keys)}
    return [Sample(Path(p), index[key]) for p, key in rows], [str(k) for k in keys]


def _require(root: Path, name: str, dataset: str) -> Path:
    path = root / name
    if not path.is_file():
        raise HashpaError(f"{dataset}: expected file {path} is missing (is --root the dataset's top folder?)")
    return path


def _table(path: Path, columns: int, dataset: str, header: bool = False) -> list[list[str]]:
    rows = []
    lines = path.read_text().splitlines()[1 if header else 0 :]
    for number, line in enumerate(lines, start=2 if header else 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != columns:
            raise HashpaError(f"{dataset}: {path}, line {number}: expected {columns} columns, got {line!r}")
        rows.append(fields)
    if not rows:
        raise HashpaError(f"{dataset}: {path} holds no entries")
    return rows


def _int(text: str, source: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HashpaError(f"{source}: expected an integer class id, got {text!r}") from None
