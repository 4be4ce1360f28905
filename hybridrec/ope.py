"""Off-policy evaluation: the value of an evaluation policy from another policy's logs.

One logged row is one shown slot: the action (item) the logging policy put there, the
logging policy's probability of that action in that slot (``pscore``, π_b), the reward
observed (a click, 0 or 1, or a graded gain), the evaluation policy's probability of the same
action in the same slot (``target``, π_e) and a group id (the request or the user: the
bootstrap resamples whole groups, so rows that share one are never split). The value
estimated is the evaluation policy's expected reward per slot.

Estimators, with the importance weight ``w = target / pscore`` of each row:

* **DM** (direct method): the mean over rows of ``dm_target``, a reward model's prediction
  averaged over the evaluation policy's actions, ``sum_a π_e(a|x) q̂(x, a)``. No weights, so
  low variance, but biased as far as the model is wrong.
* **IPS** (inverse propensity scoring): the mean of ``w * reward``. Unbiased when π_b > 0
  wherever π_e > 0 and the propensities are right; high variance when the weights are
  large, i.e. when the policies disagree.
* **SNIPS** (self-normalised IPS): ``sum(w * reward) / sum(w)``. Slightly biased, but
  invariant to a common rescaling of the weights and usually of lower variance than IPS.
* **DR** (doubly robust): the mean of ``dm_target + w * (reward - dm_logged)``, where
  ``dm_logged`` is the model's prediction for the logged action: the model's estimate,
  corrected by the importance-weighted residual. Unbiased when the propensities are right,
  whatever the model; the better the model, the smaller the residuals and the variance.

The position-wise (slot-wise) assumption: each slot is treated as a bandit round of its own,
with the marginal probabilities of its action in that slot under both policies. This holds
when a slot's reward depends only on the action in that slot and the context, not on what
the other slots of the same list show (no cascade, no substitution between slots); when it
does not hold, the estimates are biased however many rows there are.

Intervals are percentile bootstrap intervals over groups (``estimate``): each draw resamples
the groups with replacement, every estimator sees the same draws (so differences between
estimators are paired), and a draw is computed from per-group sums weighted by how many
times each group was drawn, never by copying rows. The reward model behind DM and DR is held
fixed across draws. ``effective_sample_size`` tells how many rows' worth of information the
importance weights leave, ``(sum w)^2 / sum w^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import numpy.typing as npt

__all__ = ["ESTIMATORS", "Estimate", "LoggedFeedback", "bootstrap", "dm", "dr",
           "effective_sample_size", "estimate", "ips", "percentile_interval",
           "relative_error", "resample_groups", "snips", "terms", "values"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Every estimator's name, in the order results are reported.
ESTIMATORS = ("dm", "ips", "snips", "dr")
#: The estimators that need a reward model (``dm_logged`` and ``dm_target``).
NEEDS_MODEL = frozenset({"dm", "dr"})
#: Bootstrap draws computed at once are capped at this many (draw, group) counts.
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True, eq=False, init=False)
class LoggedFeedback:
    """Logged bandit feedback, one row per shown slot, validated on construction.

    Any array-like is accepted and stored as a 1-D float array (``groups`` as given, plus
    their integer codes). ``ValueError`` names the field at fault: arrays must be 1-D, of
    one length and not empty; ``reward`` finite; ``pscore`` in (0, 1]; ``target`` in
    [0, 1]; ``dm_logged`` and ``dm_target`` finite and given both or neither.
    """

    reward: FloatArray
    pscore: FloatArray
    target: FloatArray
    groups: npt.NDArray[Any]
    dm_logged: FloatArray | None = None
    dm_target: FloatArray | None = None
    #: ``target / pscore`` per row.
    weights: FloatArray = field(init=False, repr=False)
    #: Each row's group as a code in ``0 .. n_groups - 1``.
    group_codes: IntArray = field(init=False, repr=False)
    n_groups: int = field(init=False)

    def __init__(self, reward: npt.ArrayLike, pscore: npt.ArrayLike, target: npt.ArrayLike,
                 groups: npt.ArrayLike, dm_logged: npt.ArrayLike | None = None,
                 dm_target: npt.ArrayLike | None = None) -> None:
        r = _column("reward", reward, None)
        n = len(r)
        p = _column("pscore", pscore, n)
        if ((p <= 0) | (p > 1)).any():
            raise ValueError(f"pscore must be in (0, 1]: {_first_bad(p, (p <= 0) | (p > 1))}")
        t = _column("target", target, n)
        if ((t < 0) | (t > 1)).any():
            raise ValueError(f"target must be in [0, 1]: {_first_bad(t, (t < 0) | (t > 1))}")
        if (dm_logged is None) != (dm_target is None):
            given, missing = (("dm_logged", "dm_target") if dm_target is None
                              else ("dm_target", "dm_logged"))
            raise ValueError(f"{given} was given without {missing}: the direct method needs "
                             "both or neither")
        logged = None if dm_logged is None else _column("dm_logged", dm_logged, n)
        tgt = None if dm_target is None else _column("dm_target", dm_target, n)
        g = np.asarray(groups)
        if g.ndim != 1 or len(g) != n:
            raise ValueError(f"groups must be 1-D with one entry per row ({n}), got shape "
                             f"{g.shape}")
        try:
            uniques, codes = np.unique(g, return_inverse=True)
        except TypeError as exc:  # e.g. None among strings: no order
            raise ValueError(f"groups must be comparable ids of one type: {exc}") from exc
        for name, value in (("reward", r), ("pscore", p), ("target", t), ("groups", g),
                            ("dm_logged", logged), ("dm_target", tgt),
                            ("weights", t / p), ("group_codes", codes.astype(np.int64)),
                            ("n_groups", len(uniques))):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.reward)

    @property
    def has_model(self) -> bool:
        """Whether the direct-method inputs are there (DM and DR can be computed)."""
        return self.dm_logged is not None

    def __repr__(self) -> str:
        return (f"LoggedFeedback(rows={len(self)}, groups={self.n_groups}, "
                f"model={'yes' if self.has_model else 'no'})")


@dataclass(frozen=True)
class Estimate:
    """A policy value: the point estimate, its bootstrap interval and standard error."""

    value: float
    lo: float
    hi: float
    #: The standard deviation of the bootstrap draws.
    se: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "se": self.se}


def _column(name: str, values: npt.ArrayLike, n: int | None) -> FloatArray:
    """``values`` as a finite 1-D float array of length ``n`` (any non-zero length if None)."""
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if out.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {out.shape}")
    if n is None and not len(out):
        raise ValueError(f"{name} is empty: there are no logged rows")
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} rows, reward has {n}")
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite: {_first_bad(out, ~np.isfinite(out))}")
    return out


def _first_bad(values: FloatArray, bad: npt.NDArray[np.bool_]) -> str:
    where = np.flatnonzero(bad)
    return f"{len(where)} bad value(s), the first {values[where[0]]!r} at row {where[0]}"


def effective_sample_size(weights: LoggedFeedback | npt.ArrayLike) -> float:
    """Kish's effective sample size of importance weights, ``(sum w)^2 / sum w^2``.

    ``n`` when all weights are equal, near 1 when one weight dominates, 0 when all are 0
    (the evaluation policy never takes a logged action).
    """
    w = weights.weights if isinstance(weights, LoggedFeedback) else np.asarray(weights, float)
    if w.ndim != 1 or (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be a 1-D array of finite non-negative numbers")
    square = float(np.dot(w, w))
    return float(w.sum()) ** 2 / square if square > 0 else 0.0


def _names(data: LoggedFeedback, estimators: Sequence[str] | None) -> tuple[str, ...]:
    """The estimators asked for (all that the data allows if None), checked."""
    if estimators is None:
        return tuple(e for e in ESTIMATORS if data.has_model or e not in NEEDS_MODEL)
    if isinstance(estimators, str):
        estimators = (estimators,)
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {unknown}: choose from {list(ESTIMATORS)}")
    need = [e for e in estimators if e in NEEDS_MODEL]
    if need and not data.has_model:
        raise ValueError(f"{', '.join(need)} need a reward model: give LoggedFeedback "
                         "dm_logged and dm_target")
    return tuple(estimators)


def terms(data: LoggedFeedback, estimator: str) -> tuple[FloatArray, FloatArray]:
    """Per-row numerator and denominator terms: the estimate is ``sum(num) / sum(den)``
    (``den`` is all ones except for SNIPS, whose denominator is the weights)."""
    (name,) = _names(data, (estimator,))
    w, r = data.weights, data.reward
    ones = np.ones(len(data))
    if name == "ips":
        return w * r, ones
    if name == "snips":
        return w * r, w
    assert data.dm_logged is not None and data.dm_target is not None  # checked by _names
    if name == "dm":
        return data.dm_target, ones
    return data.dm_target + w * (r - data.dm_logged), ones


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


def values(data: LoggedFeedback, estimators: Sequence[str] | None = None,
           group_counts: npt.ArrayLike | None = None) -> dict[str, float]:
    """Point estimates; with ``group_counts`` (how many times each group code is drawn, as
    in one bootstrap draw), the estimates on that resample."""
    names = _names(data, estimators)
    counts = None if group_counts is None else np.asarray(group_counts, dtype=np.float64)
    if counts is not None and counts.shape != (data.n_groups,):
        raise ValueError(f"group_counts must have one count per group ({data.n_groups})")
    out = {}
    for name in names:
        num, den = terms(data, name)
        if counts is None:
            out[name] = _ratio(float(num.sum()), float(den.sum()))
        else:
            weight = counts[data.group_codes]
            out[name] = _ratio(float(weight @ num), float(weight @ den))
    return out


def dm(data: LoggedFeedback) -> float:
    """The direct method's estimate: the mean of ``dm_target``."""
    return values(data, ("dm",))["dm"]


