"""Stage 3, fit: every component once (a class serving two roles is one instance), then the
blenders, each timed. Two functions, because a blender may learn from a later slice than the
components it blends. After the bundle is written, ``write_features`` lets the components
that produce feature values (``FeatureWriter``) write them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from hybridrec.contracts import Blender, BlendExamples, FeatureWriter, TrainingData
from hybridrec.progress import progress_bar


def fit_components(components: Mapping[str, Any], data: TrainingData,
                   progress: bool) -> dict[str, float]:
    """Fit every scorer and candidate source on ``data``; seconds per component."""
    unique = list({id(obj): obj for obj in components.values()}.values())
    return _timed(unique, data, "fitting", progress)


def fit_blenders(blenders: Mapping[str, Blender], data: TrainingData, progress: bool,
                 examples: BlendExamples | None = None) -> dict[str, float]:
    """Fit every blender on ``data`` (and, for those that learn, ``examples``); seconds per
    blender."""
    return _timed(list(blenders.values()), data, "fitting blenders", progress,
                  lambda b: {"examples": examples} if b.learns else {})


def _timed(objects: list[Any], data: TrainingData, desc: str, progress: bool,
           extra: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, float]:
    seconds = {}
    for obj in progress_bar(objects, desc, enabled=progress):
        start = time.perf_counter()
        obj.fit(data, **(extra(obj) if extra else {}))
        seconds[obj.name] = round(time.perf_counter() - start, 3)
    return seconds


def write_features(components: Mapping[str, Any], store: Any, items: Any,
                   progress: bool) -> dict[str, int]:
    """Let every ``FeatureWriter`` among the fitted components write its feature values for
    the catalogue ``items``; rows written per feature view."""
    written: dict[str, int] = {}
    for obj in {id(c): c for c in components.values()}.values():
        if isinstance(obj, FeatureWriter):
            written.update(obj.write_features(store, items, progress))
    return written
