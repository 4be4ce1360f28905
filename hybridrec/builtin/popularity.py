"""Popularity: the reference every other scorer is measured against, and the cold-start source.

Per scenario, an item's score is ``log1p`` of its event count weighted by the scenario's event
weights and decayed by age (half-life ``half_life_days``). Ages count back from the 99th
percentile of the event times, not from the newest event, so the last 1% of events (in a log
of a hundred events or more, a stray one stamped months later, a clock gone wrong) cannot age
every other event into insignificance; events after that reference count as new.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import (
    CandidateSource,
    Ragged,
    RetrievalBatch,
    ScoreBatch,
    Scorer,
    TrainingData,
)
from hybridrec.hookspecs import hookimpl
from hybridrec.ids import IdIndex
from hybridrec.ranking import top_k

#: The quantile of event times that ages are counted from.
REFERENCE_QUANTILE = 0.99


def reference_time(timestamps: Any) -> Any:
    """The time decay counts back from: a high quantile of the event times."""
    return timestamps.quantile(REFERENCE_QUANTILE)


class PopularityScorer(Scorer, CandidateSource):
    name = "popularity"
    tasks = ("click",)

    def __init__(self, half_life_days: float | None = 30.0) -> None:
        if half_life_days is not None and half_life_days <= 0:
            raise ValueError(f"half_life_days must be positive (or none), got {half_life_days}")
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
                age_days = (reference_time(ts) - ts).dt.total_seconds().to_numpy() / 86400.0
                weights = weights * np.power(0.5, np.maximum(age_days, 0.0) / self.half_life_days)
            counts = (
                pd.Series(weights, index=events[C.ITEM_ID].to_numpy(str))
                .groupby(level=0)
                .sum()
                .reindex(catalogue, fill_value=0.0)
            )
            self._set(name, catalogue, np.log1p(counts.to_numpy(float)))

    def _set(self, scenario: str, items: np.ndarray, scores: np.ndarray) -> None:
        by_id = np.argsort(items, kind="stable")  # ties broken by item id: reproducible
        self._items[scenario] = items[by_id]
        self._scores[scenario] = scores[by_id]
        self._order[scenario] = top_k(scores[by_id], len(scores))
        self._index[scenario] = IdIndex(items[by_id])

    # Serving ----------------------------------------------------------------------------
    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        name = batch.scenario.name
        out = np.full(len(batch), np.nan)
        if name in self._index:
            pos = batch.positions(self._index[name])
            known = pos >= 0
            out[known] = self._scores[name][pos[known]]
        return {"click": out}

    def retrieve(self, batch: RetrievalBatch, n: int) -> Ragged:
        """The same ranking for everyone, minus each request's exclusions."""
        name = batch.scenario.name
        if name not in self._order or n <= 0:
            return Ragged.empty(len(batch))
        n_items = len(self._items[name])
        head = self._order[name][: n + int(batch.exclude.lengths.max(initial=0))]
        rows = np.repeat(np.arange(len(batch), dtype=np.int64), len(head))
        cols = np.tile(head, len(batch))
        ok = np.ones(len(rows), dtype=bool)
        if len(batch.exclude.values):
            codes = self._index[name].positions(batch.exclude.values)
            known = codes >= 0
            blocked = batch.exclude.row_index()[known] * n_items + codes[known]
            ok = ~np.isin(rows * n_items + cols, blocked)
        grid = ok.reshape(len(batch), len(head))
        grid &= np.cumsum(grid, axis=1) <= n
        kept = grid.ravel()
        counts = grid.sum(axis=1)
        offsets = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return Ragged(self._items[name][cols[kept]], offsets)

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
