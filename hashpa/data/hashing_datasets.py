"""The deep-hashing papers' datasets with their standard splits: a training set, queries and a
database (``RetrievalSplit``'s train, test and gallery).

CIFAR-10 (60,000 32-px photos of 10 classes), read from ``ROOT/train/<class>/`` and
``ROOT/test/<class>/`` image folders, or from torchvision's ``ROOT/cifar-10-batches-py/``
(downloaded there when neither is present; exported once to ``ROOT/train`` and ``ROOT/test`` as
PNG files). Three protocols, each drawn with the run's seed:

- ``cifar10``: 1,000 queries (100 per class) and 5,000 training photos (500 per class) drawn from
  all 60,000; the database is the other 54,000 (DPSH, HashNet's setting I);
- ``cifar10-59k``: 1,000 queries (100 per class); the database is the other 59,000, and the
  5,000 training photos (500 per class) are drawn from it (DSDH, CSQ's setting);
- ``cifar10-50k``: the 10,000 official test photos query; the 50,000 official training photos
  are both the training set and the database (DSH, OrthoHash's second setting).

ImageNet-100 (HashNet's 100 classes): the list files ``train.txt`` (13,000 photos, 130 per class),
``test.txt`` (5,000 queries) and ``database.txt`` (128,495 photos) in ROOT, one photo a line: its
path and a one-hot vector of 100 labels (HashNet's format). Paths are read relative to ROOT; an
absolute path from the machine the list was made on is found under ROOT by its last two parts
(``synset/file``).

NUS-WIDE (the 21 most frequent concepts: ``train.txt`` 10,500 photos, ``test.txt`` 2,100 queries,
``database.txt`` the rest, as DeepHash-pytorch's lists) and MS-COCO (80 concepts: 10,000 training,
5,000 queries, the rest the database) are multi-label in the same list format: a photo is relevant
to a query when they share a concept, in training (Proxy Anchor, CSQ and OrthoHash take
multi-labels) and in every metric.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from hashpa.data.folder import Sample, labelled_samples
from hashpa.data.retrieval_split import HASHING_DATASETS, RetrievalSplit
from hashpa.errors import HashpaError

log = logging.getLogger(__name__)

CIFAR_PROTOCOLS = ("cifar10", "cifar10-59k", "cifar10-50k")
LIST_DATASETS = {"imagenet100": 100, "nuswide": 21, "coco": 80}  # name: labels per line
MULTI_LABEL = ("nuswide", "coco")
QUERIES_PER_CLASS, TRAIN_PER_CLASS = 100, 500


def load_hashing_dataset(name: str, root: str | Path, seed: int = 0) -> RetrievalSplit:
    root = Path(root)
    if name in CIFAR_PROTOCOLS:
        return cifar10(root, name, seed)
    if name in LIST_DATASETS:
        return label_lists(root, name)
    raise HashpaError(f"unknown deep-hashing dataset {name!r}; choose one of {', '.join(HASHING_DATASETS)}")


def cifar10(root: Path, protocol: str, seed: int = 0) -> RetrievalSplit:
    """The CIFAR-10 `protocol` (one of CIFAR_PROTOCOLS) over the photos under `root`."""
    train, test, classes = _cifar_samples(cifar10_folders(root))
    everything = train + test
    rng = random.Random(seed)
    if protocol == "cifar10-50k":
        queries, training, database = test, train, train
    else:
        queries, rest = _per_class(everything, len(classes), QUERIES_PER_CLASS, rng)
        training, others = _per_class(rest, len(classes), TRAIN_PER_CLASS, rng)
        database = others if protocol == "cifar10" else rest
    sizes = f"{len(training):,} training photos, {len(queries):,} queries, a database of {len(database):,}"
    return RetrievalSplit(training, queries, classes, classes, gallery=database, description=f"CIFAR-10 ({protocol}: {sizes}) at {root}").check()


def cifar10_folders(root: Path) -> Path:
    """`root` holding CIFAR-10 as train/ and test/ class folders: as found, exported from
    torchvision's batches, or downloaded first (torchvision checks the archive's MD5)."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root
    if not (root / "cifar-10-batches-py").is_dir():
        log.info("CIFAR-10 is not under %s: downloading it (about 170 MB)", root)
    try:
        from torchvision.datasets import CIFAR10

        parts = {part: CIFAR10(str(root), train=part == "train", download=not (root / "cifar-10-batches-py").is_dir()) for part in ("train", "test")}
    except (OSError, RuntimeError) as error:
        raise HashpaError(f"CIFAR-10 could not be read or downloaded into {root} ({error}): put its train/ and test/ class folders there, "
                          "or torchvision's cifar-10-batches-py/ (from cifar-10-python.tar.gz)") from None
    _export(parts, root)
    return root


