"""``hashpa info``: what an index directory holds, from its files alone (no model, no torch)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from hashpa.codes import bit_statistics
from hashpa.indexdir.layout import CODE_SOURCES
from hashpa.indexdir.open import IndexDir


def info(index_dir: str | Path) -> dict:
    """The index's metadata (index.json), its store's model attributes, and per-bit statistics of the
    codes its binary indexes hold (``hashpa.codes.bit_statistics``, as JSON-ready values)."""
    opened = IndexDir(index_dir)
    store = opened.store
    stats = bit_statistics(store.index_codes)
    ones = stats["ones_fraction"]
    return {
        "index": str(opened.path),
        **asdict(opened.meta),
        "backbone": store.attrs.get("backbone"),
        "classes": len(store.class_names) if store.has_labels else 0,
        "code_source_description": CODE_SOURCES[store.code_source],
        "rerank_code_bytes": store.compressed.code_size if store.compressed else 0,
        "bit_statistics": {"mean_entropy": stats["mean_entropy"], "dead_bits": stats["dead_bits"],
                           "mean_abs_correlation": stats["mean_abs_correlation"],
                           "ones_fraction": {"min": float(ones.min()), "median": float(np.median(ones)), "max": float(ones.max())}},
    }
