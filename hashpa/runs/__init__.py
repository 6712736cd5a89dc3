"""A training run: its settings (``config``), its directory (``directory``), its checkpoints and the
trained network in them (``checkpoints``), and the images it trains and tests on (``data``). What
reads a run (embedding, indexing, evaluation) comes here; ``hashpa.training`` writes runs."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".config": "PRESETS RECIPES TrainConfig resolve_config",
    ".directory": "CHECKPOINTS RunDir",
    ".checkpoints": "load_checkpoint load_network",
    ".data": "DATA_SETTINGS run_config run_split",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