def ips(data: LoggedFeedback) -> float:
    """Inverse propensity scoring: the mean of ``w * reward``."""
    return values(data, ("ips",))["ips"]


def snips(data: LoggedFeedback) -> float:
    """Self-normalised IPS: ``sum(w * reward) / sum(w)`` (NaN if every weight is 0)."""
    return values(data, ("snips",))["snips"]


def dr(data: LoggedFeedback) -> float:
    """Doubly robust: the mean of ``dm_target + w * (reward - dm_logged)``."""
    return values(data, ("dr",))["dr"]


def resample_groups(n_groups: int, rng: np.random.Generator, n_draws: int = 1) -> IntArray:
    """``(n_draws, n_groups)`` counts: how many times each group is drawn when ``n_groups``
    groups are resampled with replacement, once per draw."""
    if n_groups < 1:
        raise ValueError("there must be at least one group to resample")
    picks = rng.integers(0, n_groups, size=(n_draws, n_groups))
    offsets = (np.arange(n_draws, dtype=np.int64) * n_groups)[:, None]
    flat = np.bincount((picks + offsets).ravel(), minlength=n_draws * n_groups)
    return flat.reshape(n_draws, n_groups).astype(np.int64)


def bootstrap(data: LoggedFeedback, estimators: Sequence[str] | None = None,
              n_boot: int = 1000, seed: int = 0) -> dict[str, FloatArray]:
    """``n_boot`` bootstrap draws of each estimate, resampling whole groups; every
    estimator sees the same draws. A draw whose SNIPS denominator is 0 is NaN."""
    names = _names(data, estimators)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    g = data.n_groups
    sums = np.empty((g, 2 * len(names)))
    for j, name in enumerate(names):
        num, den = terms(data, name)
        sums[:, 2 * j] = np.bincount(data.group_codes, num, minlength=g)
        sums[:, 2 * j + 1] = np.bincount(data.group_codes, den, minlength=g)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // g)
    parts = []
    for start in range(0, n_boot, chunk):
        counts = resample_groups(g, rng, min(chunk, n_boot - start))
        parts.append(counts.astype(np.float64) @ sums)
    totals = np.vstack(parts)
    num, den = totals[:, 0::2], totals[:, 1::2]
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
    return {name: draws[:, j] for j, name in enumerate(names)}


