"""Timing helpers for benchmarks."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_calls(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> list[float]:
    """Seconds of `repeats` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def percentiles_ms(seconds: list[float], points=(50, 99)) -> dict[str, float]:
    return {f"p{p}_ms": float(np.percentile(np.asarray(seconds) * 1000, p)) for p in points}
