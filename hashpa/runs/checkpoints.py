"""Reading a run's checkpoints: which file holds the model a user asks for, and loading it safely.

last.pt holds everything to resume after the last finished epoch; best.pt the model of the best
evaluated epoch. last.pt is written first, then best.pt (when the epoch improved), so last.pt's
record of the best epoch is the truth: a best.pt that does not match it (a kill while it was
written) is not used, and the model in last.pt is used when it is the best one. Checkpoints hold
only tensors, numbers, strings, lists and dicts, so ``torch.load(path, weights_only=True)`` reads them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from hashpa.errors import HashpaError
from hashpa.runs.directory import RunDir

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
TRAINING_STATE = ("objective", "optimizer")  # in last.pt only: what resuming needs beyond the model


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """A hashpa checkpoint (only tensors and plain containers are unpickled: weights_only); `mmap`
    maps the tensors instead of reading them (to look at the metadata cheaply)."""
    path = Path(path)
    if not path.is_file():
        raise HashpaError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # a damaged file, another format, or a pickle weights_only refuses
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HashpaError(f"cannot read checkpoint {path}: it is damaged or not a hashpa checkpoint ({reason[:160]}); "
                          "hashpa reads only its own checkpoints, plain state_dicts and .safetensors files") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise HashpaError(f"{path} is not a hashpa checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def _which_state(state: dict) -> tuple:
    """(epoch, stage) of the model a checkpoint holds: stage "codes" after the code stage, "start" before any training."""
    stage = "codes" if state.get("codes_fitted_at") == state["epoch"] else "start" if state["epoch"] == 0 else None
    return state["epoch"], stage


def _best_record(record: dict) -> tuple:
    return record["epoch"], record.get("stage")


def checkpoint_to_load(run: RunDir, which: str) -> tuple[Path, str]:
    """(the file holding the model `which` names, "best" or "last": the name of that file). The best
    model is best.pt when it matches last.pt's record of the best epoch, else last.pt when that is
    the best one (best.pt missing, or a kill while it was written)."""
    last, best = run.checkpoint_path("last"), run.checkpoint_path(which)
    if which == "last" or not last.is_file():
        return best, which
    record = load_checkpoint(last, mmap=True).get("best") or None
    if best.is_file() and (record is None or _which_state(load_checkpoint(best, mmap=True)) == _best_record(record)):
        return best, "best"
    if record is None:
        raise HashpaError(f"{run.path} has no best.pt: no epoch has been evaluated yet; use --checkpoint last")
    if _best_record(record) == _which_state(load_checkpoint(last, mmap=True)):
        log.warning("%s: best.pt %s; the best model (epoch %d) is in last.pt and is used (hashpa train --resume %s rewrites best.pt)",
                    run.path, "is stale (a write was interrupted)" if best.is_file() else "is missing", record["epoch"], run.path)
        return last, "last"
    raise HashpaError(f"{best} does not hold the best epoch ({record['epoch']}) last.pt records, nor does last.pt: "
                      f"resume the run (hashpa train --resume {run.path}) or use --checkpoint last")


def load_network(source: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """(HashingModel in eval mode, checkpoint dict) from a run directory or a checkpoint file; the
    network runs with the preprocessing it was trained with. The dict's "loaded_from" names the
    checkpoint file used ("best" or "last": ``checkpoint_to_load``)."""
    from hashpa.data.preprocess import Preprocessing
    from hashpa.models.config import ModelConfig
    from hashpa.models.hashing_model import HashingModel

    source = Path(source)
    path, used = checkpoint_to_load(RunDir(source), which) if source.is_dir() else (source, which)
    if source.is_dir() and not path.is_file():
        raise HashpaError(f"no checkpoint in {source}: train a model there first (hashpa train --out {source})")
    state = load_checkpoint(path)
    state["loaded_from"] = used
    network = HashingModel(ModelConfig(**state["config"]["model"]), load_weights=False, preprocessing=Preprocessing.from_dict(state["preprocessing"]))
    network.load_state_dict(state["model"])
    return network.to(device).eval(), state
