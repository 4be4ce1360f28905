"""hybridrec-ctr: discrimination and calibration of click probabilities, and speed.

Protocol: each data set's impressions in time order; the latest 20 % are the test slice.
Every model learns from the earlier 80 % only (the ctr scorer cuts its own validation and
calibration slices from the end of it). Features are joined point-in-time by Feast for every
impression, training and test alike, exactly as ``hybridrec train`` joins them.

Models, side by side: the base rate (the training click rate for everyone); logistic
regression (scikit-learn) on the same inputs, numeric ones standardised with a missing
indicator, categorical ones one-hot; the ctr scorer's trees without calibration; the ctr
scorer as shipped (calibrated). Metrics: AUC, log loss, expected calibration error (ECE, 10
equal-width bins) and, on synthetic data where every impression's true click probability is
known, the mean absolute error to it. Bootstrap 95 % intervals resample test impressions
(1000 draws). Reliability plots are written as PNG.

Data: the synthetic ads scenario (a larger world than the demo's, so the test slice holds
enough clicks), and the Open Bandit Dataset sample's ``random``-policy logs per campaign.

Speed: training time, and model time for 500 candidates (one ``predict`` of the trees and
the calibration on one core; median of 200), plus the scorer's whole ``score`` call.

    .venv/bin/python benchmarks/ctr.py [--obd PATH] [--plots DIR] [--events N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("FEAST_USAGE", "False")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hybridrec_ctr import CtrScorer  # noqa: E402
from hybridrec_ctr import features as F  # noqa: E402
from hybridrec_ctr.calibration import sigmoid  # noqa: E402
from hybridrec_ctr.scorer import raw_columns  # noqa: E402

from hybridrec import columns as C  # noqa: E402
from hybridrec import metrics as M  # noqa: E402
from hybridrec.builtin.scenarios import ADS, OBD_MEN, OBD_WOMEN  # noqa: E402
from hybridrec.contracts import Scenario, ScoreBatch, TrainingData  # noqa: E402
from hybridrec.data import obd  # noqa: E402
from hybridrec.data.synthetic import SyntheticConfig, generate  # noqa: E402
from hybridrec.data.tables import Dataset, write_dataset  # noqa: E402
from hybridrec.features import (  # noqa: E402
    EPOCH,
    applied_views,
    feast_definitions,
    join_events,
    open_store,
    resolve_features,
)
from hybridrec.impressions import LABEL, labelled_impressions  # noqa: E402
from hybridrec.testing import STORE_YAML  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TEST_FRACTION = 0.2
DRAWS = 1000


def joined_events(data: Dataset, scenario: Scenario, workdir: Path) -> pd.DataFrame:
    """The scenario's events with the ctr scorer's features joined point-in-time by Feast
    (a real repository: written, applied, materialised)."""
    repo = Path(tempfile.mkdtemp(prefix="bench-ctr-", dir=workdir))
    (repo / "feature_store.yaml").write_text(STORE_YAML)
    write_dataset(data, repo / "data")
    store = open_store(repo)
    store.apply(list(feast_definitions(repo).values()))
    store.materialize(start_date=EPOCH, end_date=datetime.now(UTC))
    features = resolve_features(applied_views(store), scenario, {"ctr": F.FEATURE_REFS})
    events = data.events[data.events[C.SCENARIO] == scenario.name]
    events = events.assign(**{C.EVENT_TIMESTAMP: pd.to_datetime(events[C.EVENT_TIMESTAMP],
                                                                utc=True)})
    return join_events(store, events, scenario, features)


def split(events: pd.DataFrame, scenario: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events before the cutoff (training) and the labelled test impressions after it; the
    cutoff leaves the latest 20 % of impressions to the test."""
    shown = labelled_impressions(events, scenario)
    cutoff = shown[C.EVENT_TIMESTAMP].iloc[int(len(shown) * (1 - TEST_FRACTION))]
    return (events[events[C.EVENT_TIMESTAMP] < cutoff],
            shown[shown[C.EVENT_TIMESTAMP] >= cutoff].reset_index(drop=True))


