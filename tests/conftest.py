"""Shared fixtures: small generated image folders, an isolated cache folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from eval.synthetic import make_image_folder, stripe_image  # noqa: F401  (the tests' image folders)

torch.set_num_threads(2)
logging.getLogger("faiss").setLevel(logging.WARNING)


def index_file(index_dir: Path, name: str) -> Path:
    """The file `name` (store.h5, binary-BFlat.faiss ...) of an index directory's current generation."""
    from hashpa.indexdir.layout import read_meta

    return Path(index_dir) / Path(read_meta(index_dir).store).parent / name


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HASHPA_CACHE", str(tmp_path_factory.getbasetemp() / "hashpa-cache"))


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained for one epoch (seconds): enough for indexing tests."""
    from hashpa.runs import resolve_config
    from hashpa.training import train

    base = tmp_path_factory.mktemp("trained")
    folder = make_image_folder(base / "images", classes=4, per_class=12)
    config = resolve_config(dict(
        data=str(folder), split="seen", epochs=1, batch_size=16, workers=0, lr=3e-3, out=str(base / "run"),
        model=dict(backbone="smallcnn", weights="none", dim=16, bits=16),
    ))
    train(config)
    return base / "run"
