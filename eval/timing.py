"""Timing and machine description for benchmarks: every result carries where and how it was measured."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from typing import Callable

import numpy as np


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces a benchmark run, for its report."""
    args = argv if argv is not None else sys.argv[1:]
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in args)


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


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU, core and thread counts, GPU, and the versions of the libraries that decide the speed."""
    import faiss
    import torch

    from hashpa import __version__

    info = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "versions": {"hashpa": __version__, "torch": torch.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
    }
    return info


def describe_machine(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return f"{info['cpu']} ({info['cpu_cores']} cores, FAISS threads {info['faiss_threads']}{gpu}); {versions}"