def logistic(train: pd.DataFrame, test: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    """Logistic regression on the same inputs, one-hot categoricals."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def frame(rows: pd.DataFrame, vocab: F.Vocabulary) -> pd.DataFrame:
        x = design(rows, vocab, base)
        out = pd.DataFrame(x, columns=list(F.NAMES))
        for name in F.CATEGORICAL:
            out[name] = out[name].map(lambda v: "missing" if v != v else str(int(v)))
        return out

    rows = labelled_impressions(train, scenario)
    base = float(rows[LABEL].mean())
    vocab = F.Vocabulary.fit(raw_columns(rows), rows[C.ITEM_ID].to_numpy(object))
    numeric = [n for n in F.NAMES if n not in F.CATEGORICAL]
    model = make_pipeline(
        ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True,
                                                keep_empty_features=True),
                                  StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(F.CATEGORICAL))]),
        LogisticRegression(max_iter=2000, C=1.0))
    model.fit(frame(rows, vocab), rows[LABEL].to_numpy())
    return model.predict_proba(frame(test, vocab))[:, 1]


def design(rows: pd.DataFrame, vocab: F.Vocabulary, base_rate: float) -> np.ndarray:
    return F.design(raw_columns(rows), rows[C.ITEM_ID].to_numpy(object),
                    F.utc_times(rows[C.EVENT_TIMESTAMP].to_numpy()),
                    rows[C.POSITION].to_numpy() if C.POSITION in rows
                    else np.full(len(rows), np.nan),
                    np.arange(len(rows)), vocab, base_rate)


def metrics(y: np.ndarray, p: np.ndarray, truth: np.ndarray | None) -> dict[str, float]:
    out = {"auc": M.auc(y, p), "logloss": M.logloss(y, p), "ece": M.ece(y, p)}
    if truth is not None:
        out["mae_true_p"] = float(np.mean(np.abs(p - truth)))
    return out


def intervals(y: np.ndarray, p: np.ndarray, truth: np.ndarray | None,
              rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    draws = []
    for _ in range(DRAWS):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        draws.append(metrics(y[i], p[i], None if truth is None else truth[i]))
    return {k: (float(np.percentile([d[k] for d in draws], 2.5)),
                float(np.percentile([d[k] for d in draws], 97.5))) for k in draws[0]}


def run(label: str, data: Dataset, scenario: Scenario, workdir: Path, plots: Path,
        truth: pd.DataFrame | None = None, speed: bool = False) -> None:
    events = joined_events(data, scenario, workdir)
    train, test = split(events, scenario)
    td = TrainingData(events=train, items=data.items, users=data.users,
                      scenarios={scenario.name: scenario}, ads=data.ads)
    start = time.perf_counter()
    scorer = CtrScorer()
    scorer.fit(td)
    fit_seconds = time.perf_counter() - start
    model = scorer.models[scenario.name]
    x = design(test, model.vocab, model.base_rate)
    y = test[LABEL].to_numpy(float)
    true_p = None
    if truth is not None:
        keyed = truth.assign(**{C.EVENT_TIMESTAMP: pd.to_datetime(truth[C.EVENT_TIMESTAMP],
                                                                  utc=True)})
        true_p = test[[C.USER_ID, C.ITEM_ID, C.EVENT_TIMESTAMP]].merge(
            keyed, on=[C.USER_ID, C.ITEM_ID, C.EVENT_TIMESTAMP], how="left")["p_click"]
        true_p = true_p.to_numpy(float)
        assert not np.isnan(true_p).any(), "every test impression has its true probability"
    predictions = {
        "base rate": np.full(len(y), model.base_rate),
        "logistic regression": logistic(train, test, scenario),
        "LightGBM, uncalibrated": sigmoid(model.booster.predict(x, raw_score=True)),
        "ctr scorer (calibrated)": model.predict(x),
    }
    rng = np.random.default_rng(0)
    print(f"\n{label}: {len(train[train[C.EVENT_TYPE] == 'impression'])} training "
          f"impressions; test slice {len(y)} impressions, {int(y.sum())} clicks "
          f"(rate {y.mean():.4f}); calibration chosen: {model.calibrator.kind}, "
          f"{model.info['best_iteration']} trees")
    cols = ["auc", "logloss", "ece"] + (["mae_true_p"] if true_p is not None else [])
    print(f"{'model':<26}" + "".join(f"{c:>26}" for c in cols))
    for name, p in predictions.items():
        m = metrics(y, p, true_p)
        ci = intervals(y, p, true_p, rng)
        print(f"{name:<26}" + "".join(
            f"{m[c]:>9.4f} [{ci[c][0]:.4f}, {ci[c][1]:.4f}]".rjust(26) for c in cols))
    reliability(predictions, y, plots / f"ctr_reliability_{scenario.name}.png", label)
    print(f"training {fit_seconds:.1f} s")
    if speed:
        timings(scorer, model, x, scenario, data)


def timings(scorer: CtrScorer, model, x: np.ndarray, scenario: Scenario,
            data: Dataset) -> None:
    rng = np.random.default_rng(1)
    rows = x[rng.integers(0, len(x), 500)]
    model.predict(rows)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        model.predict(rows)
        times.append(time.perf_counter() - start)
    ads = data.items.loc[data.items[C.SCENARIO] == scenario.name, C.ITEM_ID].to_numpy(str)
    ids = ads[rng.integers(0, len(ads), 500)]
    n = len(ids)
    raw = {c: np.full(n, None, dtype=object) for c in map(F.column, F.FEATURE_REFS)}
    raw[F.CATEGORY] = np.full(n, "travel", dtype=object)
    batch = ScoreBatch.one(scenario, "u00001", ids,
                           item_features={c: v for c, v in raw.items()
                                          if c not in F.Hi.COLUMNS})
    whole = []
    for _ in range(50):
        start = time.perf_counter()
        scorer.score(batch)
        whole.append(time.perf_counter() - start)
    print(f"model time for 500 candidates: {np.median(times) * 1000:.3f} ms (trees + "
          f"calibration, one predict, one core; median of 200); whole score() call "
          f"including the feature matrix: {np.median(whole) * 1000:.2f} ms")


def reliability(predictions: dict[str, np.ndarray], y: np.ndarray, path: Path,
                title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(float(np.percentile(np.concatenate(list(predictions.values())), 99.5)), 0.02)
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfectly calibrated")
    for name, p in predictions.items():
        if name == "base rate":
            continue
        count, predicted, observed = M.calibration_bins(y, np.clip(p / top, 0, 1), 10)
        ok = count > 0
        ax.plot(predicted[ok] * top, observed[ok], marker="o", label=name)
    ax.set_xlabel("predicted click probability (10 bins up to its 99.5th percentile)")
    ax.set_ylabel("observed click rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"reliability plot: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="hybridrec-ctr benchmarks")
    parser.add_argument("--obd", type=Path, default=ROOT.parent / "shared" / "data" / "obd")
    parser.add_argument("--plots", type=Path, default=ROOT / "benchmarks" / "plots")
    parser.add_argument("--events", type=int, default=250_000,
                        help="events in the synthetic world (a fifth of them ads)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        world = generate(SyntheticConfig(users=3000, items=200, ads=100, events=args.events,
                                         seed=0, end="2026-01-01T00:00:00Z"))
        run("synthetic ads", world, ADS, work, args.plots, truth=world.truth, speed=True)
        if (args.obd / "random").is_dir():
            for campaign, scenario in (("men", OBD_MEN), ("women", OBD_WOMEN)):
                data = obd.load(args.obd, ("random",), (campaign,))
                run(f"Open Bandit Dataset, random policy, campaign {campaign}", data,
                    scenario, work, args.plots)
        else:
            print(f"\nOpen Bandit Dataset not found at {args.obd}: skipped")
    print(f"\ncommand: {Path(sys.executable).name} benchmarks/ctr.py "
          f"{' '.join(sys.argv[1:])}".rstrip())


if __name__ == "__main__":
    main()
