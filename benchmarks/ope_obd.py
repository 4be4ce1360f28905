"""Off-policy evaluation on the Open Bandit Dataset: Thompson sampling's click rate, estimated
from the uniform-random policy's logs and checked against its own logs.

Question, per campaign (men, women): what click rate per impression does the Bernoulli
Thompson sampling policy (``bts``) get? The estimators of ``hybridrec.ope`` (DM, IPS, SNIPS,
DR) answer from the ``random`` policy's log alone; the ``bts`` policy's own log, collected
in the same week in the same A/B test, gives the answer they should find (its observed click
rate). Data: the sample at ``--obd`` (10 000 impressions per policy and campaign).

Evaluation policy. BTS is not contextual: in a slot it shows item a with a probability
π_t(a | position) that depends only on the time t (its posterior, refreshed in batches).
The policy evaluated is its time average over the week, π̄(a | position), estimated as the
share of the bts log's impressions at that position that show item a. (The mean logged
``propensity_score`` per (item, position), normalised per position, is the other choice;
it averages π_t only over the times the item *was* shown, which over-weights the times its
probability was high, E[π²]/E[π] rather than E[π], and normalising does not undo that. The
probability swings a lot here, e.g. 0.01 to 0.73 for the men's favourite item in slot 1.
``--target-policy propensity`` runs with it instead.) The shares are exactly the policy mix
behind the bts log's observed click rate, so the truth and the estimand agree whenever the
click probability of an item in a slot does not change during the week.

Position-wise assumption: each slot is one bandit round; the logging propensity is the
``propensity_score`` of the random log (1 / number of items: uniform per slot), the target
probability π̄(logged item | its position). The sample keeps about one slot per request, so
the bootstrap groups (the request, i.e. the timestamp) are almost single rows.

Reward model for DM and DR: q̂(x, a, position) for every item a of every random-log row,
cross-fitted: the log in time order is cut into ``--folds`` contiguous blocks, and each
block's predictions come from a model fit on the other blocks, so no row's prediction has
seen its own click. Candidates, all cross-fitted the same way: ``overall``, the click rate;
``position``, the click rate per position; ``item-position``, the position's rate times an
item effect shrunk by empirical Bayes (a gamma prior on the items' ratios of observed to
expected clicks, its strength fitted by maximum marginal likelihood); ``logistic``, L2
logistic regression on item, position, the four user features and the user's affinity for
the item (the log's affinity columns; the strength chosen on the last third of the training
blocks); and ``ctr-scorer``, the project's ctr scorer (``hybridrec_ctr.CtrScorer``, LightGBM
and calibration), trained through its own ``fit`` on the project's loader
(``hybridrec.data.obd.load``) with the features a Feast join would give it here (user
segments, item attributes and category) but not its running counts (item popularity, user
history): those are point-in-time Feast views, and counterfactual predictions would need
them for all 340 000 / 460 000 (row, item) pairs. ``--reward-model auto`` (the default) uses
the candidate with the lowest cross-fitted log loss on the random log; the truth plays no
part in the choice. The table of candidates shows each one's DM and DR too, to show how much
the choice matters. With 46 clicks per log no candidate tells items apart (cross-fitted AUCs
from 0.37 to 0.54, log losses within 1 % of the constant's except the ctr scorer's, 17 %
worse on men), so a rate model is chosen and DM comes out at the random log's own click
rate. That is why the ctr scorer is a candidate here and not the model: it is practical to
train, but this sample is far too small for it (its own 70/15/15 time split leaves about 26
clicks to grow trees and about 5 each to stop early and to calibrate).

Intervals (95 %, percentile bootstrap, ``--n-boot`` draws, seeded by ``--seed``): an
estimate's interval resamples the random log's requests with π̄ fixed; the truth's resamples
the bts log's. The relative error |estimate - truth| / truth (and the signed one) resamples
both logs in the same draw, re-estimating π̄ from each bts resample. The rate models are
refitted (cross-fitted again) on every resample of the random log, so DM's and DR's intervals
include the model's own sampling error; the logistic regression and the ctr scorer are too
slow for that and would be held fixed (the output says which). ESS is the effective sample
size of the importance weights π̄ / propensity, (Σw)² / Σw², out of the random log's rows.

Reference: the Open Bandit Pipeline's example (``examples/obd``, ``--counterfactual_policy
bts --behavior_policy random --campaign all`` on the same small sample; BTS simulated from
its production prior, its own regression model for DM and DR): relative errors DM 0.22,
IPW 1.16, DR 0.99, each the mean over its bootstrap runs (95 % intervals about [0.15, 0.29],
[0.96, 1.53] and [0.72, 1.36]); a different campaign (80 items), so a reference point, not a
like-for-like comparison. The aim here: below 0.22 for every estimator on both campaigns.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ope_obd.py [--obd PATH] [--n-boot N]
        [--seed S] [--json FILE] [--folds K] [--reward-model NAME] [--target-policy KIND]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("FEAST_USAGE", "False")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hybridrec import metrics as M  # noqa: E402
from hybridrec import ope  # noqa: E402
from hybridrec.data import obd  # noqa: E402
from hybridrec.data.tables import Dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SLOTS = 3
CAMPAIGNS = ("men", "women")
#: Relative errors of the Open Bandit Pipeline's example on its "all" campaign.
OBP_REFERENCE = {"dm": 0.22, "ips": 1.16, "snips": None, "dr": 0.99}
AIM = 0.22
USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))

Predictor = Callable[[pd.DataFrame], np.ndarray]  # rows -> (rows, items) click probabilities


@dataclass
class Logs:
    """One campaign: both policies' logs (CSV rows in time order) and the project's loading
    of the random log (for the ctr scorer)."""

    campaign: str
    random: pd.DataFrame
    bts: pd.DataFrame
    items: pd.DataFrame  # item_context, by item id
    loaded: Dataset

    @property
    def n_items(self) -> int:
        return len(self.items)


def read(path: Path, campaign: str) -> Logs:
    def csv(policy: str) -> pd.DataFrame:
        frame = pd.read_csv(path / policy / campaign / f"{campaign}.csv", index_col=0)
        if not frame["timestamp"].is_monotonic_increasing:
            raise SystemExit(f"{policy}/{campaign}.csv is not in time order")
        return frame.reset_index(drop=True)

    random, bts = csv("random"), csv("bts")
    items = pd.read_csv(path / "random" / campaign / "item_context.csv", index_col=0)
    items = items.sort_values("item_id").reset_index(drop=True)
    if not (items["item_id"].to_numpy() == np.arange(len(items))).all():
        raise SystemExit(f"{campaign}: item ids are not 0..{len(items) - 1}")
    loaded = obd.load(path, ("random",), (campaign,))
    shown = loaded.events.iloc[:len(random)]  # the loader keeps the file's order
    if not (shown["item_id"].str[1:].astype(int).to_numpy() == random["item_id"]).all():
        raise SystemExit("the loader's impressions are not the CSV rows in order")
    return Logs(campaign, random, bts, items, loaded)


# The evaluation policy ------------------------------------------------------------------------
def target_policy(bts: pd.DataFrame, n_items: int, kind: str,
                  multiplicity: np.ndarray | None = None) -> np.ndarray:
    """π̄(item | position) as an (items, slots) matrix whose columns sum to 1, from the bts
    log's rows (each counted ``multiplicity`` times: a bootstrap resample)."""
    key = bts["item_id"].to_numpy() * SLOTS + bts["position"].to_numpy() - 1
    weight = np.ones(len(bts)) if multiplicity is None else multiplicity
    shown = np.bincount(key, weight, minlength=n_items * SLOTS).reshape(n_items, SLOTS)
    if kind == "frequency":
        mass = shown
    else:  # the mean logged propensity where shown
        total = np.bincount(key, weight * bts["propensity_score"].to_numpy(),
                            minlength=n_items * SLOTS).reshape(n_items, SLOTS)
        mass = np.divide(total, shown, out=np.zeros_like(total), where=shown > 0)
    return mass / mass.sum(axis=0, keepdims=True)


