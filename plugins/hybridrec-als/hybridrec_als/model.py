"""ALS over each scenario's user x item confidence matrix.

Confidence of a (user, item) pair is the sum of its events' weights; the weights default to
the scenario's ``event_weights`` (purchase > cart > view, like > watch) and can be set per
scenario in config (``weights: {shop: {view: 1, cart: 3, purchase: 8}}``). Factors,
regularisation and alpha are chosen per scenario by a small grid search on a validation slice
of the training window (never the test window) held out the way the run holds out its test
(``TrainingData.split``), scored by NDCG@10; the chosen values and the grid's results are
recorded in ``describe()`` and so in the manifest.

At request time a user's vector is the trained one, or, when the request's history holds
items the model did not see for that user (feedback since training, ``context.recent_items``),
a vector folded in from all of them with implicit's ``recalculate_user`` (one least-squares
solve against the fixed item factors). Which requests need a fold-in is found for the whole
batch at once; only those are solved one by one. Items the model does not know get NaN, never
a made-up zero.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import (
    CandidateSource,
    Ragged,
    RetrievalBatch,
    ScoreBatch,
    Scorer,
    SimilarItems,
    TrainingData,
)
from hybridrec.ids import IdIndex
from hybridrec.ranking import top_k, top_k_rows
from hybridrec.scenario_models import ScenarioModels, measurable_users, validation_slices
from hybridrec_als import device as D

log = logging.getLogger(__name__)

DEFAULT_GRID = {"factors": [16, 32], "regularization": [5.0, 20.0], "alpha": [1.0, 2.0]}
DEFAULT_PARAMS = {"factors": 16, "regularization": 5.0, "alpha": 1.0}
#: A scenario model's arrays, as saved (one file each).
ARRAYS = ("user_ids", "item_ids", "user_factors", "item_factors", "user_items", "seen_keys")


@dataclass
class ScenarioModel:
    """Fitted state for one scenario; NumPy and SciPy only, whatever the training device."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_items: Any  # scipy.sparse.csr_matrix of confidences
    params: dict[str, Any]
    tuning: list[dict[str, Any]] = field(default_factory=list)
    #: (user row * items + item column) of the pairs the scenario counts as seen in training
    #: (its own event weights, which the serving history follows); sorted
    seen_keys: np.ndarray | None = None
    _folder: Any = None

    def __post_init__(self) -> None:
        self.item_index = IdIndex(self.item_ids)  # vectorised lookups of candidate arrays
        self.user_index = IdIndex(self.user_ids)
        if self.seen_keys is None:
            self.seen_keys = pair_keys(self.user_items)
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        self.unit_items = self.item_factors / np.where(norms > 0, norms, 1.0)

    def folder(self) -> Any:
        """A CPU implicit model over the fixed item factors, for fold-in."""
        if self._folder is None:
            import implicit.cpu.als

            with D.single_threaded_blas():
                model = implicit.cpu.als.AlternatingLeastSquares(
                    factors=self.item_factors.shape[1],
                    regularization=self.params["regularization"],
                    alpha=self.params["alpha"], num_threads=1)
            model.item_factors = self.item_factors
            self._folder = model
        return self._folder

    def user_vectors(self, user_ids: np.ndarray, history: Ragged
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for a batch of requests and whether each has one: the trained vector, or a
        fold-in where the history holds items the model did not train on for that user."""
        rows = self.user_index.positions(user_ids)
        vectors = np.zeros((len(user_ids), self.user_factors.shape[1]), dtype=np.float32)
        trained = rows >= 0
        vectors[trained] = self.user_factors[rows[trained]]
        cols = self.item_index.positions(history.values)
        request = history.row_index()
        known = cols >= 0
        keys = rows[request[known]].astype(np.int64) * len(self.item_ids) + cols[known]
        new = (rows[request[known]] < 0) | ~_contains(self.seen_keys, keys)
        refold = np.unique(request[known][new])
        for r in refold:
            vectors[r] = self.user_vector(str(user_ids[r]), history[r].tolist())
        has = trained.copy()
        has[refold] = True
        return vectors, has

    def user_vector(self, user_id: str, recent: list[str]) -> np.ndarray | None:
        """The trained vector, or one folded in when there are events the model has not seen."""
        import scipy.sparse as sp

        row = self.user_index.get(user_id)
        extra = self.item_index.positions(recent)
        extra = extra[extra >= 0]
        if row >= 0:
            trained = self.user_items[row]
            extra = np.setdiff1d(extra, trained.indices)
            if len(extra) == 0:
                return self.user_factors[row]
            cols = np.r_[trained.indices, extra]
            data = np.r_[trained.data, np.ones(len(extra), dtype=np.float32)]
        elif len(extra):
            cols = np.unique(extra)
            data = np.ones(len(cols), dtype=np.float32)
        else:
            return None
        matrix = sp.csr_matrix((data.astype(np.float32), (np.zeros(len(cols), int), cols)),
                               shape=(1, len(self.item_ids)))
        return np.asarray(self.folder().recalculate_user(0, matrix), dtype=np.float32)


def confidence_matrix(events: Any, weights: dict[str, float], users: np.ndarray,
                      items: np.ndarray) -> Any:
    """(users x items) CSR of summed event weights; zero-weight events are dropped."""
    import pandas as pd
    import scipy.sparse as sp

    w = events[C.EVENT_TYPE].map(weights).fillna(0.0).to_numpy(np.float32)
    rows = pd.Index(users).get_indexer(events[C.USER_ID])
    cols = pd.Index(items).get_indexer(events[C.ITEM_ID])
    keep = (w > 0) & (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(len(users), len(items)),
                           dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def ndcg_at(model: Any, train: Any, valid: Any, k: int = 10) -> float:
    """NDCG@k of ``model`` on users with validation items, seen training items filtered."""
    from hybridrec import metrics as M

    users = measurable_users(train, valid)
    if len(users) == 0:
        return float("nan")
    ids, _ = model.recommend(users, train[users], N=k, filter_already_liked_items=True)
    sub = valid[users].tocoo()
    hits = M.hits_matrix(np.asarray(ids), sub.row, sub.col)
    return M.ranking_metrics(hits, np.diff(valid[users].indptr))["ndcg"]


class AlsScorer(ScenarioModels, Scorer, CandidateSource, SimilarItems):
    name = "als"
    tasks = ("click",)
    meta_file = "als.json"
    arrays = ARRAYS
    model_class = ScenarioModel

    def __init__(
        self,
        device: str = "auto",
        threads: int | None = None,
        iterations: int = 15,
        tune: bool = True,
        grid: dict[str, list[Any]] | None = None,
        factors: int | None = None,
        regularization: float | None = None,
        alpha: float | None = None,
        weights: dict[str, dict[str, float]] | None = None,
        scenarios: list[str] | None = None,
        validation_fraction: float = 0.1,
        random_state: int = 0,
    ) -> None:
        if device not in D.DEVICES:  # refused when configured, not when fitting
            raise ValueError(f"device must be one of {', '.join(D.DEVICES)}, got {device!r}")
        super().__init__(device=device, threads=threads, iterations=iterations, tune=tune,
                         grid=grid, factors=factors, regularization=regularization,
                         alpha=alpha, weights=weights, scenarios=scenarios,
                         validation_fraction=validation_fraction, random_state=random_state)
        self.models: dict[str, ScenarioModel] = {}
        self.fit_info: dict[str, Any] = {}

    # Fitting ----------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> None:
        device = D.choose_device(self.config["device"])
        threads = D.cpu_threads(self.config["threads"])
        self.fit_info = {"device": device, "threads": threads, "blas_threads": 1}
        for name, scenario in data.scenarios.items():
            if not self.supports(scenario):
                continue
            events = data.scenario_events(name)
            items = data.items.loc[data.items[C.SCENARIO] == name, C.ITEM_ID].to_numpy(str)
            users = np.unique(events[C.USER_ID].to_numpy(str))
            if len(users) == 0 or len(items) == 0:
                continue
            weights = self.weights_for(scenario)
            matrix = confidence_matrix(events, weights, users, items)
            tuning: list[dict[str, Any]] = []
            params = self._fixed_params()
            if self.config["tune"]:
                params, tuning = self._tune(events, weights, users, items, device, threads,
                                             data.split)
            start = time.perf_counter()
            model = self._fit_one(matrix, params, device, threads)
            seconds = time.perf_counter() - start
            seen = confidence_matrix(events, dict(scenario.event_weights), users, items)
            self.models[name] = ScenarioModel(users, items, *_cpu_factors(model), matrix,
                                              {**params, "fit_seconds": round(seconds, 3)},
                                              tuning, pair_keys(seen))

    def _fixed_params(self) -> dict[str, Any]:
        return {k: self.config[k] if self.config.get(k) is not None else v
                for k, v in DEFAULT_PARAMS.items()}

    def _fit_one(self, matrix: Any, params: dict[str, Any], device: str, threads: int) -> Any:
        with D.single_threaded_blas():  # implicit checks the BLAS threads when constructed
            model = D.make_model(device, threads, iterations=self.config["iterations"],
                                 random_state=self.config["random_state"],
                                 **{k: params[k] for k in DEFAULT_PARAMS})
            model.fit(matrix, show_progress=False)
        return model

    def _tune(self, events: Any, weights: dict[str, float], users: np.ndarray,
              items: np.ndarray, device: str, threads: int, split: str
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Grid search on a ``validation_fraction`` of the training window held out as
        ``split`` holds out the test."""
        train, valid = validation_slices(
            events, lambda part: confidence_matrix(part, weights, users, items),
            self.config["validation_fraction"], split)
        grid = {**DEFAULT_GRID, **(self.config.get("grid") or {})}
        for key in DEFAULT_PARAMS:  # an explicit value pins that parameter
            if self.config.get(key) is not None:
                grid[key] = [self.config[key]]
        results = []
        for values in itertools.product(*(grid[k] for k in DEFAULT_PARAMS)):
            params = dict(zip(DEFAULT_PARAMS, values, strict=True))
            score = ndcg_at(self._fit_one(train, params, device, threads), train, valid)
            results.append({**params, "val_ndcg@10": round(score, 5)})
        scored = [r for r in results if r["val_ndcg@10"] == r["val_ndcg@10"]]
        if not scored:
            log.warning("no validation users for ALS tuning; using the defaults")
            return self._fixed_params(), results
        best = max(scored, key=lambda r: r["val_ndcg@10"])
        return {k: best[k] for k in DEFAULT_PARAMS}, results

    # Serving ----------------------------------------------------------------------------
    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        out = np.full(len(batch), np.nan)
        model = self.models.get(batch.scenario.name)
        if model is None or len(batch) == 0:
            return {"click": out}
        assert batch.history is not None
        vectors, has = model.user_vectors(batch.user_ids, batch.history)
        pos = batch.positions(model.item_index)
        ok = (pos >= 0) & has[batch.request]
        # float64, one dot product per row: the same value whatever else is in the batch
        out[ok] = np.einsum("ij,ij->i", model.item_factors[pos[ok]].astype(np.float64),
                            vectors[batch.request[ok]].astype(np.float64))
        return {"click": out}

    def retrieve(self, batch: RetrievalBatch, n: int) -> Ragged:
        model = self.models.get(batch.scenario.name)
        if model is None:
            return Ragged.empty(len(batch))
        vectors, has = model.user_vectors(batch.user_ids, batch.history)
        scores = vectors @ model.item_factors.T
        scores[~has] = -np.inf
        cols = model.item_index.positions(batch.exclude.values)
        known = cols >= 0
        scores[batch.exclude.row_index()[known], cols[known]] = -np.inf
        top = top_k_rows(scores, n, finite_only=True)
        return Ragged(model.item_ids[top.values], top.offsets)

    def similar_items(self, scenario: str, item_id: str, n: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
        model = self.models.get(scenario)
        if model is None:
            raise KeyError(f"ALS has no model for scenario {scenario!r}")
        pos = model.item_index.get(item_id)
        if pos < 0:
            raise KeyError(f"item {item_id!r} is unknown to the ALS model of {scenario!r}")
        cosine = model.unit_items @ model.unit_items[pos]
        cosine[pos] = -np.inf
        order = top_k(cosine, n, finite_only=True)
        return model.item_ids[order], cosine[order]


def _cpu_factors(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Factors as float32 NumPy arrays, moving them off the GPU if they are there."""
    if hasattr(model, "to_cpu"):
        model = model.to_cpu()
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32))


def pair_keys(matrix: Any) -> np.ndarray:
    """The nonzero (row, column) pairs of a sparse matrix as sorted int64 keys."""
    coo = matrix.tocoo()
    return np.sort(coo.row.astype(np.int64) * matrix.shape[1] + coo.col)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` is in the sorted array ``sorted_keys``."""
    at = np.searchsorted(sorted_keys, keys)
    found = at < len(sorted_keys)
    found[found] = sorted_keys[at[found]] == keys[found]
    return found
