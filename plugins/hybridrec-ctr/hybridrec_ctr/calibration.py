"""From the trees' raw score (log-odds) to a probability that means what it says.

Two calibrators are fit on a slice of data the trees never saw: Platt scaling (a logistic
regression on the raw score: two parameters, robust with few clicks) and isotonic regression
(monotone and free-form: better with many clicks). The one with the lower log loss in a
two-fold, time-ordered cross-validation on that slice is kept, refit on the whole slice.
Both apply with NumPy alone (serving never imports scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec.metrics import logloss

EPS = 1e-6


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class Calibrator:
    kind: str  # "platt", "isotonic" or "none"
    params: dict[str, Any] = field(default_factory=dict)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.kind == "platt":
            p = sigmoid(self.params["a"] * raw + self.params["b"])
        elif self.kind == "isotonic":
            p = np.interp(raw, self.params["x"], self.params["y"])
        else:
            p = sigmoid(raw)
        return np.clip(p, EPS, 1 - EPS)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": {k: (np.asarray(v).tolist() if isinstance(
            v, np.ndarray) else v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        params = {k: (np.asarray(v, dtype=np.float64) if isinstance(v, list) else v)
                  for k, v in d["params"].items()}
        return cls(d["kind"], params)


def platt(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4, max_iter=1000)  # next to no penalty on two parameters
    model.fit(raw.reshape(-1, 1), y)
    return Calibrator("platt", {"a": float(model.coef_[0, 0]), "b": float(model.intercept_[0])})


def isotonic(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(out_of_bounds="clip", y_min=EPS, y_max=1 - EPS)
    model.fit(raw, y)
    return Calibrator("isotonic", {"x": model.X_thresholds_.astype(np.float64),
                                   "y": model.y_thresholds_.astype(np.float64)})


FITTERS = {"platt": platt, "isotonic": isotonic}


def choose(raw: np.ndarray, y: np.ndarray, method: str = "auto"
           ) -> tuple[Calibrator, dict[str, float]]:
    """The calibrator for ``raw`` scores and labels ``y`` (in time order): ``method`` or, for
    ``auto``, the one with the lower two-fold log loss; with the log loss of each candidate
    (and of the uncalibrated scores)."""
    raw, y = np.asarray(raw, dtype=np.float64), np.asarray(y, dtype=np.float64)
    scores = {"none": logloss(y, sigmoid(raw))} if len(y) else {}
    if len(y) < 2 or y.min() == y.max():  # nothing to learn a mapping from
        return Calibrator("none"), scores
    candidates = list(FITTERS) if method == "auto" else [method]
    half = len(y) // 2
    folds = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    for name in candidates:
        losses = []
        for fit_part, eval_part in folds:
            if y[fit_part].min() == y[fit_part].max() or not len(y[eval_part]):
                continue
            cal = FITTERS[name](raw[fit_part], y[fit_part])
            losses.append(logloss(y[eval_part], cal(raw[eval_part])))
        scores[name] = float(np.mean(losses)) if losses else np.inf
    best = min(candidates, key=lambda n: scores[n])
    return FITTERS[best](raw, y), {k: round(v, 6) for k, v in scores.items()}