# Reward models --------------------------------------------------------------------------------
#: A reward model's fit: training rows (with their bootstrap multiplicities, or None) ->
#: predictions for the rows it is given, for every item.
Fit = Callable[[pd.DataFrame, Logs, np.ndarray | None], Predictor]
#: Gamma prior strengths tried for the item effects (log-spaced).
PRIOR_STRENGTHS = np.exp(np.linspace(np.log(0.1), np.log(1e5), 121))


def position_rates(train: pd.DataFrame, weight: np.ndarray | None) -> np.ndarray:
    """Click rate per slot, with one pseudo-click at the overall rate."""
    w = np.ones(len(train)) if weight is None else weight
    slot = train["position"].to_numpy() - 1
    clicks = np.bincount(slot, w * train["click"].to_numpy(), minlength=SLOTS)
    shown = np.bincount(slot, w, minlength=SLOTS)
    return (clicks + 1.0) / (shown + shown.sum() / max(clicks.sum(), 1.0))


def fit_overall(train: pd.DataFrame, logs: Logs, weight: np.ndarray | None) -> Predictor:
    rate = float(np.average(train["click"].to_numpy(float), weights=weight))
    return lambda rows: np.full((len(rows), logs.n_items), rate)


def fit_position(train: pd.DataFrame, logs: Logs, weight: np.ndarray | None) -> Predictor:
    rates = position_rates(train, weight)
    return lambda rows: np.repeat(rates[rows["position"].to_numpy() - 1][:, None],
                                  logs.n_items, axis=1)


