"""The machine and library versions a measurement ran on: every speed figure hashpa writes carries them."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU, core and thread counts, GPU, and the versions of the libraries that decide the speed.
    torch is described only when it is already loaded (the ONNX query path never imports it)."""
    from hashpa import __version__

    try:  # a GPU image may run the training benchmarks without faiss
        import faiss
    except ImportError:
        faiss = None
    torch = sys.modules.get("torch")
    versions = {"hashpa": __version__, "torch": torch.__version__ if torch else _installed_version("torch"),
                "faiss": faiss.__version__ if faiss else "not installed", "numpy": np.__version__}
    if "onnxruntime" in sys.modules:
        versions["onnxruntime"] = sys.modules["onnxruntime"].__version__
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "faiss_threads": faiss.omp_get_max_threads() if faiss else None,
        "torch_threads": torch.get_num_threads() if torch else None,
        "gpu": torch.cuda.get_device_name(0) if torch and torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "versions": versions,
    }


def _installed_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def describe_machine(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    threads = f", FAISS threads {info['faiss_threads']}" if info.get("faiss_threads") else ""
    return f"{info['cpu']} ({info['cpu_cores']} cores{threads}{gpu}); {versions}"
