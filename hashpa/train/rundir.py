"""The run directory: resolved config, metrics history and atomically written checkpoints.

    RUN_DIR/config.json     the resolved TrainConfig
    RUN_DIR/history.jsonl   one JSON line per finished epoch
    RUN_DIR/last.pt         state after the last finished epoch (resume point)
    RUN_DIR/best.pt         the model of the best evaluated epoch

Checkpoints hold only tensors, numbers, strings, lists and dicts, so ``torch.load(path,
weights_only=True)`` reads them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from hashpa.errors import HashpaError
from hashpa.fileio import torch_save_atomic, write_json_atomic, write_text_atomic
from hashpa.train.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.history_path = self.path / "history.jsonl"

    def checkpoint_path(self, which: str) -> Path:
        if which not in ("last", "best"):
            raise HashpaError(f"checkpoint must be 'last' or 'best', got {which!r}")
        return self.path / f"{which}.pt"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path("last").is_file()

    def write_config(self, config: TrainConfig) -> None:
        write_json_atomic(self.config_path, config.to_dict())

    def read_config(self) -> TrainConfig:
        if not self.config_path.is_file():
            raise HashpaError(f"{self.path} is not a hashpa run directory (no config.json)")
        return TrainConfig.load(self.config_path)

    def append_history(self, record: dict) -> None:
        with open(self.history_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_history(self) -> list[dict]:
        """Finished epochs' records; a torn last line (crash while writing) is dropped."""
        if not self.history_path.is_file():
            return []
        records = []
        for line in self.history_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("dropping an incomplete line of %s", self.history_path)
        return records

    def keep_history_until(self, epoch: int, code_stage_done: bool = True) -> list[dict]:
        """Drop records after `epoch` (written after the last checkpoint, before an interruption), and the
        code stage's record at `epoch` unless the checkpoint has it."""
        records = [r for r in self.read_history() if r["epoch"] < epoch or (r["epoch"] == epoch and (code_stage_done or r.get("stage") != "codes"))]
        write_text_atomic(self.history_path, "".join(json.dumps(r) + "\n" for r in records))
        return records

    def save(self, state: dict, which: str) -> None:
        torch_save_atomic({"format": CHECKPOINT_FORMAT, **state}, self.checkpoint_path(which))

    def load(self, which: str = "last", map_location: str | torch.device = "cpu") -> dict:
        return load_checkpoint(self.checkpoint_path(which), map_location)


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
    """(HashingModel in eval mode, checkpoint dict) from a run directory or a checkpoint file."""
    from hashpa.models.hashing_model import HashingModel, ModelConfig

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
    model = HashingModel(ModelConfig(**state["config"]["model"]), load_weights=False)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state