def fit_item_position(train: pd.DataFrame, logs: Logs, weight: np.ndarray | None
                      ) -> Predictor:
    """Position rate x item effect; the item effect is (clicks + m) / (expected + m), the
    posterior mean of a Gamma(m, m) prior, m maximising the gamma-Poisson likelihood (on a
    log grid from 0.1 to 100 000: the upper end is the position model)."""
    from scipy.special import gammaln

    w = np.ones(len(train)) if weight is None else weight
    rates = position_rates(train, weight)
    item = train["item_id"].to_numpy()
    clicks = np.bincount(item, w * train["click"].to_numpy(), minlength=logs.n_items)
    expected = np.bincount(item, w * rates[train["position"].to_numpy() - 1],
                           minlength=logs.n_items)
    seen = expected > 0
    c, e, m = clicks[seen][None, :], expected[seen][None, :], PRIOR_STRENGTHS[:, None]
    log_likelihood = (gammaln(c + m) - gammaln(m) + m * np.log(m / (m + e))
                      + c * np.log(e / (m + e))).sum(axis=1)
    strength = float(PRIOR_STRENGTHS[np.argmax(log_likelihood)])
    effect = (clicks + strength) / (expected + strength)
    return lambda rows: rates[rows["position"].to_numpy() - 1][:, None] * effect[None, :]


