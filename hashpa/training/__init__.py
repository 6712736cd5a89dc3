"""Training: configuration, objective, trainer loop, checkpoints and the code stage."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".config": "PRESETS TrainConfig resolve_config",
    ".rundir": "RunDir",
    ".checkpoints": "load_checkpoint load_trained_model",
    ".trainer": "TrainResult Trainer resume train",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
