"""The run directory: resolved config, metrics history and atomically written checkpoints.

    RUN_DIR/config.json     the resolved TrainConfig
    RUN_DIR/history.jsonl   one JSON line per finished epoch (and one for the code stage)
    RUN_DIR/last.pt         everything to resume after the last finished epoch: model, objective, optimiser
    RUN_DIR/best.pt         the model of the best evaluated epoch (weights and metadata, no training state)

Checkpoints hold only tensors, numbers, strings, lists and dicts, so ``torch.load(path,
weights_only=True)`` reads them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hashpa.errors import HashpaError
from hashpa.fileio import write_json_atomic, write_text_atomic
from hashpa.training.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINTS = ("best", "last")


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.history_path = self.path / "history.jsonl"

    def checkpoint_path(self, which: str) -> Path:
        if which not in CHECKPOINTS:
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

    def start_history(self) -> None:
        """An empty history, for a run that starts (a killed earlier start may have left records)."""
        write_text_atomic(self.history_path, "")

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
