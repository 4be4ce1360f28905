"""Top-k and per-request arithmetic, written once for every component.

Ties are broken by position (the earlier candidate first), so the same scores always give the
same ranking, whether a request is ranked alone or inside a batch of thousands. NaN ranks
below every number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from hybridrec.contracts import Ragged

__all__ = ["group_standardise", "top_k", "top_k_groups", "top_k_rows"]


def top_k_rows(scores: np.ndarray, k: int, finite_only: bool = False) -> Ragged:
    """Column positions of the ``k`` highest scores of each row of a 2-D array, best first.

    ``finite_only`` leaves out NaN and infinite scores (a source's excluded items are
    ``-inf``), so rows may come back shorter than ``k``.
    """
    scores = np.asarray(scores, dtype=float)
    n_rows, width = scores.shape
    k = max(0, min(k, width))
    s = np.where(np.isnan(scores), -np.inf, scores)
    if 0 < k < width:
        # Everything at or above each row's k-th largest value, then an exact ordering of
        # those few: (score descending, position ascending).
        kth = np.partition(s, width - k, axis=1)[:, width - k]
        rows, cols = np.nonzero(s >= kth[:, None])
    else:
        rows, cols = np.divmod(np.arange(n_rows * width if k else 0), width)
    values = s[rows, cols]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    keep = (np.arange(len(rows)) - starts[rows]) < k
    if finite_only:
        keep &= np.isfinite(values)
    counts = np.bincount(rows[keep], minlength=n_rows)
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Ragged(cols[keep].astype(np.int64), offsets)


def top_k(scores: np.ndarray, k: int, finite_only: bool = False) -> np.ndarray:
    """Positions of the ``k`` highest of a 1-D array, best first."""
    return top_k_rows(np.asarray(scores, dtype=float)[None, :], k, finite_only).values


def top_k_groups(values: np.ndarray, offsets: np.ndarray, k: int,
                 finite_only: bool = False) -> Ragged:
    """Within each group ``values[offsets[g]:offsets[g + 1]]``, the flat positions of its ``k``
    highest values, best first."""
    lengths = np.diff(offsets)
    n_groups = len(lengths)
    if n_groups == 1:  # one request (serving): the same answer without the padded matrix
        return _top_k_one(np.asarray(values, dtype=float)[offsets[0]:offsets[1]],
                          int(offsets[0]), k, finite_only)
    width = int(lengths.max(initial=0))
    if n_groups == 0 or width == 0:
        return Ragged.empty(n_groups, dtype=np.int64)
    padded = np.full((n_groups, width), -np.inf)
    rows = np.repeat(np.arange(n_groups), lengths)
    cols = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
    padded[rows, cols] = np.where(np.isnan(values), -np.inf, values)
    top = top_k_rows(padded, k, finite_only)
    group = top.row_index()
    real = top.values < lengths[group]  # padding sorts after every real candidate
    return Ragged(top.values + offsets[group], top.offsets).mask(real)


def _top_k_one(values: np.ndarray, start: int, k: int, finite_only: bool) -> Ragged:
    """``top_k_groups`` of a single group: ``top_k_rows``' selection and order on one row."""
    s = np.where(np.isnan(values), -np.inf, values)
    width = len(s)
    k = max(0, min(k, width))
    if 0 < k < width:
        cols = np.flatnonzero(s >= np.partition(s, width - k)[width - k])
    else:
        cols = np.arange(width if k else 0)
    cols = cols[np.lexsort((cols, -s[cols]))][:k]
    if finite_only:
        cols = cols[np.isfinite(s[cols])]
    return Ragged(cols.astype(np.int64) + start, np.array([0, len(cols)], dtype=np.int64))


def group_standardise(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Z-score of each value within its group over the finite entries; NaN stays NaN and a
    group whose finite values are all equal becomes zeros."""
    values = np.asarray(values, dtype=float)
    if n_groups == 1:
        return _standardise_one(values)
    finite, g, centred, std = _moments(values, group, n_groups)
    out = np.full(values.shape, np.nan)
    out[finite] = np.divide(centred, std[g], out=np.zeros_like(centred), where=std[g] > 0)
    return out


def nan_to_zero(values: np.ndarray) -> np.ndarray:
    """``values`` with NaN as 0 (a z-score is finite or NaN: a cheaper ``np.nan_to_num``)."""
    return np.where(np.isnan(values), 0.0, values)


def group_std(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Each group's standard deviation over its finite values (0 for a group without)."""
    values = np.asarray(values, dtype=float)
    if n_groups == 1:
        x = values[np.isfinite(values)]
        return np.array([_centred_std(x)[1] if len(x) else 0.0])
    return _moments(values, group, n_groups)[3]


def _moments(values: np.ndarray, group: np.ndarray, n_groups: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The finite entries' mask, their groups and values minus their group's mean, and each
    group's standard deviation over them."""
    finite = np.isfinite(values)
    g, x = group[finite], values[finite]
    count = np.bincount(g, minlength=n_groups)
    total = np.bincount(g, weights=x, minlength=n_groups)
    mean = np.divide(total, count, out=np.zeros(n_groups), where=count > 0)
    centred = x - mean[g]
    var = np.bincount(g, weights=centred * centred, minlength=n_groups)
    return finite, g, centred, np.sqrt(np.divide(var, count, out=np.zeros(n_groups),
                                                 where=count > 0))


def _standardise_one(values: np.ndarray) -> np.ndarray:
    """``group_standardise`` of a single group, to the last bit: sums are accumulated in
    order (``cumsum``), as ``bincount`` does, without the per-group indexing."""
    finite = np.isfinite(values)
    if finite.all():  # the usual case: no mask to apply
        if not len(values):
            return np.full(values.shape, np.nan)
        centred, std = _centred_std(values)
        return centred / std if std > 0 else np.zeros(values.shape)
    x = values[finite]
    out = np.full(values.shape, np.nan)
    if len(x):
        centred, std = _centred_std(x)
        out[finite] = centred / std if std > 0 else 0.0
    return out


def _centred_std(x: np.ndarray) -> tuple[np.ndarray, float]:
    """A non-empty group's values minus their mean, and their standard deviation, summed in
    order as ``_moments``' ``bincount`` sums them."""
    centred = x - np.cumsum(x)[-1] / len(x)
    return centred, float(np.sqrt(np.cumsum(centred * centred)[-1] / len(x)))


def weighted_z_terms(scores: Mapping[str, Mapping[str, np.ndarray]], group: np.ndarray,
                     n_groups: int, weight: Callable[[str], float] = lambda key: 1.0
                     ) -> dict[str, np.ndarray]:
    """Each ``scorer.task``'s term of a weighted mean of z-scores: its values standardised
    within each group, times ``weight(key)``, over the total weight of the scores the row
    has (NaN contributes nothing). The terms add up to the mean."""
    terms = {}
    weight_sum = np.zeros(len(group))
    for scorer, tasks in scores.items():
        for task, values in tasks.items():
            w = weight(f"{scorer}.{task}")
            z = group_standardise(values, group, n_groups)
            present = np.isfinite(z)
            terms[f"{scorer}.{task}"] = np.where(present, w * np.nan_to_num(z), 0.0)
            weight_sum += np.where(present, abs(w), 0.0)
    return {key: np.divide(t, weight_sum, out=np.zeros_like(t), where=weight_sum > 0)
            for key, t in terms.items()}
