"""Checkpoints of a run: which epoch is best, what last.pt and best.pt hold, and loading them safely."""

from __future__ import annotations

from pathlib import Path

import torch

from hashpa.errors import HashpaError
from hashpa.fileio import torch_save_atomic
from hashpa.training.rundir import RunDir

CHECKPOINT_FORMAT = 1
TRAINING_STATE = ("objective", "optimizer")  # in last.pt only: what resuming needs beyond the model


class BestPolicy:
    """The best evaluated record so far, by one Recall@1 (``TrainConfig.best_metric``)."""

    def __init__(self, metric: str, best: dict | None = None):
        self.metric = metric
        self.best = best or {}  # {"epoch", "metric", "value", "float", "codes"[, "stage"]}

    def update(self, record: dict) -> bool:
        """Take `record` (a history record) if it is evaluated and beats the best; whether it did."""
        if self.metric not in record:
            return False
        value = record[self.metric]["recall@1"]
        if self.best and value <= self.best["value"]:
            return False
        self.best = {"epoch": record["epoch"], "metric": f"{self.metric} recall@1", "value": value,
                     "float": record["float"]["recall@1"], "codes": record["codes"]["recall@1"]}
        if "stage" in record:
            self.best["stage"] = record["stage"]
        return True


def save_checkpoints(run: RunDir, state: dict, improved: bool) -> None:
    """last.pt with the whole state; best.pt, when the state's epoch improved on the best, without the training state."""
    torch_save_atomic({"format": CHECKPOINT_FORMAT, **state}, run.checkpoint_path("last"))
    if improved:
        torch_save_atomic({"format": CHECKPOINT_FORMAT, **{k: v for k, v in state.items() if k not in TRAINING_STATE}}, run.checkpoint_path("best"))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise HashpaError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise HashpaError(f"cannot read checkpoint {path}: {error}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise HashpaError(f"{path} is not a hashpa checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def load_trained_model(source: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """(HashingModel in eval mode, checkpoint dict) from a run directory or a checkpoint file; the
    model runs with the preprocessing it was trained with."""
    from hashpa.models.backbones import Preprocessing
    from hashpa.models.config import ModelConfig
    from hashpa.models.hashing_model import HashingModel

    source = Path(source)
    if source.is_dir():
        path = RunDir(source).checkpoint_path(which)
        if not path.is_file() and which == "best":
            path = RunDir(source).checkpoint_path("last")
        if not path.is_file():
            raise HashpaError(f"no checkpoint in {source}: train a model there first (hashpa train --out {source})")
    else:
        path = source
    state = load_checkpoint(path)
    model = HashingModel(ModelConfig(**state["config"]["model"]), load_weights=False, preprocessing=Preprocessing.from_dict(state["preprocessing"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state
