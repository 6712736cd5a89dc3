"""Train/test splits of an image folder.

- "half": the sorted first half of the class folders trains, the rest is the unseen test set (the
  CUB-200 / Cars-196 protocol of deep metric learning);
- "seen": every class trains; a fixed fraction of each class's images is held out as the test set
  (the deep-hashing protocol, where queries and database share the training classes);
- explicit train and test folders.
"""

from __future__ import annotations

import random
from pathlib import Path

from hashpa.data.folder import Sample, labelled_samples
from hashpa.data.labels import LEAF, check_depth
from hashpa.data.retrieval_split import HASHING_DATASETS, RetrievalSplit
from hashpa.errors import HashpaError

SPLITS = ("half", "seen", "dirs")


def split_folder(root: str | Path, mode: str = "half", test_fraction: float = 0.2, seed: int = 0, class_depth: int = LEAF) -> RetrievalSplit:
    samples, classes = labelled_samples(root, check_depth(class_depth))
    if mode == "half":
        return _split_classes(samples, classes, len(classes) // 2, f"{root} (first {len(classes) // 2} of {len(classes)} classes train)")
    if mode == "seen":
        return _split_within_classes(samples, classes, test_fraction, seed, f"{root} (seen classes, {test_fraction:.0%} of each held out)")
    raise HashpaError(f"unknown split {mode!r}; choose half or seen, or give --train-dir and --test-dir")


def split_labelled(root: str | Path, labels_file: str | Path, mode: str = "seen", test_fraction: float = 0.2, seed: int = 0) -> RetrievalSplit:
    """The images a labels file lists (``hashpa.data.label_files``), multi-label, a fraction of each
    first label held out (classes cannot split in halves when images belong to several)."""
    from hashpa.data.label_files import labelled_by_file

    if mode != "seen":
        raise HashpaError(f"--labels gives images several classes: use --split seen (held-out images), not --split {mode}")
    samples, classes = labelled_by_file(root, labels_file)
    return _split_within_classes(samples, classes, test_fraction, seed, f"{root} labelled by {labels_file} (seen classes, {test_fraction:.0%} held out)")


def split_dirs(train_dir: str | Path, test_dir: str | Path, class_depth: int = LEAF) -> RetrievalSplit:
    train, train_classes = labelled_samples(train_dir, check_depth(class_depth))
    test, test_classes = labelled_samples(test_dir, class_depth)
    return RetrievalSplit(train, test, train_classes, test_classes, description=f"train {train_dir}, test {test_dir}").check()


def _split_classes(samples: list[Sample], classes: list[str], n_train: int, description: str) -> RetrievalSplit:
    if n_train < 2 or len(classes) - n_train < 1:
        raise HashpaError(f"{description}: a class-disjoint split needs at least 4 class folders, found {len(classes)}")
    train = [s for s in samples if s.label < n_train]
    test = [Sample(s.path, s.label - n_train) for s in samples if s.label >= n_train]
    return RetrievalSplit(train, test, classes[:n_train], classes[n_train:], description=description).check()


def _split_within_classes(samples, classes, test_fraction: float, seed: int, description: str) -> RetrievalSplit:
    if not 0 < test_fraction < 1:
        raise HashpaError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    rng = random.Random(seed)
    train, test = [], []
    for label in range(len(classes)):
        members = [s for s in samples if s.label == label]
        rng.shuffle(members)
        n_test = max(1, round(len(members) * test_fraction)) if len(members) > 1 else 0
        test += members[:n_test]
        train += members[n_test:]
    key = lambda s: s.path.as_posix()  # noqa: E731
    return RetrievalSplit(sorted(train, key=key), sorted(test, key=key), classes, classes, description=description).check()


def build_split(dataset: str = "builtin", data: str | Path | None = None, root: str | Path | None = None, split: str = "half",
                train_dir: str | Path | None = None, test_dir: str | Path | None = None, test_fraction: float = 0.2,
                seed: int = 0, class_depth: int = LEAF, labels: str | Path | None = None) -> RetrievalSplit:
    """The train/test split of `dataset` (one of DATASET_KINDS): the built-in set or an image folder
    `data` split by `split` (half | seen), explicit `train_dir` + `test_dir`, a metric-learning paper's
    dataset under `root`, or a deep-hashing dataset's protocol under `root` (drawn with `seed`).
    Folders are labelled by ``hashpa.data.labels.class_of`` at `class_depth`, or, with `labels` (a
    CSV or JSON file, ``hashpa.data.label_files``), by that file: multi-label. The split records the
    folders its image paths are under (``RetrievalSplit.folders``)."""
    from hashpa.data.builtin import builtin_dataset
    from hashpa.data.paper_datasets import load_paper_dataset

    if dataset == "builtin":
        return split_folder(builtin_dataset(), split, test_fraction, seed, class_depth).located(builtin_dataset())
    if dataset == "folder":
        if split == "dirs" or train_dir or test_dir:
            if not (train_dir and test_dir):
                raise HashpaError("give both --train-dir and --test-dir")
            return split_dirs(train_dir, test_dir, class_depth).located(train_dir, test_dir)
        if not data:
            raise HashpaError("no image folder given: pass --data DIR (or leave it out to train on the built-in dataset)")
        if labels:
            return split_labelled(data, labels, split, test_fraction, seed).located(data)
        return split_folder(data, split, test_fraction, seed, class_depth).located(data)
    if not root:
        raise HashpaError(f"--dataset {dataset} needs --root, the folder holding the dataset")
    if dataset in HASHING_DATASETS:
        from hashpa.data.hashing_datasets import load_hashing_dataset

        return load_hashing_dataset(dataset, root, seed).located(root)
    return load_paper_dataset(dataset, root).located(root)
