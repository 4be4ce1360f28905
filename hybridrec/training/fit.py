"""Stage 3, fit: every component once (a class serving two roles is one instance), then the
blenders, timed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from hybridrec.contracts import Blender, TrainingData
from hybridrec.progress import progress_bar


def fit(components: Mapping[str, Any], blenders: Mapping[str, Blender], data: TrainingData,
        progress: bool) -> dict[str, float]:
    """Fit everything on ``data``; return seconds per component name."""
    unique = list({id(obj): obj for obj in components.values()}.values())
    seconds = {}
    for obj in progress_bar([*unique, *blenders.values()], "fitting", enabled=progress):
        start = time.perf_counter()
        obj.fit(data)
        seconds[obj.name] = round(time.perf_counter() - start, 3)
    return seconds
