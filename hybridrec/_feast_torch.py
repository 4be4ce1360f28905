"""Feast imports torch eagerly whenever it is installed (``feast.torch_wrapper``, for
``to_tensor`` conversions hybridrec never calls), which would put torch, a second or more of
start-up and a few hundred MB, into every process that reads features once a torch-based
plugin is installed, the server included. Until Feast is first imported, this registers a
stand-in for that module with the same ``get_torch`` that imports torch when called."""

from __future__ import annotations

import sys
import types
from typing import Any

NAME = "feast.torch_wrapper"


def get_torch() -> Any:
    """torch, imported on first use (what Feast's ``get_torch`` returns)."""
    import torch

    return torch


def install() -> None:
    if "feast" in sys.modules or NAME in sys.modules:
        return  # Feast is already imported: too late, and nothing to gain
    module = types.ModuleType(NAME, __doc__)
    module.get_torch = get_torch  # type: ignore[attr-defined]
    sys.modules[NAME] = module
