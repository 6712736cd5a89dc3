"""Finished batches of an interrupted ``hashpa index`` run, kept so that a rerun does not embed them again.

    INDEX_DIR/.partial-<model fingerprint>/batch-NNNNNN.npz    paths, sizes, mtimes, embeddings, codes
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashpa.distributed import rank
from hashpa.fileio import atomic_path
from hashpa.owned import remove_owned

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """Embedded rows, one per image: what a batch, the partial results or a store hold."""

    paths: np.ndarray  # object [n] of str
    sizes: np.ndarray  # int64 [n]
    mtimes: np.ndarray  # int64 [n]
    embeddings: np.ndarray  # float32 [n, dim]
    codes: np.ndarray  # uint8 [n, bits/8]

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def concatenate(cls, parts: list["Rows"], dim: int, code_bytes: int) -> "Rows":
        if not parts:
            return cls(np.empty(0, object), np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, dim), np.float32),
                       np.empty((0, code_bytes), np.uint8))
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("paths", "sizes", "mtimes", "embeddings", "codes")))


class PartialBatches:
    """The batches embedded so far by runs of one model into one index directory."""

    def __init__(self, out: Path, fingerprint: str):
        self.out, self.folder = out, out / f".partial-{fingerprint}"

    def read(self, dim: int, code_bytes: int, announce: bool = False) -> Rows:
        """Every batch kept so far (saying so, with `announce`, when there are some)."""
        parts = []
        for path in sorted(self.folder.glob("batch-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as part:
                    parts.append(Rows(part["paths"].astype(object), part["sizes"], part["mtimes"], part["embeddings"], part["codes"]))
            except (OSError, ValueError, KeyError):
                log.warning("ignoring damaged partial results %s", path)
        rows = Rows.concatenate(parts, dim, code_bytes)
        if announce and len(rows):
            log.info("resuming: %d images already embedded by an interrupted run", len(rows))
        return rows

    def write(self, rows: Rows) -> None:
        """Keep one finished batch (written atomically, numbered after those this process already kept:
        under torchrun every rank numbers its own)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mine = f"batch-r{rank():03d}-"
        number = len(list(self.folder.glob(f"{mine}*.npz")))
        with atomic_path(self.folder / f"{mine}{number:06d}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, paths=rows.paths.astype(str), sizes=rows.sizes, mtimes=rows.mtimes, embeddings=rows.embeddings, codes=rows.codes)

    def remove(self) -> None:
        remove_owned(self.out, self.folder.name)
