"""Popularity: the reference every other scorer is measured against, and the cold-start source.

Per scenario, an item's score is ``log1p`` of its event count weighted by the scenario's event
weights and decayed by age (half-life ``half_life_days``, counted back from the newest event).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import CandidateSource, RetrievalRequest, ScoreBatch, Scorer, TrainingData
from hybridrec.hookspecs import hookimpl


class PopularityScorer(Scorer, CandidateSource):
    name = "popularity"
    tasks = ("click",)

    def __init__(self, half_life_days: float | None = 30.0) -> None:
        super().__init__(half_life_days=half_life_days)
        self.half_life_days = half_life_days
        self._items: dict[str, np.ndarray] = {}
        self._scores: dict[str, np.ndarray] = {}
        self._order: dict[str, np.ndarray] = {}
        self._index: dict[str, Any] = {}

    # Fitting ----------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> None:
        import pandas as pd

        for name, scenario in data.scenarios.items():
            catalogue = data.items.loc[data.items[C.SCENARIO] == name, C.ITEM_ID].to_numpy(str)
            events = data.scenario_events(name)
            weights = events[C.EVENT_TYPE].map(scenario.event_weights).fillna(0.0).to_numpy(float)
            if self.half_life_days and len(events):
                ts = pd.to_datetime(events[C.EVENT_TIMESTAMP], utc=True)
                age_days = (ts.max() - ts).dt.total_seconds().to_numpy() / 86400.0
                weights = weights * np.power(0.5, age_days / self.half_life_days)
            counts = (
                pd.Series(weights, index=events[C.ITEM_ID].to_numpy(str))
                .groupby(level=0)
                .sum()
                .reindex(catalogue, fill_value=0.0)
            )
            self._set(name, catalogue, np.log1p(counts.to_numpy(float)))

    def _set(self, scenario: str, items: np.ndarray, scores: np.ndarray) -> None:
        import pandas as pd

        self._items[scenario] = items
        self._scores[scenario] = scores
        # Stable order: ties broken by item id so rankings are reproducible.
        self._order[scenario] = np.lexsort((items, -scores))
        self._index[scenario] = pd.Index(items)

    # Serving ----------------------------------------------------------------------------
    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        name = batch.scenario.name
        out = np.full(len(batch), np.nan)
        if name in self._index:
            pos = self._index[name].get_indexer(batch.item_ids)
            known = pos >= 0
            out[known] = self._scores[name][pos[known]]
        return {"click": out}

    def retrieve(self, request: RetrievalRequest, n: int) -> np.ndarray:
        name = request.scenario.name
        if name not in self._order:
            return np.array([], dtype=str)
        ranked = self._items[name][self._order[name]]
        if request.exclude:
            head = ranked[: n + len(request.exclude)]
            ranked = head[~np.isin(head, list(request.exclude))]
        return ranked[:n]

    # Persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        (path / "config.json").write_text(json.dumps(self.config))
        arrays: dict[str, Any] = {}
        for scenario in self._items:
            arrays[f"items__{scenario}"] = self._items[scenario]
            arrays[f"scores__{scenario}"] = self._scores[scenario]
        np.savez(path / "popularity.npz", **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls(**json.loads((path / "config.json").read_text()))
        with np.load(path / "popularity.npz") as arrays:
            for key in arrays.files:
                if key.startswith("items__"):
                    scenario = key.removeprefix("items__")
                    model._set(scenario, arrays[key], arrays[f"scores__{scenario}"])
        return model


@hookimpl
def register_scorers(register):
    register(PopularityScorer)


@hookimpl
def register_candidate_sources(register):
    register(PopularityScorer)
