"""Reports: ``hashpa compare`` and ``hashpa eval``, their tables and plots, and the machine and
timing every measurement carries."""

from hashpa._lazy import lazy_exports

_MODULES = {
    ".comparison": "compare",
    ".evaluation": "evaluate baseline_rows",
    ".tables": "compare_table eval_table train_summary",
    ".plots": "result_grid",
    ".machine": "machine_info describe_machine",
    ".timing": "time_calls",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = __dir__()
