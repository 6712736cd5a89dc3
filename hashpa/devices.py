"""Torch devices: choosing one, and the precision models run in there."""

from __future__ import annotations

import contextlib

import torch

from hashpa.errors import HashpaError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HashpaError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu or auto)")
    try:
        return torch.device(device)
    except RuntimeError:
        raise HashpaError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; nothing on the CPU (where bf16 convolutions are slow)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def distance_device(device: torch.device) -> str | None:
    """Where the evaluator computes distances for a model on `device`: the GPU, or None (the CPU's BLAS and FAISS)."""
    return str(device) if device.type == "cuda" else None


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (for timing); nothing on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


TRAINING_COPIES = 4  # a trained tensor's value, gradient and AdamW's two moments


def check_allocation(nbytes: int, what: str, fix: str) -> None:
    """A HashpaError, before anything is allocated, when `nbytes` is more than this machine's memory."""
    import os

    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    if nbytes > memory:
        raise HashpaError(f"{what} needs about {nbytes / 2**30:,.1f} GiB, more than this machine's {memory / 2**30:,.1f} GiB of memory: {fix}")
