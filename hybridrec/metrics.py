"""Offline metrics, computed as arrays over all evaluated users at once.

Ranking metrics take a ``(users, K)`` boolean ``hits`` matrix (whether the item at each rank
is relevant) and each user's number of relevant items:

* Recall@K = hits / number relevant
* NDCG@K = DCG / ideal DCG, with binary gains and ``log2(rank + 1)`` discounts, the ideal
  list holding ``min(relevant, K)`` hits
* MAP@K = mean over users of ``sum_k P@k * hit_k / min(relevant, K)``
* HitRate@K = share of users with at least one hit

Users with no relevant items are left out by the caller. Coverage is the share of the catalogue
that appears in at least one list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["auc", "bootstrap_draws", "coverage", "graded_ndcg", "grouped_auc", "hits_matrix",
           "interval", "json_safe", "logloss", "per_user_ranking", "ranking_metrics"]


def hits_matrix(
    top: np.ndarray, relevant_rows: np.ndarray, relevant_cols: np.ndarray
) -> np.ndarray:
    """Whether ``top[u, k]`` is relevant to user ``u``, given relevant (row, col) pairs.

    ``top`` holds integer item indices (``-1`` for an empty slot); pairs are encoded as one
    int64 key so the lookup is a single ``np.isin``.
    """
    n_cols = int(max(top.max(initial=0), relevant_cols.max(initial=0))) + 1
    rel_keys = relevant_rows.astype(np.int64) * n_cols + relevant_cols
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_cols + top
    return np.isin(keys, rel_keys) & (top >= 0)


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """The mean over users of ``per_user_ranking``."""
    per_user = per_user_ranking(hits, n_relevant)
    if len(hits) == 0:
        return {name: float("nan") for name in per_user}
    return {name: float(values.mean()) for name, values in per_user.items()}


def per_user_ranking(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Recall, NDCG, average precision and hit (0 or 1) at K of each user."""
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=float)
    if hits.ndim != 2 or len(hits) != len(n_relevant):
        raise ValueError("hits must be (users, K) with one relevant count per user")
    if (n_relevant <= 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal_hits = np.minimum(n_relevant, k).astype(int)
    ideal = np.cumsum(discounts)[ideal_hits - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k)
    return {"recall": hits.sum(axis=1) / n_relevant, "ndcg": dcg / ideal, "map": ap,
            "hit_rate": hits.any(axis=1).astype(float)}


def graded_ndcg(gains: np.ndarray, ideal: np.ndarray, pooled: bool = False) -> np.ndarray:
    """Per user, NDCG with graded gains: ``gains`` is (users, K), the gain of the item at
    each rank (0 for an empty slot), ``ideal`` each user's gains in any order (users, >= K,
    zero padded); NaN for a user whose ideal gain is 0. With ``pooled``, each user's DCG is
    divided by the mean ideal DCG instead of their own, so that the mean over users is
    sum(DCG) / sum(ideal DCG): users weigh by the gain at stake (an ad slot's bids)."""
    k = gains.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    best = -np.sort(-np.asarray(ideal, dtype=float), axis=1)[:, :k]
    ideal_dcg = (best * discounts[:best.shape[1]]).sum(axis=1)
    dcg = (np.asarray(gains, dtype=float) * discounts).sum(axis=1)
    if pooled:
        dcg = np.where(ideal_dcg > 0, dcg, np.nan)
        ideal_dcg = np.where(ideal_dcg > 0, ideal_dcg[ideal_dcg > 0].mean()
                             if (ideal_dcg > 0).any() else 0.0, 0.0)
    return np.divide(dcg, ideal_dcg, out=np.full(len(dcg), np.nan), where=ideal_dcg > 0)


def bootstrap_draws(n: int, draws: int = 1000, seed: int = 0) -> np.ndarray:
    """``draws`` resamples (with replacement) of ``n`` users' positions, shared by every
    ranker so that their intervals and differences are paired."""
    return np.random.default_rng(seed).integers(0, n, size=(draws, n)) if n else \
        np.zeros((draws, 0), dtype=np.int64)


def interval(values: np.ndarray, draws: np.ndarray, level: float = 0.95
             ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-user ``values`` (NaN ignored)."""
    import warnings

    values = np.asarray(values, dtype=float)
    if draws.shape[1] == 0 or not np.isfinite(values).any():
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only NaN
        means = np.nanmean(values[draws], axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the ``n_items`` catalogue recommended to at least one user."""
    shown = np.unique(top[top >= 0])
    return float(len(shown) / n_items) if n_items else float("nan")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN scores rank lowest."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def grouped_auc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC within each group (user), averaged with weights = group size; groups whose labels
    are all equal are left out. Scores need only be comparable within a group."""
    groups = np.asarray(groups)
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(groups, kind="stable")
    groups, labels, scores = groups[order], labels[order], scores[order]
    bounds = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    total, weight = 0.0, 0
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        y = labels[start:end]
        if y.all() or not y.any():
            continue
        total += auc(y, scores[start:end]) * (end - start)
        weight += end - start
    return total / weight if weight else float("nan")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so that the JSON written
    (manifests, ``--json``) is strict JSON every parser reads."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities are clipped to ``[eps, 1 - eps]``."""
    labels = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probs, dtype=float), eps, 1 - eps)
    if len(p) == 0:
        return float("nan")
    return float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())


def calibration_bins(labels: np.ndarray, probs: np.ndarray, bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width probability bin: rows, mean predicted probability and observed rate
    (NaN for an empty bin), for reliability plots and ECE."""
    labels = np.asarray(labels, dtype=float)
    probs = np.asarray(probs, dtype=float)
    which = np.clip((probs * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(which, weights=probs, minlength=bins) / count
        observed = np.bincount(which, weights=labels, minlength=bins) / count
    return count, predicted, observed


def ece(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the row-weighted mean gap between predicted probability
    and observed rate over ``bins`` equal-width bins."""
    if len(np.asarray(labels)) == 0:
        return float("nan")
    count, predicted, observed = calibration_bins(labels, probs, bins)
    full = count > 0
    return float((count[full] * np.abs(predicted[full] - observed[full])).sum() / count.sum())
