"""The ``learned`` blender: a listwise linear stack whose weights depend on the scenario and
on how active the user is.

Inputs per candidate (``design``):

* every ``scorer.task`` the blender was fit with: a z-score over the request's candidates, or,
  for a calibrated probability (``PROBABILITY_TASKS``), its logarithm as it is (a probability
  means the same in every request, and its log times a bid's log is the log of an expected
  value); NaN ("no opinion") becomes 0 with a missing indicator of 1;
* light context: the item's popularity (log of its events) and age (days since its first
  event; an item never seen is as new as the data), both z-scored over the request's
  candidates, so that neither depends on when the request is made; and, where the scenario's
  objective has a value (``ad_profile:bid``), the log of that value.

A candidate's score is ``x . (g + s[scenario] + a[activity bucket])``: shared weights ``g``,
plus a deviation per scenario and one per user-activity bucket (``hybridrec.objectives``),
so that text can count more for cold users and collaborative filtering for heavy ones. The
weights minimise, over the blend slice's requests, the cross entropy between each request's
softmax over its candidates and its objective gains (ListNet, top one), with ridge
penalties: the deviations shrink to zero, and the shared weights to *equal weights* (1 on
every score and on the log value, 0 elsewhere: the ``weighted`` blender's ranking, or
p x bid for an ad slot). A scenario with few requests therefore gets nearly the shared
weights, and without examples the blender ranks as equal weights do. L-BFGS on the exact
gradient; NumPy and SciPy only. Then (``refine``), for each scenario with at least
``REFINE_MIN_REQUESTS`` blend-slice requests, coordinate ascent moves each score's weight
where it raises the slice's NDCG@k with the objective's gains: the softmax loss ranks the
whole list, the top is what counts (on MovieLens it lifts the blend from below ALS alone to
above it).

Checked (``check``): for each scenario with at least ``CHECK_MIN_REQUESTS`` blend-slice
requests, the weights are first fit without a seeded quarter of its requests and compared on
that quarter, by NDCG@k with the objective's gains, with equal weights and with each score
input alone. When the best of those ranks the held-out requests better, by a paired gain
above zero at one-sided 95 % (``CHECK_Z`` standard errors), the scenario keeps it
(``fixed``): the blend never knowingly ranks below its best part, and a difference within the
noise of a few hundred requests does not throw the fit away. Otherwise the weights are fit
again on every request.

The item context is the data the scorers were last fit on: training calls ``observe`` with
it after every refit, so evaluation and serving see the items' counts and ages as the scorers
do, not as of the blend slice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import (
    PROBABILITY_TASKS,
    Blender,
    BlendExamples,
    ScoreBatch,
    TrainingData,
    scorer_output,
)
from hybridrec.history import seen_mask
from hybridrec.hookspecs import hookimpl
from hybridrec.ids import IdIndex
from hybridrec.objectives import BUCKETS, activity_bucket, value_column
from hybridrec.ranking import group_standardise, nan_to_zero

if TYPE_CHECKING:
    import pandas as pd

POPULARITY, AGE, VALUE = "item popularity", "item age", "objective value"
CONTEXT = (POPULARITY, AGE, VALUE)
_FLOOR = 1e-6
#: A scenario's blend-slice requests below which its weights are not tuned on NDCG.
REFINE_MIN_REQUESTS = 100
#: A scenario's blend-slice requests from which ``CHECK_SHARE`` of them are held out to check
#: the fit against equal weights and each input alone.
CHECK_MIN_REQUESTS = 100
CHECK_SHARE = 0.25
#: An alternative replaces the fit only when its paired gain over it on the held-out
#: requests is above zero by this many standard errors (one-sided 95 %).
CHECK_Z = 1.645
EQUAL = "equal weights"


class LearnedBlender(Blender):
    name = "learned"
    learns: ClassVar[bool] = True

    def __init__(self, l2_shared: float = 2.0, l2_scenario: float = 20.0, k: int = 10,
                 refine: bool = True, check: bool = True, max_requests: int = 20000,
                 max_iter: int = 300, seed: int = 0) -> None:
        for label, value in (("l2_shared", l2_shared), ("l2_scenario", l2_scenario)):
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{label} must be a number >= 0, got {value!r}")
        for label, value in (("max_requests", max_requests), ("max_iter", max_iter)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        super().__init__(l2_shared=l2_shared, l2_scenario=l2_scenario, k=k,
                         refine=bool(refine), check=bool(check), max_requests=max_requests,
                         max_iter=max_iter, seed=seed)
        self.keys: list[str] = []
        self.scenarios: list[str] = []
        self.shared = np.zeros(0)
        self.per_scenario = np.zeros((0, 0))
        self.per_bucket = np.zeros((len(BUCKETS), 0))
        #: Per scenario whose check chose an alternative, its weights for every bucket.
        self.fixed: dict[str, np.ndarray] = {}
        #: Scenarios whose objective has a value: their requests weigh by the value at stake.
        self.pooled: set[str] = set()
        self.items: dict[str, pd.DataFrame] = {}
        self._stats: dict[str, tuple[Any, np.ndarray, np.ndarray, int]] = {}
        self.report: dict[str, Any] = {}

    # Inputs -----------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The design's columns: per key its value and missing indicator, then context."""
        return [c for k in self.keys for c in (k, f"{k} missing")] + list(CONTEXT)

    def prior(self) -> np.ndarray:
        """Equal weights: 1 on every score and on the log of the objective value (so that a
        probability times a value, an expected value, is where an ad slot starts), 0 on
        indicators and the rest of the context."""
        scores = [1.0 if i % 2 == 0 else 0.0 for i in range(2 * len(self.keys))]
        return np.array(scores + [1.0 if c == VALUE else 0.0 for c in CONTEXT])

    def design(self, scores: Mapping[str, Mapping[str, np.ndarray]],
               batch: ScoreBatch) -> np.ndarray:
        """The inputs of every row of ``batch``, one column per ``columns`` entry."""
        n, group, groups = len(batch), batch.request, batch.n_requests
        x = np.zeros((n, len(self.columns)), order="F")  # filled and read by column
        for j, key in enumerate(self.keys):
            task = key.partition(".")[2]
            raw = scorer_output(scores, key)
            if raw is None:
                x[:, 2 * j + 1] = 1.0
                continue
            raw = np.asarray(raw, dtype=float)
            if task in PROBABILITY_TASKS:
                value = np.log(np.clip(raw, _FLOOR, 1.0))
            else:
                value = group_standardise(raw, group, groups)
            missing = ~np.isfinite(value)
            x[:, 2 * j] = np.where(missing, 0.0, value)
            x[:, 2 * j + 1] = missing
        base = 2 * len(self.keys)
        count, first = self._item_stats(batch)
        x[:, base] = nan_to_zero(group_standardise(np.log1p(count), group, groups))
        # Age standardised per request does not depend on when the request is made: it is
        # minus the standardised first-event time (in days), computed without the request time.
        x[:, base + 1] = -nan_to_zero(group_standardise(first / 86_400e6, group, groups))
        column = value_column(batch.scenario)
        if column is not None and column in batch.item_features:
            value = np.asarray(batch.item_features[column], dtype=float)
            x[:, base + 2] = np.log(np.clip(np.nan_to_num(value, nan=_FLOOR), _FLOOR, None))
        return x

    def _item_stats(self, batch: ScoreBatch) -> tuple[np.ndarray, np.ndarray]:
        """Each row's item event count and first event time (int64 microseconds; for an
        item never seen, the end of the data the blender was fit on)."""
        stats = self._stats.get(batch.scenario.name)
        if stats is None:  # built once per scenario: pandas costs ~0.2 ms a request
            table = self.items.get(batch.scenario.name)
            if table is None or table.empty:
                return np.zeros(len(batch)), np.zeros(len(batch), dtype=np.int64)
            stats = self._stats[batch.scenario.name] = (
                IdIndex(table.index.astype(str).to_numpy()), table["count"].to_numpy(float),
                table["first"].to_numpy(np.int64), int(table["last"].max()))
        index, counts, firsts, last = stats
        at = batch.positions(index)
        known = at >= 0
        count = np.where(known, counts[np.maximum(at, 0)], 0.0)
        first = np.where(known, firsts[np.maximum(at, 0)], last)
        return count, first

    def weights(self, scenario: str, bucket: int) -> np.ndarray:
        """The weight of each ``columns`` entry for a scenario and activity bucket."""
        if scenario in self.fixed:
            return self.fixed[scenario].copy()
        w = self.shared.copy()
        if scenario in self.scenarios:
            w += self.per_scenario[self.scenarios.index(scenario)]
        return w + self.per_bucket[bucket]

    def _row_weights(self, batch: ScoreBatch) -> np.ndarray:
        """Each row's weights (one row, for every row, when the batch has one bucket)."""
        bucket = activity_bucket(_history(batch).lengths)
        if len(bucket) and (bucket == bucket[0]).all():
            return self.weights(batch.scenario.name, int(bucket[0]))[None, :]
        table = np.stack([self.weights(batch.scenario.name, b) for b in range(len(BUCKETS))])
        return table[bucket[batch.request]]

    # Fitting ----------------------------------------------------------------------------
    def fit(self, data: TrainingData, examples: BlendExamples | None = None) -> None:
        self.observe(data)
        self.fixed = {}
        examples = examples or BlendExamples()
        keys = {f"{s}.{t}" for parts in examples.scenarios.values() for part in parts
                for s, tasks in part.scores.items() for t in tasks}
        self.keys = sorted(keys)
        self.scenarios = sorted(examples.scenarios)
        self._reset()
        stacked = self._stack(examples)
        if stacked is None:
            self.report = {"requests": 0, "note": "no blend examples: equal weights"}
            return
        fixed = self._check(stacked) if self.config["check"] else {}
        self._reset()
        self._fit_weights(stacked)
        self.fixed = fixed

    def observe(self, data: TrainingData) -> None:
        """Item counts and first-event times from ``data``, the events the scorers were fit
        on; the weights stay."""
        self.items, self._stats = _item_table(data), {}

    def _reset(self) -> None:
        d = len(self.columns)
        self.shared = self.prior()
        self.per_scenario = np.zeros((len(self.scenarios), d))
        self.per_bucket = np.zeros((len(BUCKETS), d))

    def _fit_weights(self, stacked: tuple[np.ndarray, ...]) -> None:
        self._solve(*stacked)
        if self.config["refine"]:
            self._refine(*stacked)

    def _check(self, stacked: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        """Fit without a held-out share of each large enough scenario's requests, then rank
        those with the fit, with equal weights and with each score input alone; returns the
        weights of every scenario where an alternative ranked them better."""
        x, t, scen, bucket, starts = stacked
        rng = np.random.default_rng(self.config["seed"] + 1)
        held = np.zeros(len(starts), dtype=bool)
        for s in range(len(self.scenarios)):
            requests = np.flatnonzero(scen[starts] == s)
            if len(requests) >= CHECK_MIN_REQUESTS:
                n = int(round(len(requests) * CHECK_SHARE))
                held[rng.choice(requests, n, replace=False)] = True
        if not held.any():
            return {}
        self._fit_weights(_requests(stacked, ~held))
        checks: dict[str, dict[str, float]] = {}
        fixed: dict[str, np.ndarray] = {}
        for s, name in enumerate(self.scenarios):
            mine = held & (scen[starts] == s)
            if not mine.any():
                continue
            hx, ht, _, hb, hs = _requests(stacked, mine)
            ndcg = _Ndcg(ht, np.r_[hs, len(hx)], self.config["k"], name in self.pooled)
            table = np.stack([self.weights(name, b) for b in range(len(BUCKETS))])
            options = {"learned": table[hb], **self._alternatives(hx)}
            each = {k: ndcg.per_request(np.einsum("ij,ij->i", hx, np.broadcast_to(w, hx.shape)))
                    for k, w in options.items()}
            checks[name] = {k: round(float(v.mean()), 5) for k, v in each.items()}
            best = max((k for k in each if k != "learned"), key=lambda k: checks[name][k])
            better = _clearly_above(each[best], each["learned"])
            checks[name]["chosen"] = best if better else "learned"  # type: ignore[assignment]
            if better:
                fixed[name] = options[best]
        self.report["check"] = checks
        return fixed

    def _alternatives(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Equal weights, and each score input the rows hold (not all missing) alone."""
        out = {EQUAL: self.prior()}
        for j, key in enumerate(self.keys):
            if not x[:, 2 * j + 1].all():
                alone = np.zeros(len(self.columns))
                alone[2 * j] = 1.0
                out[key] = alone
        return out

    def _stack(self, examples: BlendExamples) -> tuple[np.ndarray, ...] | None:
        """Design rows, targets, scenario and bucket per row, and request starts: only the
        requests with a positive gain, at most ``max_requests`` per scenario. A request's
        targets sum to 1; in a scenario whose objective has a value (``pooled``), to its
        gain over the scenario's mean, so that a request weighs by the value at stake (a
        click on a high bid more than one on a low bid), as the pooled metric weighs it."""
        rng = np.random.default_rng(self.config["seed"])
        xs, ts, ss, bs, sizes = [], [], [], [], []
        self.report = {"requests": {}}
        self.pooled = {name for name in self.scenarios if any(
            part.batch.scenario.objective_value for part in examples.scenarios[name])}
        for s, name in enumerate(self.scenarios):
            labels, per_request, mean_of = [], [], []
            for part in examples.scenarios[name]:
                batch = part.batch
                gain = np.bincount(batch.request, weights=np.maximum(part.labels, 0.0),
                                   minlength=batch.n_requests)
                keep = np.flatnonzero((gain > 0) & (batch.candidates.lengths > 1))
                if not len(keep):
                    continue
                rows = np.isin(batch.request, keep)
                xs.append(self.design(part.scores, batch)[rows])
                labels.append(np.maximum(part.labels, 0.0)[rows])
                per_request.append(gain[batch.request[rows]])
                mean_of.append(gain[keep])
                ss.append(np.full(int(rows.sum()), s))
                bs.append(activity_bucket(_history(batch).lengths)[batch.request[rows]])
                sizes.append(batch.candidates.lengths[keep])
            self.report["requests"][name] = int(sum(len(g) for g in mean_of))
            if labels:
                mean = float(np.concatenate(mean_of).mean())
                ts += [y / mean if name in self.pooled else y / g
                       for y, g in zip(labels, per_request, strict=True)]
        if not xs:
            return None
        x, t = np.concatenate(xs), np.concatenate(ts)
        scen, bucket, size = np.concatenate(ss), np.concatenate(bs), np.concatenate(sizes)
        starts = np.r_[0, np.cumsum(size)[:-1]]
        limit = self.config["max_requests"] * max(len(self.scenarios), 1)
        if len(size) > limit:  # a seeded sample of whole requests
            pick = np.sort(rng.choice(len(size), limit, replace=False))
            rows = np.concatenate([np.arange(starts[r], starts[r] + size[r]) for r in pick])
            x, t, scen, bucket, size = x[rows], t[rows], scen[rows], bucket[rows], size[pick]
            starts = np.r_[0, np.cumsum(size)[:-1]]
        return x, t, scen, bucket, starts

    def _solve(self, x: np.ndarray, t: np.ndarray, scen: np.ndarray, bucket: np.ndarray,
               starts: np.ndarray) -> None:
        from scipy.optimize import minimize

        n_req, d = len(starts), x.shape[1]
        n_s, n_b = len(self.scenarios), len(BUCKETS)
        prior = self.prior()
        l2_g, l2_s = float(self.config["l2_shared"]), float(self.config["l2_scenario"])
        scen_rows = [np.flatnonzero(scen == s) for s in range(n_s)]
        # each request's targets sum to its weight (1, or its share of the value at stake)
        weight = np.repeat(np.add.reduceat(t, starts), np.diff(np.r_[starts, len(t)]))
        bucket_rows = [np.flatnonzero(bucket == b) for b in range(n_b)]

        def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            g = theta[:d]
            s = theta[d:d + n_s * d].reshape(n_s, d)
            b = theta[d + n_s * d:].reshape(n_b, d)
            return g, s, b

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            g, s, b = unpack(theta)
            z = x @ g + np.einsum("ij,ij->i", x, s[scen]) + np.einsum("ij,ij->i", x, b[bucket])
            top = np.maximum.reduceat(z, starts)
            e = np.exp(z - np.repeat(top, np.diff(np.r_[starts, len(z)])))
            total = np.add.reduceat(e, starts)
            sizes = np.diff(np.r_[starts, len(z)])
            log_norm = np.log(total) + top
            ce = -(t * (z - np.repeat(log_norm, sizes))).sum()
            r = weight * e / np.repeat(total, sizes) - t
            gg = x.T @ r
            gs = np.stack([x[rows].T @ r[rows] for rows in scen_rows]) if n_s else s
            gb = np.stack([x[rows].T @ r[rows] if len(rows) else np.zeros(d)
                           for rows in bucket_rows])
            value = ce + 0.5 * l2_g * ((g - prior) ** 2).sum() \
                + 0.5 * l2_s * ((s ** 2).sum() + (b ** 2).sum())
            grad = np.concatenate([gg + l2_g * (g - prior), (gs + l2_s * s).ravel(),
                                   (gb + l2_s * b).ravel()])
            return value / n_req, grad / n_req

        theta0 = np.concatenate([prior, np.zeros(n_s * d), np.zeros(n_b * d)])
        start_loss = loss(theta0)[0]
        result = minimize(loss, theta0, jac=True, method="L-BFGS-B",
                          options={"maxiter": self.config["max_iter"]})
        self.shared, self.per_scenario, self.per_bucket = unpack(result.x)
        self.report.update({"rows": int(len(x)), "iterations": int(result.nit),
                            "loss_equal_weights": round(float(start_loss), 5),
                            "loss": round(float(result.fun), 5)})

    def _refine(self, x: np.ndarray, t: np.ndarray, scen: np.ndarray, bucket: np.ndarray,
                starts: np.ndarray) -> None:
        """Per scenario with enough requests, coordinate ascent on the blend slice's NDCG@k
        (with the objective's gains) over the weight of each score input: the softmax loss
        above ranks the whole candidate list, while what is measured, and served, is its
        top."""
        k = self.config["k"]
        offsets = np.r_[starts, len(x)]
        table = np.stack([self.shared + self.per_scenario[s] + self.per_bucket[b]
                          for s in range(len(self.scenarios)) for b in range(len(BUCKETS))])
        z = np.einsum("ij,ij->i", x, table[scen * len(BUCKETS) + bucket])
        self.report["ndcg_blend_slice"] = {}
        for s, name in enumerate(self.scenarios):
            requests = np.flatnonzero(scen[starts] == s)
            if len(requests) < REFINE_MIN_REQUESTS:  # too few to tune on: keep the shrunk fit
                continue
            lo, hi = offsets[requests[0]], offsets[requests[-1] + 1]
            part = _Ndcg(t[lo:hi], offsets[requests[0]:requests[-1] + 2] - lo, k,
                         name in self.pooled)
            base, xs = z[lo:hi], x[lo:hi]
            best = before = part(base)
            step = max(float(np.abs(self.shared[0:2 * len(self.keys):2]).mean()), 0.1)
            for _ in range(3):
                moved = False
                for j in range(0, 2 * len(self.keys), 2):
                    tries = [(part(base + delta * step * xs[:, j]), delta)
                             for delta in (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0)]
                    score, delta = max(tries)
                    if score > best + 1e-4:
                        best, moved = score, True
                        base = base + delta * step * xs[:, j]
                        self.per_scenario[s, j] += delta * step
                if not moved:
                    break
            self.report["ndcg_blend_slice"][name] = {"softmax": round(before, 5),
                                                     "refined": round(best, 5)}

    # Blending ---------------------------------------------------------------------------
    def blend(self, scores: Mapping[str, Mapping[str, np.ndarray]],
              batch: ScoreBatch) -> np.ndarray:
        return sum(self.contributions(scores, batch).values(), np.zeros(len(batch)))

    def contributions(self, scores: Mapping[str, Mapping[str, np.ndarray]],
                      batch: ScoreBatch) -> dict[str, np.ndarray]:
        """Per input the request has, and per context column, its term of the blend. An
        input absent from the whole batch (a scorer another scenario has) is left out: its
        missing indicator is the same on every row, so its term moves no item."""
        x, w = self.design(scores, batch), self._row_weights(batch)
        out = {key: x[:, 2 * j] * w[:, 2 * j] + x[:, 2 * j + 1] * w[:, 2 * j + 1]
               for j, key in enumerate(self.keys) if scorer_output(scores, key) is not None}
        base = 2 * len(self.keys)
        for i, name in enumerate(CONTEXT):
            if name != VALUE or value_column(batch.scenario) is not None:
                out[name] = x[:, base + i] * w[:, base + i]
        return out

    def describe(self) -> dict[str, Any]:
        return {**self.config, "inputs": self.keys, "fit": self.report}

    # Persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        state = {"config": self.config, "keys": self.keys, "scenarios": self.scenarios,
                 "report": self.report,
                 "fixed": {name: w.tolist() for name, w in self.fixed.items()}}
        (path / "learned.json").write_text(json.dumps(state))
        np.savez(path / "weights.npz", shared=self.shared, per_scenario=self.per_scenario,
                 per_bucket=self.per_bucket)
        for name, table in self.items.items():
            table.reset_index().to_parquet(path / f"items-{name}.parquet", index=False)

    @classmethod
    def load(cls, path: Path) -> Self:
        import pandas as pd

        state = json.loads((path / "learned.json").read_text())
        blender = cls(**state["config"])
        blender.keys, blender.scenarios = state["keys"], state["scenarios"]
        blender.report = state["report"]
        blender.fixed = {name: np.asarray(w, dtype=float)
                         for name, w in state.get("fixed", {}).items()}
        with np.load(path / "weights.npz") as w:
            blender.shared = w["shared"]
            blender.per_scenario = w["per_scenario"].reshape(len(blender.scenarios),
                                                             len(blender.columns))
            blender.per_bucket = w["per_bucket"]
        for file in sorted(path.glob("items-*.parquet")):
            table = pd.read_parquet(file)
            blender.items[file.stem.removeprefix("items-")] = table.set_index(C.ITEM_ID)
        return blender


class _Ndcg:
    """NDCG@k of scores over fixed requests (``offsets``) with graded gains ``t``: the mean
    over requests, or (``pooled``) the sum of their DCG over the sum of their ideal DCG, as
    evaluation measures a scenario whose objective has a value."""

    def __init__(self, t: np.ndarray, offsets: np.ndarray, k: int, pooled: bool = False
                 ) -> None:
        from hybridrec.ranking import top_k_groups

        self.t, self.offsets, self.k, self.pooled = t, offsets, k, pooled
        self.discounts = 1.0 / np.log2(np.arange(2, k + 2))
        self.ideal = self._dcg(top_k_groups(t, offsets, k))

    def _dcg(self, top: Any) -> np.ndarray:
        rank = np.arange(len(top.values)) - top.offsets[top.row_index()]
        return np.bincount(top.row_index(), weights=self.t[top.values] * self.discounts[rank],
                           minlength=len(self.offsets) - 1)

    def per_request(self, scores: np.ndarray) -> np.ndarray:
        """Each request's share of the figure (requests without gain left out): its NDCG,
        or (``pooled``) its DCG over the mean ideal DCG; their mean is the figure."""
        from hybridrec.ranking import top_k_groups

        dcg = self._dcg(top_k_groups(scores, self.offsets, self.k))
        ok = self.ideal > 0
        if not ok.any():
            return np.zeros(0)
        return dcg[ok] / (self.ideal[ok].mean() if self.pooled else self.ideal[ok])

    def __call__(self, scores: np.ndarray) -> float:
        values = self.per_request(scores)
        return float(values.mean()) if len(values) else 0.0


def _clearly_above(a: np.ndarray, b: np.ndarray, z: float = CHECK_Z) -> bool:
    """Whether the mean of the paired differences ``a - b`` is above zero by more than ``z``
    standard errors (one-sided)."""
    d = a - b
    if len(d) < 2:
        return False
    error = d.std(ddof=1) / np.sqrt(len(d))
    return bool(d.mean() > z * error) if error > 0 else bool(d.mean() > 0)


def _requests(stacked: tuple[np.ndarray, ...], keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """The stacked rows of the requests where ``keep`` (one flag per request) is set."""
    x, t, scen, bucket, starts = stacked
    sizes = np.diff(np.r_[starts, len(x)])
    rows = np.repeat(keep, sizes)
    kept = sizes[keep]
    return x[rows], t[rows], scen[rows], bucket[rows], np.r_[0, np.cumsum(kept)[:-1]]


def _history(batch: ScoreBatch) -> Any:
    assert batch.history is not None  # set by ScoreBatch
    return batch.history


def _item_table(data: TrainingData) -> dict[str, pd.DataFrame]:
    """Per scenario, each item's count of events the scenario weighs above zero (for an ad,
    its clicks, not the impressions a logging policy chose to show) and its first event time
    of any kind (microseconds)."""
    import pandas as pd

    out: dict[str, pd.DataFrame] = {}
    events = data.events
    if events.empty:
        return out
    stamp = pd.to_datetime(events[C.EVENT_TIMESTAMP], utc=True).dt.tz_localize(None)
    frame = pd.DataFrame({C.SCENARIO: events[C.SCENARIO].astype(str),
                          C.ITEM_ID: events[C.ITEM_ID].astype(str),
                          C.EVENT_TYPE: events[C.EVENT_TYPE].astype(str),
                          "t": stamp.to_numpy("datetime64[us]").astype(np.int64)})
    for name, part in frame.groupby(C.SCENARIO, sort=True):
        scenario = data.scenarios.get(str(name))
        counted = (seen_mask(part, scenario).to_numpy(float) if scenario is not None
                   else np.ones(len(part)))
        table = part.assign(counted=counted).groupby(C.ITEM_ID).agg(
            count=("counted", "sum"), first=("t", "min"), last=("t", "max"))
        out[str(name)] = table.astype({"count": float, "first": np.int64, "last": np.int64})
    return out


@hookimpl
def register_blenders(register):
    register(LearnedBlender)