def fit_logistic(train: pd.DataFrame, logs: Logs, weight: np.ndarray | None) -> Predictor:
    """L2 logistic regression on one-hot item, position and user features plus the user's
    affinity for the item; C chosen on the last third of ``train`` (time order). Never
    refitted in the bootstrap, so ``weight`` is always None."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    def columns(rows: pd.DataFrame, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        reps = len(items) // len(rows)
        cat = np.column_stack([np.tile(rows[c].to_numpy(str), reps) for c in USER_FEATURES]
                              + [np.tile(rows["position"].to_numpy(str), reps),
                                 items.astype(str)])
        affinity = affinities(rows)  # (rows, items)
        own = affinity[np.tile(np.arange(len(rows)), reps), items]
        return cat, np.log1p(own)[:, None]

    encoder = OneHotEncoder(handle_unknown="ignore")
    encoder.fit(columns(train, train["item_id"].to_numpy())[0])

    def design(rows: pd.DataFrame, items: np.ndarray) -> sparse.csr_matrix:
        cat, num = columns(rows, items)
        return sparse.hstack([encoder.transform(cat), sparse.csr_matrix(num)]).tocsr()

    x, y = design(train, train["item_id"].to_numpy()), train["click"].to_numpy()
    cut = len(train) * 2 // 3
    losses = {}
    for c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(x[:cut], y[:cut])
        losses[c] = M.logloss(y[cut:], model.predict_proba(x[cut:])[:, 1])
    model = LogisticRegression(C=min(losses, key=losses.__getitem__), max_iter=2000).fit(x, y)

    def predict(rows: pd.DataFrame) -> np.ndarray:
        every = np.repeat(np.arange(logs.n_items), len(rows))  # item-major
        p = model.predict_proba(design(rows, every))[:, 1]
        return p.reshape(logs.n_items, len(rows)).T

    return predict


def affinities(rows: pd.DataFrame) -> np.ndarray:
    """The (rows, items) user-item affinity columns of the log."""
    cols = sorted((c for c in rows.columns if c.startswith("user-item_affinity_")),
                  key=lambda c: int(c.rsplit("_", 1)[1]))
    return rows[cols].to_numpy(float)


def fit_ctr_scorer(train: pd.DataFrame, logs: Logs, weight: np.ndarray | None
                   ) -> Predictor:
    """The project's ctr scorer, fit on the loader's events of the ``train`` rows. Never
    refitted in the bootstrap, so ``weight`` is always None."""
    from hybridrec_ctr import CtrScorer
    from hybridrec_ctr import features as F
    from hybridrec_ctr.scorer import raw_columns

    from hybridrec.builtin.scenarios import OBD_MEN, OBD_WOMEN
    from hybridrec.contracts import TrainingData

    scenario = {"men": OBD_MEN, "women": OBD_WOMEN}[logs.campaign]
    data, n = logs.loaded, len(logs.random)
    clicked = np.flatnonzero(logs.random["click"].to_numpy() == 1)
    row_of_event = np.concatenate([np.arange(n), clicked])  # impressions, then clicks
    assert len(row_of_event) == len(data.events), "one impression per row, one click per click"
    events = data.events[np.isin(row_of_event, train.index.to_numpy())]
    scorer = CtrScorer()
    scorer.fit(TrainingData(events=with_static_features(events, data), items=data.items,
                            users=data.users, scenarios={scenario.name: scenario}))
    model = scorer.models[scenario.name]
    prefix = logs.campaign[0]

    def predict(rows: pd.DataFrame) -> np.ndarray:
        shown = data.events.iloc[rows.index.to_numpy()]
        every = np.repeat(np.arange(logs.n_items), len(rows))  # item-major
        pairs = pd.DataFrame({
            "user_id": np.tile(shown["user_id"].to_numpy(), logs.n_items),
            "item_id": np.array([f"{prefix}{i}" for i in every], dtype=object)})
        pairs = with_static_features(pairs, data)
        x = F.design(raw_columns(pairs), pairs["item_id"].to_numpy(object),
                     F.utc_times(np.tile(shown["event_timestamp"].to_numpy(), logs.n_items)),
                     np.tile(shown["position"].to_numpy(), logs.n_items),
                     np.arange(len(pairs)), model.vocab, model.base_rate)
        return model.predict(x).reshape(logs.n_items, len(rows)).T

    return predict


def with_static_features(frame: pd.DataFrame, data: Dataset) -> pd.DataFrame:
    """``frame`` with the columns a Feast join gives the ctr scorer on this data set that do
    not change over time: the user's segments, the item's attributes and category."""
    from hybridrec_ctr import features as F

    assert data.user_segments is not None and data.item_attributes is not None
    segments = data.user_segments.drop(columns="event_timestamp").rename(
        columns={f"segment_{i}": F.column(r) for i, r in enumerate(F.SEGMENT_REFS)})
    attributes = data.item_attributes.drop(columns="event_timestamp").rename(
        columns={f"attribute_{i}": F.column(r) for i, r in enumerate(F.ATTRIBUTE_REFS)})
    category = data.items[["item_id", "category"]].rename(columns={"category": F.CATEGORY})
    out = frame.reset_index(drop=True)
    for table, key in ((segments, "user_id"), (attributes, "item_id"), (category, "item_id")):
        out = out.merge(table, on=key, how="left", validate="many_to_one")
    return out


@dataclass(frozen=True)
class RewardModel:
    fit: Fit
    #: Whether it takes row weights and is quick enough to be refitted in every bootstrap
    #: draw (if not, the draws hold it fixed).
    refit: bool


REWARD_MODELS = {
    "overall": RewardModel(fit_overall, True),
    "position": RewardModel(fit_position, True),
    "item-position": RewardModel(fit_item_position, True),
    "logistic": RewardModel(fit_logistic, False),
    "ctr-scorer": RewardModel(fit_ctr_scorer, False),
}


def cross_fit(logs: Logs, fit: Fit, folds: int, multiplicity: np.ndarray | None = None
              ) -> np.ndarray:
    """(rows, items) predictions for the random log, each block's from a model fit on the
    other blocks (contiguous in time); ``multiplicity`` weighs the rows (a resample: all
    copies of a row fall in its block, so none of them trains its own prediction)."""
    rows = logs.random
    block = np.arange(len(rows)) * folds // len(rows)
    q = np.empty((len(rows), logs.n_items))
    for k in range(folds):
        held = block == k
        train = ~held if multiplicity is None else ~held & (multiplicity > 0)
        weight = None if multiplicity is None else multiplicity[train].astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            q[held] = fit(rows[train], logs, weight)(rows[held])
    return np.clip(q, 1e-6, 1 - 1e-6)


# Estimation -----------------------------------------------------------------------------------
def feedback(logs: Logs, q: np.ndarray, pi: np.ndarray, groups: np.ndarray
             ) -> ope.LoggedFeedback:
    rows = logs.random
    item, slot = rows["item_id"].to_numpy(), rows["position"].to_numpy() - 1
    at = np.arange(len(rows))
    return ope.LoggedFeedback(
        reward=rows["click"].to_numpy(float), pscore=rows["propensity_score"].to_numpy(),
        target=pi[item, slot], groups=groups, dm_logged=q[at, item],
        dm_target=(q @ pi)[at, slot])


def request_codes(frame: pd.DataFrame) -> np.ndarray:
    """Rows that share a timestamp are slots of one request."""
    return np.unique(frame["timestamp"].to_numpy(str), return_inverse=True)[1]


@dataclass
class Draws:
    """Bootstrap draws. ``estimates``: the random log resampled, π̄ fixed; ``paired``: the
    same random resample with π̄ from a resample of the bts log, whose click rate is
    ``truth``. The reward model is refitted on each random resample if it can be."""

    estimates: dict[str, np.ndarray]
    paired: dict[str, np.ndarray]
    truth: np.ndarray


def bootstrap(logs: Logs, model: RewardModel, q: np.ndarray, pi: np.ndarray,
              args: argparse.Namespace) -> Draws:
    rng = np.random.default_rng([args.seed, 1])
    random_groups, bts_groups = request_codes(logs.random), request_codes(logs.bts)
    n_random, n_bts = random_groups.max() + 1, bts_groups.max() + 1
    clicks = logs.bts["click"].to_numpy(float)
    out = Draws({n: np.empty(args.n_boot) for n in ope.ESTIMATORS},
                {n: np.empty(args.n_boot) for n in ope.ESTIMATORS}, np.empty(args.n_boot))
    for b in range(args.n_boot):
        counts = ope.resample_groups(n_random, rng)[0]
        q_b = cross_fit(logs, model.fit, args.folds, counts[random_groups]) if model.refit \
            else q
        bts_rows = ope.resample_groups(n_bts, rng)[0][bts_groups].astype(float)
        out.truth[b] = bts_rows @ clicks / bts_rows.sum()
        pi_b = target_policy(logs.bts, logs.n_items, args.target_policy, bts_rows)
        for into, policy in ((out.estimates, pi), (out.paired, pi_b)):
            got = ope.values(feedback(logs, q_b, policy, random_groups), group_counts=counts)
            for name, value in got.items():
                into[name][b] = value
    return out


def choose_model(logs: Logs, args: argparse.Namespace, pi: np.ndarray
                 ) -> tuple[str, np.ndarray, list[dict[str, object]]]:
    """Cross-fit every candidate; the one asked for, or the lowest log loss."""
    rows = logs.random
    y, item = rows["click"].to_numpy(float), rows["item_id"].to_numpy()
    groups = request_codes(rows)
    fitted, table = {}, []
    for name, model in REWARD_MODELS.items():
        if args.reward_model not in ("auto", name):
            continue
        start = time.perf_counter()
        q = cross_fit(logs, model.fit, args.folds)
        logged = q[np.arange(len(rows)), item]
        values = ope.values(feedback(logs, q, pi, groups), ("dm", "dr"))
        fitted[name] = q
        table.append({"model": name, "logloss": M.logloss(y, logged),
                      "brier": float(np.mean((y - logged) ** 2)), "auc": M.auc(y, logged),
                      "dm": values["dm"], "dr": values["dr"], "refit": model.refit,
                      "seconds": time.perf_counter() - start})
    best = str(min(table, key=lambda r: float(str(r["logloss"])))["model"])
    return best, fitted[best], table


def run(logs: Logs, args: argparse.Namespace) -> dict[str, object]:
    pi = target_policy(logs.bts, logs.n_items, args.target_policy)
    model, q, models = choose_model(logs, args, pi)
    data = feedback(logs, q, pi, request_codes(logs.random))
    draws = bootstrap(logs, REWARD_MODELS[model], q, pi, args)
    clicks = logs.bts["click"].to_numpy(float)
    truth = float(clicks.mean())
    rows = {}
    for name, value in ope.values(data).items():
        relative = ope.relative_error(draws.paired[name], draws.truth)
        rows[name] = {
            "value": value, "ci": ope.percentile_interval(draws.estimates[name]),
            "se": float(np.std(draws.estimates[name], ddof=1)),
            "relative_error": ope.relative_error(value, truth),
            "relative_error_ci": ope.percentile_interval(relative),
            "signed_relative_error": (value - truth) / truth,
            "signed_relative_error_ci": ope.percentile_interval(
                (draws.paired[name] - draws.truth) / draws.truth),
            "obp_reference": OBP_REFERENCE[name]}
    return {
        "campaign": logs.campaign, "random_rows": len(logs.random),
        "random_clicks": int(logs.random["click"].sum()), "bts_rows": len(logs.bts),
        "bts_clicks": int(clicks.sum()), "random_click_rate": float(logs.random["click"].mean()),
        "truth": {"value": truth, "ci": ope.percentile_interval(draws.truth)},
        "ess": ope.effective_sample_size(data), "max_weight": float(data.weights.max()),
        "reward_model": model, "reward_model_refitted": REWARD_MODELS[model].refit,
        "reward_models": models, "estimators": rows}


# Output ---------------------------------------------------------------------------------------
def ci(value: float, bounds: tuple[float, float], digits: int = 4) -> str:
    lo, hi = bounds
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def show(results: list[dict], args: argparse.Namespace) -> None:
    for r in results:
        print(f"\n{r['campaign']}: random log {r['random_rows']} impressions, "
              f"{r['random_clicks']} clicks (rate {r['random_click_rate']:.4f}); bts log "
              f"{r['bts_rows']} impressions, {r['bts_clicks']} clicks; importance weights: "
              f"ESS {r['ess']:.0f} of {r['random_rows']}, largest {r['max_weight']:.1f}")
        print(f"reward models, cross-fitted ({args.folds} time blocks) on the random log; "
              f"used: {r['reward_model']} ("
              f"{'refitted in' if r['reward_model_refitted'] else 'held fixed across'} the "
              "bootstrap draws)")
        print("| model | log loss | Brier | AUC | DM | DR | can be refitted | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        for m in r["reward_models"]:
            print(f"| {m['model']} | {m['logloss']:.5f} | {m['brier']:.6f} | {m['auc']:.3f} "
                  f"| {m['dm']:.5f} | {m['dr']:.5f} | {'yes' if m['refit'] else 'no'} "
                  f"| {m['seconds']:.1f} |")
    print(f"\nBTS click rate per impression, estimated from the random log (evaluation "
          f"policy: {args.target_policy}; 95 % bootstrap intervals, {args.n_boot} draws):\n")
    print("| campaign | estimator | estimate [95 % CI] | truth: bts click rate [95 % CI] "
          "| relative error [95 % CI] | signed (est - truth) / truth [95 % CI] | ESS "
          "| OBP example, 'all' |")
    print("|---|---|---|---|---|---|---|---|")
    hits = 0
    for r in results:
        t = r["truth"]
        for name, e in r["estimators"].items():
            hits += e["relative_error"] < AIM
            ref = e["obp_reference"]
            print(f"| {r['campaign']} | {name.upper()} | {ci(e['value'], e['ci'])} "
                  f"| {ci(t['value'], t['ci'])} "
                  f"| {ci(e['relative_error'], e['relative_error_ci'], 2)} "
                  f"| {ci(e['signed_relative_error'], e['signed_relative_error_ci'], 2)} "
                  f"| {'-' if name == 'dm' else round(r['ess'])} "
                  f"| {'-' if ref is None else ref} |")
    total = sum(len(r["estimators"]) for r in results)
    print(f"\nrelative error below {AIM}: {hits} of {total} (estimator, campaign) pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--obd", type=Path, default=ROOT.parent / "shared" / "data" / "obd")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitting blocks")
    parser.add_argument("--reward-model", default="auto", choices=["auto", *REWARD_MODELS])
    parser.add_argument("--target-policy", default="frequency",
                        choices=["frequency", "propensity"])
    args = parser.parse_args()
    if not (args.obd / "random").is_dir():
        raise SystemExit(f"Open Bandit Dataset not found at {args.obd}")
    start = time.perf_counter()
    results = [run(read(args.obd, c), args) for c in CAMPAIGNS]
    show(results, args)
    seconds = time.perf_counter() - start
    command = (f"OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ope_obd.py "
               f"{shlex.join(sys.argv[1:])}").rstrip()
    print(f"\n{seconds:.0f} s on {os.cpu_count()} cores; command: {command}")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "seconds": seconds,
                                         "settings": {k: str(v) for k, v in vars(args).items()},
                                         "campaigns": results}, indent=1))


if __name__ == "__main__":
    main()
