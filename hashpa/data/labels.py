"""The class of an image, from its path: the one rule every command uses (training, indexing,
compare's query folders, search results and grids).

The class is the folder an image is in (the leaf folder), named by its path below the dataset's
root, so `birds/owls/1.jpg` and `toys/owls/2.jpg` are the classes "birds/owls" and "toys/owls".
With a class depth d > 0 the class is the first d folders instead (d = 1: the top-level folder,
for collections whose class folders hold sub-folders of their own).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Iterable, Sequence

import numpy as np

LEAF = 0  # the class depth that means "the folder an image is in"


def class_of(relative: str | PurePath, depth: int = LEAF) -> str | None:
    """The class of the image at `relative` (a path relative to the dataset's root); None for an
    image directly in the root."""
    folders = PurePath(relative).parts[:-1]
    if not folders:
        return None
    return "/".join(folders if depth == LEAF else folders[:depth])


def label_paths(relative: Iterable[str | PurePath], class_names: Sequence[str] | None = None,
                depth: int = LEAF) -> tuple[np.ndarray, list[str]]:
    """(labels int32 [N], class names): each path's index into the sorted class names (or into the given
    `class_names`), -1 for a path without a class or with a class not among the given names."""
    classes = [class_of(p, depth) for p in relative]
    names = sorted({c for c in classes if c is not None}) if class_names is None else list(class_names)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(c, -1) if c is not None else -1 for c in classes], dtype=np.int32), names


def check_depth(depth: int) -> int:
    from hashpa.errors import HashpaError

    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise HashpaError(f"--class-depth must be 0 (the folder an image is in) or a number of top-level folders, got {depth!r}")
    return depth