def percentile_interval(draws: npt.ArrayLike, alpha: float = 0.05) -> tuple[float, float]:
    """The ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the finite draws (NaN if none)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if not len(d):
        return float("nan"), float("nan")
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def estimate(data: LoggedFeedback, estimators: Sequence[str] | None = None,
             n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, Estimate]:
    """Each estimator's value with its ``1 - alpha`` percentile bootstrap interval over
    groups and bootstrap standard error. ``estimators`` defaults to every one the data
    allows (DM and DR only with a reward model; asking for them without one raises)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    points = values(data, estimators)
    draws = bootstrap(data, tuple(points), n_boot, seed)
    out = {}
    for name, value in points.items():
        d = draws[name]
        finite = d[np.isfinite(d)]
        lo, hi = percentile_interval(finite, alpha)
        se = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
        out[name] = Estimate(value, lo, hi, se)
    return out


@overload
def relative_error(estimate: float | Estimate, truth: float) -> float: ...


@overload
def relative_error(estimate: FloatArray, truth: float | FloatArray) -> FloatArray: ...


@overload
def relative_error(estimate: float | Estimate, truth: FloatArray) -> FloatArray: ...


def relative_error(estimate: float | Estimate | FloatArray,
                   truth: float | FloatArray) -> float | FloatArray:
    """``|estimate - truth| / |truth|``, elementwise for arrays (e.g. paired bootstrap
    draws of both). A zero truth has no relative error: ``ValueError``."""
    value = estimate.value if isinstance(estimate, Estimate) else estimate
    if np.any(np.asarray(truth) == 0):
        raise ValueError("truth must be non-zero for a relative error")
    if isinstance(value, np.ndarray) or isinstance(truth, np.ndarray):
        return np.asarray(np.abs(np.asarray(value, float) - truth) / np.abs(truth), float)
    return abs(float(value) - float(truth)) / abs(float(truth))
