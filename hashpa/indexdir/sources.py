"""What ``hashpa index`` indexes: the image files of a folder, or a split of a training run's own data,
with the folder their paths are relative to."""

from __future__ import annotations

import logging
from pathlib import Path

from hashpa.errors import HashpaError
from hashpa.indexdir.changes import FolderFiles, scan_folder, scan_samples
from hashpa.indexdir.settings import INDEX_SPLITS

log = logging.getLogger(__name__)


def files_to_index(folder: str | Path | None, run: str | Path, split: str | None, class_depth: int) -> tuple[Path, FolderFiles]:
    """(the folder the paths are relative to, its files): a folder's images, or a run's split."""
    if split is None:
        if folder is None:
            raise HashpaError("give an image folder to index, or --split test (or train) to index the run's own split")
        return Path(folder), scan_folder(Path(folder))
    from hashpa.runs.data import run_config, run_split

    if split not in INDEX_SPLITS:
        raise HashpaError(f"--split must be one of {', '.join(INDEX_SPLITS)}, got {split!r}")
    if folder is not None:
        raise HashpaError("--split indexes the run's own data: give it without an image folder")
    if not Path(run).is_dir():
        raise HashpaError(f"--split needs --run-dir to be a run directory (it reads the run's data settings), got {run}")
    chosen = run_split(run_config(run))
    samples = {"train": chosen.train, "test": chosen.test, "gallery": chosen.gallery}[split]
    if samples is None:
        raise HashpaError(f"{chosen.description} has no gallery split (only In-Shop does): use --split test")
    root = chosen.folders[split]
    classes = chosen.train_classes if split == "train" else chosen.test_classes
    log.info("indexing the %s split of %s: %d images of %d classes under %s", split, run, len(samples), len(classes), root)
    return root, scan_samples(root, samples, classes)
