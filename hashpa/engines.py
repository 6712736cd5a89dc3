"""Which engine embeds the queries of an index: ``torch`` (the run's checkpoint, ``hashpa.embed``)
or ``onnx`` (the run's export, ``hashpa.exported``, without torch). ``auto`` takes the export when
the run has one of the index's model and onnxruntime is installed, torch otherwise."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from hashpa.errors import HashpaError
from hashpa.exported import ExportedModel, read_card, run_export

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
TORCH_MISSING = "PyTorch is not installed: pip install 'hashpa[train]', or export the run where it is (hashpa export RUN) and use --engine onnx"
ONNXRUNTIME_MISSING = "onnxruntime is not installed: pip install 'hashpa[query]'"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module present but broken, or one taken out of sys.modules
        return False


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise HashpaError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")


def query_model(run: str | Path, checkpoint: str, device, engine: str, fingerprint: str):
    """The model that embeds queries for an index built by the model `fingerprint` of `run`: a
    ``hashpa.embed.Model`` or an ``ExportedModel`` (the same interface), as `engine` says."""
    check_engine(engine)
    export = run_export(run)
    if engine == "auto":
        engine = "onnx" if _usable_export(export, fingerprint, device) else "torch"
    if engine == "onnx":
        if not installed("onnxruntime"):
            raise HashpaError(ONNXRUNTIME_MISSING)
        card = read_card(export)
        if card["fingerprint"] != fingerprint:
            raise HashpaError(f"{export} is an export of another model ({card['fingerprint']}; the index was built by {fingerprint}): "
                              f"export it again (hashpa export {run} --overwrite) or use --engine torch")
        return ExportedModel(export)
    if not installed("torch"):
        raise HashpaError(f"{TORCH_MISSING}" if not export.is_file() else f"{TORCH_MISSING} (the export in {run} cannot be used: see above)")
    from hashpa.embed import load

    return load(run, checkpoint, device)


def _usable_export(export: Path, fingerprint: str, device) -> bool:
    """Whether `auto` takes the export: it is there, of the index's model, onnxruntime is installed
    and no GPU was asked for. A stale export is reported, not used."""
    if str(device) not in ("auto", "cpu") or not export.is_file() or not installed("onnxruntime"):
        return False
    try:
        card = read_card(export)
    except HashpaError as error:
        log.warning("not using the ONNX export: %s", error)
        return False
    if card["fingerprint"] != fingerprint:
        log.warning("not using %s: it is an export of another model than the index's (export the run again: hashpa export RUN --overwrite)", export)
        return False
    return True
