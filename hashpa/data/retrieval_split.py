"""What a dataset gives a run: training images, test images (the queries) and, when the protocol
has one, a gallery (the database), with their class names; and the names of the dataset kinds.
The readers (``splits``, ``paper_datasets``, ``hashing_datasets``) make these; nothing here reads files
but the image headers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from hashpa.data.folder import Sample
from hashpa.errors import HashpaError

DATASETS = ("cub", "cars", "sop", "inshop")  # the Proxy Anchor paper's benchmarks (hashpa.data.paper_datasets reads them)
HASHING_DATASETS = ("cifar10", "cifar10-59k", "cifar10-50k", "imagenet100", "nuswide", "coco")  # hashpa.data.hashing_datasets reads them
DATASET_KINDS = ("builtin", "folder", *DATASETS, *HASHING_DATASETS)  # where a split's images come from


@dataclass
class RetrievalSplit:
    """Labels of `train` index `train_classes`, labels of `test` (and `gallery`) index `test_classes`.

    Without a gallery every test image queries the other test images; with one (In-Shop), the
    test images are the queries and the gallery is the database.
    """

    train: list[Sample]
    test: list[Sample]
    train_classes: list[str]
    test_classes: list[str]
    gallery: list[Sample] | None = None
    description: str = ""
    notes: list[str] = field(default_factory=list)
    folders: dict[str, Path] = field(default_factory=dict)  # "train", "test", "gallery" -> the folder their paths are under

    def located(self, train: str | Path, test: str | Path | None = None) -> "RetrievalSplit":
        """This split with the folders its images are under: `train` for every part, or `test` for the test images and gallery."""
        train, test = Path(train), Path(test or train)
        return replace(self, folders={"train": train, "test": test, "gallery": test})

    def check(self) -> "RetrievalSplit":
        if not self.train:
            raise HashpaError(f"{self.description}: the training split is empty")
        if len(self.train_classes) < 2:
            raise HashpaError(f"{self.description}: training needs at least 2 classes, found {len(self.train_classes)}")
        if self.gallery is not None:
            if not self.test or not self.gallery:
                raise HashpaError(f"{self.description}: needs query and gallery images, found {len(self.test)} and {len(self.gallery)}")
        elif len(self.test) < 2:
            raise HashpaError(f"{self.description}: the test split needs at least 2 images, found {len(self.test)}")
        return self

    def without_unreadable(self) -> tuple["RetrievalSplit", list[tuple[str, str]]]:
        """The split without the images whose headers show they cannot be read, and those (path, why)."""
        from tqdm import tqdm

        from hashpa.data.decode import header_problem

        every = [*self.train, *self.test, *(self.gallery or [])]
        problems = {str(s.path): why for s in tqdm(every, desc="checking image headers", unit="img", leave=False, disable=None)
                    if (why := header_problem(s.path)) is not None}
        if not problems:
            return self, []
        keep = lambda samples: None if samples is None else [s for s in samples if str(s.path) not in problems]  # noqa: E731
        clean = replace(self, train=keep(self.train), test=keep(self.test), gallery=keep(self.gallery))
        return clean.check(), sorted(problems.items())

    @property
    def multi_label(self) -> bool:
        """Whether the images carry several labels each (``Sample.labels``)."""
        return any(s.labels is not None for s in [*self.train, *self.test, *(self.gallery or [])])

    def summary(self) -> str:
        """Images and classes of each part, in words."""
        parts = [f"{len(self.train):,} training images of {len(self.train_classes):,} classes",
                 f"{len(self.test):,} test {'queries' if self.gallery is not None else 'images'} of {len(self.test_classes):,} classes"]
        if self.gallery is not None:
            parts.append(f"{len(self.gallery):,} gallery images")
        return ", ".join(parts)
