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

__all__ = ["auc", "coverage", "grouped_auc", "hits_matrix", "json_safe", "logloss",
           "ranking_metrics"]


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
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=float)
    if hits.ndim != 2 or len(hits) != len(n_relevant):
        raise ValueError("hits must be (users, K) with one relevant count per user")
    if (n_relevant <= 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    if len(hits) == 0:
        return {"recall": float("nan"), "ndcg": float("nan"), "map": float("nan"),
                "hit_rate": float("nan")}
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal_hits = np.minimum(n_relevant, k).astype(int)
    ideal = np.cumsum(discounts)[ideal_hits - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k)
    return {
        "recall": float((hits.sum(axis=1) / n_relevant).mean()),
        "ndcg": float((dcg / ideal).mean()),
        "map": float(ap.mean()),
        "hit_rate": float(hits.any(axis=1).mean()),
    }


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