def _export(parts: dict, root: Path) -> None:
    """Write torchvision's CIFAR-10 as PNG files, train/<class>/<index>.png and test/<class>/<index>.png."""
    from PIL import Image
    from tqdm import tqdm

    from hashpa.fileio import atomic_path

    for part, dataset in parts.items():
        for index, (pixels, label) in enumerate(tqdm(zip(dataset.data, dataset.targets), total=len(dataset.targets), desc=f"CIFAR-10 {part}",
                                                     unit="img", leave=False, disable=None)):
            path = root / part / dataset.classes[label] / f"{index:05d}.png"
            if not path.is_file():
                with atomic_path(path) as tmp:
                    Image.fromarray(np.asarray(pixels)).save(tmp, format="PNG")


def _cifar_samples(root: Path) -> tuple[list[Sample], list[Sample], list[str]]:
    train, train_classes = labelled_samples(root / "train")
    test, test_classes = labelled_samples(root / "test")
    if train_classes != test_classes:
        raise HashpaError(f"CIFAR-10 at {root}: train/ and test/ hold different classes ({', '.join(train_classes)} / {', '.join(test_classes)})")
    return train, test, train_classes


def _per_class(samples: list[Sample], classes: int, per_class: int, rng: random.Random) -> tuple[list[Sample], list[Sample]]:
    """(per_class samples of every class drawn with `rng`, the others), both in their given order."""
    chosen = set()
    for label in range(classes):
        members = [i for i, s in enumerate(samples) if s.label == label]
        if len(members) < per_class:
            raise HashpaError(f"CIFAR-10: class {label} has {len(members)} photos left, the protocol draws {per_class} of each")
        chosen.update(rng.sample(members, per_class))
    return [s for i, s in enumerate(samples) if i in chosen], [s for i, s in enumerate(samples) if i not in chosen]


def label_lists(root: Path, name: str) -> RetrievalSplit:
    """ImageNet-100 from HashNet's train/test/database lists (see the module docstring)."""
    n_labels = LIST_DATASETS[name]
    parts = {part: read_label_list(root / f"{part}.txt", root, n_labels) for part in ("train", "test", "database")}
    multi = name in MULTI_LABEL or any((labels.sum(axis=1) != 1).any() for _, labels in parts.values())
    classes = [f"class_{i:03d}" for i in range(n_labels)]
    train, test, database = ([_sample(path, row, multi) for path, row in zip(*parts[part])] for part in ("train", "test", "database"))
    sizes = f"{len(train):,} training photos, {len(test):,} queries, a database of {len(database):,}"
    return RetrievalSplit(train, test, classes, classes, gallery=database, description=f"{name} ({sizes}) at {root}").check()


def _sample(path: Path, row: np.ndarray, multi: bool) -> Sample:
    labels = tuple(int(i) for i in np.flatnonzero(row))
    return Sample(path, labels[0] if labels else -1, labels if multi else None)


def read_label_list(path: Path, root: Path, n_labels: int) -> tuple[list[Path], np.ndarray]:
    """(image paths, bool [N, n_labels] labels) of a HashNet-format list: 'path l1 l2 ... ln' a line."""
    if not path.is_file():
        raise HashpaError(f"expected the list file {path} (HashNet's format: an image path and {n_labels} 0/1 labels a line)")
    paths, rows = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_labels + 1 or any(v not in ("0", "1") for v in fields[1:]):
            raise HashpaError(f"{path}, line {number}: expected an image path and {n_labels} labels of 0 or 1, got {len(fields) - 1} fields after the path")
        paths.append(_image_path(fields[0], root, path, number))
        rows.append([v == "1" for v in fields[1:]])
    if not paths:
        raise HashpaError(f"{path} lists no images")
    return paths, np.array(rows, dtype=bool)


def _image_path(written: str, root: Path, listing: Path, number: int) -> Path:
    candidates = [root / written.lstrip("/"), Path(written), root.joinpath(*Path(written).parts[-2:])]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise HashpaError(f"{listing}, line {number}: the image {written} is not under {root} (nor by its last two parts)")
    return found
