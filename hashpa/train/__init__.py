"""Training: configuration, objective, trainer loop and run directory."""

from hashpa.train.config import PRESETS, TrainConfig, resolve_config
from hashpa.train.rundir import RunDir, load_checkpoint, load_trained_model
from hashpa.train.trainer import Trainer, TrainResult, build_split, resume, train

__all__ = [
    "PRESETS",
    "RunDir",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_split",
    "load_checkpoint",
    "load_trained_model",
    "resolve_config",
    "resume",
    "train",
]
