"""Training: the objective, the trainer loop, writing checkpoints and the code stage (a run's
settings and directory: ``hashpa.runs``)."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".trainer": "TrainResult Trainer resume train",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
