"""Training: configuration, objective, trainer loop, checkpoints and the code stage."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "PRESETS": ".config",
    "TrainConfig": ".config",
    "resolve_config": ".config",
    "RunDir": ".rundir",
    "load_checkpoint": ".checkpoints",
    "load_trained_model": ".checkpoints",
    "TrainResult": ".trainer",
    "Trainer": ".trainer",
    "resume": ".trainer",
    "train": ".trainer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
