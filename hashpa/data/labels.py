"""The class of an image, from its path: the one rule every command uses (training, indexing,
compare's query folders, search results and grids)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Iterable, Sequence

import numpy as np


def class_of(relative: str | PurePath) -> str | None:
    """The class of the image at `relative` (a path relative to the dataset's root): the folder it is
    in, at the top level; None for an image directly in the root."""
    parts = PurePath(relative).parts
    return parts[0] if len(parts) > 1 else None


def label_paths(relative: Iterable[str | PurePath], class_names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(labels int32 [N], class names): each path's index into the sorted class names (or into the given
    `class_names`), -1 for a path without a class or with a class not among the given names."""
    classes = [class_of(p) for p in relative]
    names = sorted({c for c in classes if c is not None}) if class_names is None else list(class_names)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(c, -1) if c is not None else -1 for c in classes], dtype=np.int32), names
