"""Paths that mean the same thing from anywhere: what hashpa records of a folder it read (absolute,
and relative to the run or index directory that records it), and how every reader finds it again."""

from __future__ import annotations

import os
from pathlib import Path


def recorded(path: str | Path, base: str | Path) -> tuple[str, str]:
    """(`path` absolute, `path` relative to the folder `base`): what a run or index directory records."""
    absolute = Path(path).resolve()
    return str(absolute), os.path.relpath(absolute, Path(base).resolve())


def found(base: str | Path, relative: str | None, absolute: str | None) -> Path | None:
    """Where a recorded folder is now: beside `base` as it was (both moved together), else at its
    absolute path; None when it is at neither."""
    candidates = [Path(base) / relative if relative else None, Path(absolute) if absolute and Path(absolute).is_absolute() else None]
    return next((c.resolve() for c in candidates if c is not None and c.exists()), None)
