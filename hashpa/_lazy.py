"""Package attributes imported on first use (PEP 562), so that ``import hashpa`` and the command
line's ``--help`` do not import torch, FAISS or h5py before a command needs them."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, modules: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) for `package`: `modules` maps a module path relative to the
    package (e.g. ".ranking") to the names it exports, space-separated."""
    exports = {name: module for module, names in modules.items() for name in names.split()}

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
