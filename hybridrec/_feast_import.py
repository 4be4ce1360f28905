"""Importing Feast costs a hybridrec process seconds it never uses; this takes two of them out.

* **torch.** Feast imports torch eagerly whenever it is installed (``feast.torch_wrapper``,
  for ``to_tensor`` conversions hybridrec never calls), which would put torch, a second or
  more of start-up and a few hundred MB, into every process that reads features once a
  torch-based plugin is installed, the server included. A stand-in for that module, with the
  same ``get_torch``, imports torch when called.
* **typeguard.** Feast decorates its definition classes (``FeatureView``, ``Field``,
  ``OnDemandFeatureView``, ...) with typeguard's ``@typechecked``, which re-parses and
  recompiles their source at import: about 5 of ``import feast``'s 7 s on a 2-core machine.
  Those run-time checks are meant for development (typeguard turns them off under
  ``python -O``); while Feast's package runs its imports here, ``typechecked`` passes
  Feast's own targets through (anything else it instruments as usual). The CLI that
  reads a feature repository's definitions, ``feast apply``, imports Feast itself and keeps
  them.

``install()`` runs once, at ``import hybridrec``, and does nothing when Feast is already
imported.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

TORCH_WRAPPER = "feast.torch_wrapper"


def get_torch() -> Any:
    """torch, imported on first use (what Feast's ``get_torch`` returns)."""
    import torch

    return torch


@contextlib.contextmanager
def _typechecks_off() -> Iterator[None]:
    """While it lasts, typeguard's ``typechecked`` passes Feast's own functions and classes
    through and instruments everything else as usual."""
    try:
        import typeguard
    except ImportError:  # a Feast without typeguard: nothing to turn off
        yield
        return
    original = typeguard.typechecked

    def typechecked(target: Any = None, **options: Any) -> Any:
        if target is None:
            return lambda decorated: typechecked(decorated, **options)
        if str(getattr(target, "__module__", "")).split(".")[0] == "feast":
            return target
        return original(target, **options)

    typeguard.typechecked = typechecked  # type: ignore[assignment]
    try:
        yield
    finally:
        typeguard.typechecked = original


class _FeastFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``feast`` once through the other finders and runs its package with typeguard's
    checks off; everything else it leaves to them."""

    def __init__(self) -> None:
        self._loader: importlib.abc.Loader | None = None
        self._finding = threading.local()

    def find_spec(self, fullname: str, path: Any = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "feast" or "feast" in sys.modules or \
                getattr(self._finding, "active", False):
            return None
        self._finding.active = True  # the other finders find Feast's real spec
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding.active = False
        if spec is None or spec.loader is None:
            return spec
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        assert self._loader is not None
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        loader = self._loader
        assert loader is not None and module.__spec__ is not None
        module.__loader__ = module.__spec__.loader = loader  # Feast sees its own loader
        with _typechecks_off():
            loader.exec_module(module)


def install() -> None:
    if "feast" in sys.modules:
        return  # Feast is already imported: too late, and nothing to gain
    if TORCH_WRAPPER not in sys.modules:
        module = types.ModuleType(TORCH_WRAPPER, "Feast's torch_wrapper, importing torch lazily.")
        module.get_torch = get_torch  # type: ignore[attr-defined]
        sys.modules[TORCH_WRAPPER] = module
    if not any(isinstance(finder, _FeastFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FeastFinder())
