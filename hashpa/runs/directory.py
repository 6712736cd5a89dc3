"""The run directory: resolved config, metrics history and checkpoints.

    RUN_DIR/config.json     the resolved TrainConfig
    RUN_DIR/history.jsonl   one JSON line per finished epoch (and one for the code stage)
    RUN_DIR/last.pt         everything to resume after the last finished epoch: model, objective, optimiser
    RUN_DIR/best.pt         the model of the best evaluated epoch (weights and metadata, no training state)

Reading the checkpoints: ``hashpa.runs.checkpoints``; writing them: ``hashpa.training.checkpoints``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hashpa.errors import HashpaError
from hashpa.fileio import finite, write_failure, write_json_atomic, write_text_atomic
from hashpa.outputs import is_ours, record_written
from hashpa.paths import found, recorded
from hashpa.runs.config import DATA_FROM_RUN, TrainConfig, load_saved

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
        """config.json: the resolved settings, their data folders absolute and (DATA_FROM_RUN) relative
        to the run directory, so that they mean the same from any working directory."""
        values, from_run = config.to_dict(), {}
        for name, folder in config.data_folders().items():
            values[name], from_run[name] = recorded(folder, self.path)
        write_json_atomic(self.config_path, {**values, DATA_FROM_RUN: from_run})
        record_written(self.config_path)

    def check_fresh_start(self) -> None:
        """Before a run starts here (no checkpoint): a config.json or history.jsonl found in the folder
        must be of a start hashpa made (its config.json listed in the manifest, unchanged), never a
        user's files under a copied manifest."""
        leftovers = [p for p in (self.config_path, self.history_path) if p.exists()]
        if leftovers and not is_ours(self.config_path):
            names = " and ".join(p.name for p in leftovers)
            raise HashpaError(f"{self.path} holds {names} that hashpa did not write for a run (or that changed since): "
                              "choose another --out, or move those files away")

    def read_config(self, find_data: bool = True) -> TrainConfig:
        """The run's settings, each data folder where it is now (``hashpa.paths.found``); with
        `find_data`, a data folder at neither place is an error naming both."""
        if not self.config_path.is_file():
            raise HashpaError(f"{self.path} is not a hashpa run directory (no config.json)")
        config, from_run = load_saved(self.config_path)
        for name, folder in config.data_folders().items():
            where = found(self.path, from_run.get(name), folder)
            if where is not None:
                setattr(config, name, str(where))
            elif find_data and Path(folder).is_absolute():
                beside = f" (nor at {self.path / from_run[name]}, where it was beside the run)" if name in from_run else ""
                raise HashpaError(f"the {name} folder of the run {self.path} is no longer at {folder}{beside}: move it back, "
                                  f"or give the data again (hashpa eval --{name.replace('_', '-')} ...)")
            elif find_data:
                raise HashpaError(f"{self.config_path} records the {name} folder {folder!r} relative to wherever training ran: "
                                  f"give the data again (hashpa eval --{name.replace('_', '-')} ...), or write its absolute path there")
        return config

    def start_history(self) -> None:
        """An empty history, for a run that starts (a killed earlier start may have left records)."""
        write_text_atomic(self.history_path, "")

    def append_history(self, record: dict) -> None:
        """One line more in history.jsonl (a line torn by a crash or a full disk is dropped when read)."""
        try:
            with open(self.history_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(finite(record), allow_nan=False) + "\n")
        except OSError as error:
            raise write_failure(self.history_path, error) from None

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
