"""Writing a run's checkpoints: which epoch is best, last.pt and best.pt, and best.pt repaired after a
kill (reading them: ``hashpa.runs.checkpoints``)."""

from __future__ import annotations

import logging

from hashpa.fileio import torch_save_atomic
from hashpa.runs.checkpoints import CHECKPOINT_FORMAT, TRAINING_STATE, checkpoint_to_load, load_checkpoint
from hashpa.runs.directory import RunDir

log = logging.getLogger(__name__)


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


def repair_best(run: RunDir) -> None:
    """Rewrite best.pt from last.pt when last.pt holds the best model and best.pt does not (``checkpoint_to_load``)."""
    last = run.checkpoint_path("last")
    if last.is_file() and not load_checkpoint(last, mmap=True).get("best"):
        return  # nothing evaluated yet (or never: --eval-every 0), so no best model to repair
    path, which = checkpoint_to_load(run, "best")
    if which == "last":
        state = load_checkpoint(path)
        torch_save_atomic({k: v for k, v in state.items() if k not in TRAINING_STATE}, run.checkpoint_path("best"))
        log.info("rewrote %s from last.pt (epoch %d)", run.checkpoint_path("best"), state["epoch"])
