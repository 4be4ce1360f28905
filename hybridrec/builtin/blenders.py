"""The ``weighted`` blender: a fixed, per-scenario weighted mean of standardised scores.

Each ``scorer.task`` array is standardised over each request's candidates (z-scores, so
scorers on different scales can be added) and multiplied by its weight; NaN ("no opinion")
contributes nothing and the remaining weights are renormalised per candidate. The result is
comparable only within one request: a lone candidate, or candidates every scorer ties on,
score 0. Weights come from config, ``{"weights": {"shop": {"popularity.click": 1.0}}}``; a
``scorer.task`` without a weight gets 1.0, and a key or scenario that does not exist is an
error.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np

from hybridrec.contracts import Blender, BlendExamples, ScoreBatch, TrainingData
from hybridrec.hookspecs import hookimpl
from hybridrec.ranking import weighted_z_terms


class WeightedBlender(Blender):
    name = "weighted"

    def __init__(self, weights: Mapping[str, Mapping[str, float]] | None = None) -> None:
        weights = {str(s): dict(w) for s, w in (weights or {}).items()}
        for scenario, per in weights.items():
            for key, value in per.items():
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ValueError(f"weight weights.{scenario}.{key!r} must be a number, "
                                     f"got {value!r}")
        super().__init__(weights=weights)

    def check(self, inputs: Mapping[str, Sequence[str]], scenarios: Collection[str]) -> None:
        for scenario, per in self.config["weights"].items():
            if scenario not in scenarios:
                raise ValueError(f"weights for unknown scenario {scenario!r}; known: "
                                 f"{', '.join(sorted(scenarios))}")
            if scenario not in inputs:
                continue  # blended by another blender
            unknown = sorted(set(per) - set(inputs[scenario]))
            if unknown:
                raise ValueError(
                    f"weights.{scenario} names {', '.join(map(repr, unknown))}, which no "
                    f"scorer of {scenario!r} produces; known: {', '.join(inputs[scenario])}")

    def fit(self, data: TrainingData, examples: BlendExamples | None = None) -> None:
        """Nothing to learn: the weights are configuration."""

    def weight(self, scenario: str, key: str) -> float:
        return float(self.config["weights"].get(scenario, {}).get(key, 1.0))

    def blend(self, scores: Mapping[str, Mapping[str, np.ndarray]],
              batch: ScoreBatch) -> np.ndarray:
        return sum(self.contributions(scores, batch).values(), np.zeros(len(batch)))

    def contributions(self, scores: Mapping[str, Mapping[str, np.ndarray]],
                      batch: ScoreBatch) -> dict[str, np.ndarray]:
        """Each input's weighted z-score over the row's total weight."""
        return weighted_z_terms(scores, batch.request, batch.n_requests,
                                lambda key: self.weight(batch.scenario.name, key))

    def save(self, path: Path) -> None:
        (path / "config.json").write_text(json.dumps(self.config))

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls(**json.loads((path / "config.json").read_text()))


@hookimpl
def register_blenders(register):
    register(WeightedBlender)
