"""The ``weighted`` blender: a fixed, per-scenario weighted sum of standardised scores.

Each ``scorer.task`` array is standardised over the request's candidates (so scorers on
different scales can be added) and multiplied by its weight; NaN ("no opinion") contributes
nothing and the remaining weights are renormalised per candidate. Weights come from config,
``{"weights": {"shop": {"popularity.click": 1.0}}}``; a pair without a weight gets 1.0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from hybridrec.contracts import Blender, Scenario, TrainingData
from hybridrec.hookspecs import hookimpl


def standardise(x: np.ndarray) -> np.ndarray:
    """Z-score over the finite entries; NaN stays NaN, a constant array becomes zeros."""
    finite = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    if finite.any():
        values = x[finite]
        spread = values.std()
        out[finite] = (values - values.mean()) / spread if spread > 0 else 0.0
    return out


class WeightedBlender(Blender):
    name = "weighted"

    def __init__(self, weights: Mapping[str, Mapping[str, float]] | None = None) -> None:
        super().__init__(weights=dict(weights or {}))

    def fit(self, data: TrainingData) -> None:
        """Nothing to learn: the weights are configuration."""

    def weight(self, scenario: str, key: str) -> float:
        return float(self.config.get("weights", {}).get(scenario, {}).get(key, 1.0))

    def blend(
        self,
        scores: Mapping[str, Mapping[str, np.ndarray]],
        scenario: Scenario,
        context: Mapping[str, Any],
    ) -> np.ndarray:
        total: np.ndarray | None = None
        weight_sum: np.ndarray | None = None
        for scorer, tasks in scores.items():
            for task, values in tasks.items():
                w = self.weight(scenario.name, f"{scorer}.{task}")
                z = standardise(np.asarray(values, dtype=float))
                present = np.isfinite(z)
                contrib = np.where(present, w * np.nan_to_num(z), 0.0)
                mass = np.where(present, abs(w), 0.0)
                total = contrib if total is None else total + contrib
                weight_sum = mass if weight_sum is None else weight_sum + mass
        if total is None or weight_sum is None:
            raise ValueError(f"no scores to blend for scenario {scenario.name!r}")
        return np.divide(total, weight_sum, out=np.zeros_like(total), where=weight_sum > 0)

    def save(self, path: Path) -> None:
        (path / "config.json").write_text(json.dumps(self.config))

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls(**json.loads((path / "config.json").read_text()))


@hookimpl
def register_blenders(register):
    register(WeightedBlender)
