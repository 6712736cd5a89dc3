"""Reports: ``hashpa compare`` and ``hashpa eval``, their tables and plots, and the machine and
timing every measurement carries."""

from hashpa._lazy import lazy_exports

_EXPORTS = {
    "compare": ".comparison",
    "evaluate": ".evaluation",
    "baseline_rows": ".evaluation",
    "compare_table": ".tables",
    "eval_table": ".tables",
    "train_summary": ".tables",
    "result_grid": ".plots",
    "machine_info": ".machine",
    "describe_machine": ".machine",
    "time_calls": ".timing",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
