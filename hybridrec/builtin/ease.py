"""EASE: a linear item-to-item model with a closed-form fit (Steck, "Embarrassingly Shallow
Autoencoders for Sparse Data", WWW 2019).

Per scenario, ``X`` is the binary user x item matrix of the events the scenario weighs above
zero (``[ease.weights.shop]`` overrides the weights). The item-to-item weights are
``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` and a zero diagonal, so that no item
explains itself; a user's score for item ``j`` is the sum of ``B[i, j]`` over the items ``i``
the user acted on, in training and in the request's history (feedback since training,
``context.recent_items``). ``λ`` is chosen per scenario by NDCG@10 on a validation slice of the
training window (never the test window) held out the way the run holds out its test (the
latest events for the temporal split, a seeded draw for the random one: ``TrainingData.split``),
as ALS chooses its factors; the grid's results are in ``describe()`` and so in the manifest.

The model holds a dense items x items matrix (``4 n²`` bytes, memory-mapped from the bundle,
so a server's workers share it) and its fit inverts one (``n³``; about ``16 n²`` bytes while
fitting), once per penalty of the grid and once more, so it keeps the ``max_items`` items with
the most users (5,000 by default). Items outside them, items no one acted on in training and
users with no known item get NaN: no opinion, never a made-up zero. Scoring a request costs
its profile's size times its candidates (one gather): a user with hundreds of items costs
milliseconds. The serving history holds the events the scenario weighs above zero, so
``weights`` set to zero for an event type the scenario counts leave it out of training only.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import ScoreBatch, Scorer, TrainingData
from hybridrec.hookspecs import hookimpl
from hybridrec.ids import IdIndex
from hybridrec.scenario_models import ScenarioModels, measurable_users, validation_slices

log = logging.getLogger(__name__)

DEFAULT_GRID = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)
#: The penalty without tuning, or when the validation slice has no user to measure.
DEFAULT_LAM = 400.0


def interactions(events: Any, weights: dict[str, float], users: np.ndarray,
                 items: np.ndarray) -> Any:
    """(users x items) binary CSR of the pairs with an event weighted above zero."""
    import pandas as pd
    import scipy.sparse as sp

    w = events[C.EVENT_TYPE].map(weights).fillna(0.0).to_numpy(float)
    rows = pd.Index(users).get_indexer(events[C.USER_ID])
    cols = pd.Index(items).get_indexer(events[C.ITEM_ID])
    keep = (w > 0) & (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32),
                            (rows[keep], cols[keep])), shape=(len(users), len(items)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def gram(matrix: Any) -> np.ndarray:
    """``XᵀX`` of a (users x items) matrix, dense float64 (items x items)."""
    return (matrix.T @ matrix).toarray().astype(np.float64)


def item_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """EASE's ``B`` from ``XᵀX`` and the L2 penalty ``lam``, float32; ``gram`` is left as it
    is. Memory: two float64 copies of it, then the float32 result."""
    import scipy.linalg

    penalised = gram.copy()
    penalised[np.diag_indices_from(penalised)] += lam
    inverse = scipy.linalg.inv(penalised, overwrite_a=True, check_finite=False)
    diagonal = np.diag(inverse).copy()
    inverse /= -diagonal  # column j over -P[j, j]
    np.fill_diagonal(inverse, 0.0)
    return inverse.astype(np.float32)


def validation_ndcg(train: Any, valid: Any, weights: np.ndarray, k: int = 10,
                    chunk: int = 2048) -> float:
    """NDCG@k over users with validation items new to them, training items left out; users
    are scored ``chunk`` at a time (each costs a dense row of the catalogue's width)."""
    from hybridrec import metrics as M
    from hybridrec.ranking import top_k_rows

    users = measurable_users(train, valid)
    if len(users) == 0:
        return float("nan")
    ndcg = []
    for start in range(0, len(users), chunk):
        part = users[start:start + chunk]
        scores = np.asarray(train[part] @ weights)
        seen = train[part].tocoo()
        scores[seen.row, seen.col] = -np.inf
        top = top_k_rows(scores, k, finite_only=True)
        ranked = np.full((len(part), k), -1, dtype=np.int64)  # -1: an empty slot
        rows = top.row_index()
        ranked[rows, np.arange(len(rows)) - top.offsets[rows]] = top.values
        sub = valid[part].tocoo()
        hits = M.hits_matrix(ranked, sub.row, sub.col)
        ndcg.append(M.per_user_ranking(hits, np.diff(valid[part].indptr))["ndcg"])
    return float(np.concatenate(ndcg).mean())


@dataclass
class ScenarioModel:
    """One scenario's fitted state: ids, the training interactions and ``B``."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_items: Any  # binary scipy.sparse.csr_matrix, users x items
    weights: np.ndarray  # items x items, float32, zero diagonal
    params: dict[str, Any]
    tuning: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.item_index = IdIndex(self.item_ids)
        self.user_index = IdIndex(self.user_ids)

    def profile(self, row: int, history: np.ndarray) -> np.ndarray:
        """Positions of the items a request's user acted on: in training (``row``, -1 for a
        user the model did not train on) and in its history (positions, -1 where unknown)."""
        history = history[history >= 0]
        if row < 0:
            return np.unique(history)
        start, end = self.user_items.indptr[row], self.user_items.indptr[row + 1]
        return np.union1d(self.user_items.indices[start:end], history)


class EaseScorer(ScenarioModels, Scorer):
    name = "ease"
    tasks = ("click",)
    meta_file = "ease.json"
    mapped = ("weights",)
    arrays = ("user_ids", "item_ids", "user_items", "weights")
    model_class = ScenarioModel

    def __init__(self, lam: float | None = None, grid: list[float] | None = None,
                 tune: bool = True, max_items: int = 5_000,
                 weights: dict[str, dict[str, float]] | None = None,
                 scenarios: list[str] | None = None,
                 validation_fraction: float = 0.1) -> None:
        if lam is not None and lam <= 0:
            raise ValueError(f"lam must be positive, got {lam}")
        if grid is not None and (not grid or any(g <= 0 for g in grid)):
            raise ValueError(f"grid must be a list of positive penalties, got {grid}")
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        if not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must be between 0 and 1, got "
                             f"{validation_fraction}")
        super().__init__(lam=lam, grid=grid, tune=tune, max_items=max_items, weights=weights,
                         scenarios=scenarios, validation_fraction=validation_fraction)
        self.models: dict[str, ScenarioModel] = {}

    # Fitting ----------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> None:
        for name, scenario in data.scenarios.items():
            if not self.supports(scenario):
                continue
            weights = self.weights_for(scenario)
            events = data.scenario_events(name)
            events = events[events[C.EVENT_TYPE].map(weights).fillna(0.0) > 0]
            catalogue = data.items.loc[data.items[C.SCENARIO] == name, C.ITEM_ID]
            events = events[events[C.ITEM_ID].isin(catalogue)]
            items = self._kept_items(events)
            users = np.unique(events[C.USER_ID].to_numpy(str))
            if len(users) == 0 or len(items) == 0:
                continue
            lam = self.config["lam"]
            tuning: list[dict[str, Any]] = []
            if lam is None and self.config["tune"]:
                lam, tuning = self._tune(events, weights, users, items, data.split)
            lam = DEFAULT_LAM if lam is None else lam
            matrix = interactions(events, weights, users, items)
            self.models[name] = ScenarioModel(users, items, matrix,
                                              item_weights(gram(matrix), lam), {"lam": lam},
                                              tuning)

    def _kept_items(self, events: Any) -> np.ndarray:
        """The ``max_items`` items with the most users (ties by id), sorted by id."""
        users_per_item = events.groupby(C.ITEM_ID)[C.USER_ID].nunique()
        users_per_item.index = users_per_item.index.astype(str)
        ranked = users_per_item.sort_index().sort_values(ascending=False, kind="stable")
        return np.sort(ranked.index[: self.config["max_items"]].to_numpy(str))

    def _tune(self, events: Any, weights: dict[str, float], users: np.ndarray,
              items: np.ndarray, split: str) -> tuple[float, list[dict[str, Any]]]:
        """The grid's best penalty on a ``validation_fraction`` of the window held out as
        ``split`` holds out the test."""
        grid = list(self.config.get("grid") or DEFAULT_GRID)
        train, valid = validation_slices(
            events, lambda part: interactions(part, weights, users, items),
            self.config["validation_fraction"], split)
        if len(measurable_users(train, valid)) == 0:
            log.warning("no validation users for EASE tuning; using lam = %g", DEFAULT_LAM)
            return DEFAULT_LAM, []
        train_gram = gram(train)
        results = [{"lam": float(lam),
                    "val_ndcg@10": round(validation_ndcg(
                        train, valid, item_weights(train_gram, lam)), 5)}
                   for lam in grid]
        best = max(results, key=lambda r: r["val_ndcg@10"])["lam"]
        if len(grid) > 1 and best in (min(grid), max(grid)):
            log.info("EASE chose lam = %g, at the edge of its grid %s", best, grid)
        return best, results

    # Serving ----------------------------------------------------------------------------
    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        out = np.full(len(batch), np.nan)
        model = self.models.get(batch.scenario.name)
        if model is None or len(batch) == 0:
            return {"click": out}
        assert batch.history is not None
        rows = model.user_index.positions(batch.user_ids)
        history = model.item_index.positions(batch.history.values)
        pos = batch.positions(model.item_index)
        for r, (start, end) in enumerate(itertools.pairwise(batch.offsets)):
            known = np.flatnonzero(pos[start:end] >= 0) + start
            profile = model.profile(rows[r], history[batch.history.offsets[r]:
                                                     batch.history.offsets[r + 1]])
            if len(known) and len(profile):
                # the profile's rows, then the candidates' columns of them: faster than one
                # np.ix_ gather (1.9 against 5.1 ms for 700 x 500 of 5,000 x 5,000)
                block = np.take(np.take(model.weights, profile, axis=0), pos[known], axis=1)
                out[known] = block.sum(axis=0, dtype=np.float64)
        return {"click": out}


@hookimpl
def register_scorers(register):
    register(EaseScorer)
