"""Timing searches: what ``hashpa compare`` and the benchmarks measure speed with."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Iterator

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


def percentiles_ms(seconds: list[float], points=(50, 99)) -> dict[str, float | None]:
    """Milliseconds at the percentiles `points` of `seconds` (None for each when nothing was timed)."""
    return {f"p{p}_ms": float(np.percentile(np.asarray(seconds) * 1000, p)) if seconds else None for p in points}


def search_speed(search: Callable, queries: tuple, repeats: int, latency_queries: int) -> dict:
    """Batched queries/s of ``search(*queries)`` (the median of `repeats` timed calls, and their
    spread: (slowest - fastest) / median) and the p50/p99 latency of single queries (the first
    `latency_queries` rows of every array in `queries`), timed on one FAISS thread: a single query
    gains nothing from more, and on a busy machine more threads make its latency erratic."""
    batched = time_calls(lambda: search(*queries), repeats=repeats)
    single = []
    with faiss_threads(1):
        for i in range(min(latency_queries, len(queries[0]))):
            one = tuple(q[i : i + 1] for q in queries)
            single += time_calls(lambda: search(*one), repeats=1, warmup=1 if i == 0 else 0)
    median = float(np.median(batched))
    return {"queries_per_second": len(queries[0]) / median, "batched_spread": (max(batched) - min(batched)) / median,
            **{f"latency_{k}": v for k, v in percentiles_ms(single).items()}}


@contextlib.contextmanager
def faiss_threads(threads: int) -> Iterator[None]:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def busy_cores() -> float:
    """The load average over the last minute, in cores (what other processes were running)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0
