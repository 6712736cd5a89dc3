"""A run's data: its settings (with other data in their place, for evaluation) and its split."""

from __future__ import annotations

from pathlib import Path

from hashpa.data.retrieval_split import RetrievalSplit
from hashpa.errors import HashpaError
from hashpa.runs.config import DATA_SETTINGS, DATA_SOURCES, TrainConfig
from hashpa.runs.directory import RunDir


def run_config(run: str | Path, other_data: dict | None = None) -> TrainConfig:
    """The settings of the run directory `run`; `other_data` (DATA_SETTINGS, as ``hashpa train`` takes
    them; None values ignored) replaces its data: naming any of DATA_SOURCES replaces where its images
    are, so the run's own data folders need not exist then."""
    given = {name: value for name, value in (other_data or {}).items() if value is not None}
    unknown = set(given) - set(DATA_SETTINGS)
    if unknown:
        raise HashpaError(f"unknown data settings: {', '.join(sorted(unknown))}")
    elsewhere = bool(set(DATA_SOURCES) & set(given))
    config = RunDir(run).read_config(find_data=not elsewhere)
    if elsewhere:
        for name in DATA_SOURCES:
            setattr(config, name, None)
        config.dataset = "folder"
    for name, value in given.items():
        setattr(config, name, str(value) if isinstance(value, Path) else value)
    return config.check()


def run_split(config: TrainConfig) -> RetrievalSplit:
    """The train/test split a run's settings choose (``hashpa.data.splits.build_split``), checked."""
    from hashpa.data.splits import build_split

    return build_split(**config.data_settings()).check()
