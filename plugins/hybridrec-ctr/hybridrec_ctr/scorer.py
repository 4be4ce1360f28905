"""``ctr``: the probability that a user clicks an ad shown in a slot, from LightGBM.

Per scenario that asks for a ``ctr`` objective (``ads``) or is named in config, each
impression (an exposure event: weighed 0, not positive) is one training row, labelled 1 when
the user clicked that item within ``click_window_hours`` after it
(``hybridrec.impressions``). Rows are ordered by time and cut in three: the trees learn
from the earliest part, stop early on the next (a time-later validation slice), and a
calibrator (Platt or isotonic, whichever has the lower log loss there) is fit on the latest,
which the trees never saw. Clicks are rare; the rows are not reweighted, since weights that
balance the classes move every probability away from the click rate it estimates. With
``negative_rate`` below 1 a share of the negatives is dropped to train faster, and the raw
score is shifted back by ``log(negative_rate)``, the exact correction, before calibrating.

Scoring builds one feature matrix for all candidates of a batch and makes one ``predict``
call. ``explain`` returns each row's top feature contributions (LightGBM's ``pred_contrib``,
in log-odds: they sum with the base value to the raw score).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import Explainer, Scenario, ScoreBatch, Scorer, TrainingData
from hybridrec.metrics import auc, ece, logloss
from hybridrec_ctr import features as F
from hybridrec_ctr.calibration import Calibrator, choose, sigmoid

if TYPE_CHECKING:
    import pandas as pd

TASK = "ctr"


@dataclass
class ScenarioModel:
    booster: Any  # lightgbm.Booster
    vocab: F.Vocabulary
    calibrator: Calibrator
    base_rate: float
    #: added to the trees' raw score before calibration (the negative-sampling correction)
    offset: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def raw(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, raw_score=True, num_threads=1) + self.offset

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.calibrator(self.raw(x))


class CtrScorer(Scorer, Explainer):
    name = "ctr"
    tasks = (TASK,)
    feature_refs = F.FEATURE_REFS

    def __init__(
        self,
        click_window_hours: float = 24.0,
        learning_rate: float = 0.08,
        num_leaves: int = 3,
        min_data_in_leaf: int = 50,
        lambda_l2: float = 1.0,
        max_rounds: int = 3000,
        early_stopping_rounds: int = 150,
        validation_fraction: float = 0.15,
        calibration_fraction: float = 0.15,
        calibration: str = "auto",
        negative_rate: float = 1.0,
        refit_with_validation: bool = True,
        serving_position: int = 1,
        threads: int = 1,
        random_state: int = 0,
        scenarios: list[str] | None = None,
    ) -> None:
        if calibration not in ("auto", "platt", "isotonic"):
            raise ValueError(f"calibration must be auto, platt or isotonic, got {calibration!r}")
        if not 0 < negative_rate <= 1:
            raise ValueError(f"negative_rate must be in (0, 1], got {negative_rate}")
        for name, value in (("validation_fraction", validation_fraction),
                            ("calibration_fraction", calibration_fraction)):
            if not 0 < value < 0.5:
                raise ValueError(f"{name} must be between 0 and 0.5, got {value}")
        super().__init__(
            click_window_hours=click_window_hours,
            learning_rate=learning_rate, num_leaves=num_leaves,
            min_data_in_leaf=min_data_in_leaf, lambda_l2=lambda_l2, max_rounds=max_rounds,
            early_stopping_rounds=early_stopping_rounds,
            validation_fraction=validation_fraction, calibration_fraction=calibration_fraction,
            calibration=calibration, negative_rate=negative_rate,
            refit_with_validation=refit_with_validation,
            serving_position=serving_position, threads=threads, random_state=random_state,
            scenarios=scenarios)
        self.models: dict[str, ScenarioModel] = {}

    def supports(self, scenario: Scenario) -> bool:
        named = self.config.get("scenarios")
        return scenario.name in named if named else TASK in scenario.objective

    # Training -----------------------------------------------------------------------------
    def fit(self, data: TrainingData, progress: bool = False) -> None:
        from hybridrec.impressions import labelled_impressions

        self.models = {}
        for name, scenario in data.scenarios.items():
            if not self.supports(scenario):
                continue
            rows = labelled_impressions(data.scenario_events(name), scenario,
                                        self.config["click_window_hours"])
            if len(rows):
                self.models[name] = self._fit_scenario(rows)

    def _fit_scenario(self, rows: pd.DataFrame) -> ScenarioModel:
        import lightgbm as lgb

        cfg = self.config
        start = time.perf_counter()
        y = rows["label"].to_numpy(np.float64)
        n = len(rows)
        n_cal = max(1, int(n * cfg["calibration_fraction"]))
        n_val = max(1, int(n * cfg["validation_fraction"]))
        fit_end, val_end = n - n_cal - n_val, n - n_cal
        base_rate = float(y[:fit_end].mean()) if fit_end > 0 else float(y.mean())
        raw = raw_columns(rows)
        vocab = F.Vocabulary.fit(raw, rows[C.ITEM_ID].to_numpy(object))
        x = F.design(raw, rows[C.ITEM_ID].to_numpy(object),
                     F.utc_times(rows[C.EVENT_TIMESTAMP].to_numpy()),
                     rows[C.POSITION].to_numpy() if C.POSITION in rows else np.full(n, np.nan),
                     np.arange(n), vocab, base_rate)
        keep = np.arange(max(fit_end, 0))
        rng = np.random.default_rng(cfg["random_state"])
        if cfg["negative_rate"] < 1:
            keep = keep[(y[keep] == 1) | (rng.random(len(keep)) < cfg["negative_rate"])]
        params = {
            "objective": "binary", "learning_rate": cfg["learning_rate"],
            "num_leaves": cfg["num_leaves"], "min_data_in_leaf": cfg["min_data_in_leaf"],
            "lambda_l2": cfg["lambda_l2"], "max_cat_to_onehot": 8, "cat_smooth": 10.0,
            "min_data_per_group": 20, "feature_fraction": 0.9, "num_threads": cfg["threads"],
            "deterministic": True, "force_row_wise": True, "seed": cfg["random_state"],
            "verbose": -1,
        }
        categorical = [F.NAMES.index(c) for c in F.CATEGORICAL]
        train_set = lgb.Dataset(x[keep], y[keep], feature_name=list(F.NAMES),
                                categorical_feature=categorical, free_raw_data=False)
        valid = np.arange(max(fit_end, 0), val_end)
        valid_set = lgb.Dataset(x[valid], y[valid], reference=train_set)
        evals: dict[str, Any] = {}
        booster = lgb.train(
            params, train_set, num_boost_round=cfg["max_rounds"], valid_sets=[valid_set],
            valid_names=["validation"],
            callbacks=[lgb.early_stopping(cfg["early_stopping_rounds"], verbose=False),
                       lgb.record_evaluation(evals)])
        best = booster.best_iteration or booster.current_iteration()
        offset = float(np.log(cfg["negative_rate"]))
        p_val = sigmoid(booster.predict(x[valid], raw_score=True, num_iteration=best) + offset)
        validation = {"auc": _round(auc(y[valid], p_val)),
                      "logloss": _round(logloss(y[valid], p_val)),
                      "ece": _round(ece(y[valid], p_val))}
        if cfg["refit_with_validation"] and len(valid):
            # as many trees as validation chose, now grown on the validation slice too
            both = np.concatenate([keep, valid])
            booster = lgb.train(params, lgb.Dataset(
                x[both], y[both], feature_name=list(F.NAMES),
                categorical_feature=categorical), num_boost_round=best)
        elif best != booster.current_iteration():
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        model = ScenarioModel(booster, vocab, Calibrator("none"), base_rate, offset)
        cal = np.arange(val_end, n)
        raw_cal = model.raw(x[cal])
        model.calibrator, cal_losses = choose(raw_cal, y[cal], cfg["calibration"])
        importance = booster.feature_importance(importance_type="gain")
        total = float(importance.sum()) or 1.0
        model.info = {
            "rows": n, "clicks": int(y.sum()), "base_rate": round(base_rate, 6),
            "slices": {"train": int(len(keep)), "validation": int(len(valid)),
                       "calibration": int(len(cal))},
            "best_iteration": int(best), "calibration": model.calibrator.kind,
            "calibration_logloss": cal_losses,
            # the early-stopped trees on the slice that stopped them, before calibration
            "validation": validation,
            "feature_importance": {name: round(float(v) / total, 4) for name, v in sorted(
                zip(F.NAMES, importance, strict=True), key=lambda t: -t[1])},
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return model

    # Serving ------------------------------------------------------------------------------
    def _inputs(self, batch: ScoreBatch) -> tuple[ScenarioModel | None, np.ndarray, np.ndarray]:
        """The scenario's model, the batch's design matrix and which rows it can score."""
        model = self.models.get(batch.scenario.name)
        n = len(batch)
        if model is None or n == 0:
            return model, np.zeros((n, len(F.NAMES))), np.zeros(n, dtype=bool)
        req = batch.request
        raw: dict[str, np.ndarray] = {}
        for ref in F.FEATURE_REFS:
            c = F.column(ref)
            if ref in F.Hi.REFS:  # per request: the design looks them up per owner
                values = batch.user_features.get(c)
                raw[c] = values if values is not None else np.full(batch.n_requests, None,
                                                                  dtype=object)
            elif ref in F.PER_USER:
                values = batch.user_features.get(c)
                raw[c] = values[req] if values is not None else np.full(n, None, dtype=object)
            else:
                values = batch.item_features.get(c)
                raw[c] = values if values is not None else np.full(n, None, dtype=object)
        default = self.config["serving_position"]
        per_request = np.empty(batch.n_requests, dtype=object)
        for r, ctx in enumerate(batch.context or []):  # whatever a client sent: numeric()
            per_request[r] = ctx.get("position", default)  # makes anything else NaN
        positions = per_request[req]
        times = np.full(n, batch.as_of, dtype="datetime64[us]")
        x = F.design(raw, batch.item_ids, times, positions, req, model.vocab, model.base_rate)
        # an item nothing is known of (not seen in training, no catalogue features) gets no
        # score; a new ad with features, or an unseen category, gets a finite one
        known = batch.positions(model.vocab.item_index) >= 0
        return model, x, known | F.present(raw[F.CATEGORY])

    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        model, x, ok = self._inputs(batch)
        out = np.full(len(batch), np.nan)
        if model is not None and ok.any():
            out[ok] = model.predict(x[ok])
        return {TASK: out}

    def explain(self, batch: ScoreBatch, rows: np.ndarray, top: int = 5
                ) -> list[dict[str, Any] | None]:
        model, x, ok = self._inputs(batch)
        rows = np.asarray(rows, dtype=np.int64)
        notes: list[dict[str, Any] | None] = [None] * len(rows)
        chosen = np.flatnonzero(ok[rows]) if model is not None else np.array([], np.int64)
        if model is None or not len(chosen):
            return notes
        sub = x[rows[chosen]]
        contrib = model.booster.predict(sub, pred_contrib=True, num_threads=1)
        raw = contrib.sum(axis=1) + model.offset
        prob = model.calibrator(raw)
        for j, r in enumerate(chosen):
            c = contrib[j, :-1]
            order = np.argsort(-np.abs(c), kind="stable")[:top]
            notes[r] = {
                "task": TASK, "probability": float(prob[j]), "raw_score": float(raw[j]),
                "base": float(contrib[j, -1] + model.offset),
                "contributions": [{"feature": F.NAMES[i], "value": _value(sub[j, i], i, model),
                                   "contribution": float(c[i])} for i in order],
            }
        return notes

    def feature_importance(self, scenario: str) -> dict[str, float]:
        model = self.models.get(scenario)
        return dict(model.info.get("feature_importance", {})) if model is not None else {}

    # Persistence --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"config": dict(self.config),
                "scenarios": {n: m.info for n, m in self.models.items()}}

    def save(self, path: Path) -> None:
        meta = {"config": self.config, "scenarios": {}}
        for name, m in self.models.items():
            m.booster.save_model(str(path / f"{name}.lgb.txt"))
            meta["scenarios"][name] = {"vocab": m.vocab.values, "items": m.vocab.items,
                                       "calibrator": m.calibrator.as_dict(),
                                       "base_rate": m.base_rate, "offset": m.offset,
                                       "info": m.info}
        (path / "ctr.json").write_text(json.dumps(meta, indent=1, default=_json_default))

    @classmethod
    def load(cls, path: Path) -> Self:
        import lightgbm as lgb

        meta = json.loads((path / "ctr.json").read_text())
        scorer = cls(**meta["config"])
        for name, m in meta["scenarios"].items():
            booster = lgb.Booster(model_file=str(path / f"{name}.lgb.txt"))
            scorer.models[name] = ScenarioModel(
                booster, F.Vocabulary(m["vocab"], m["items"]),
                Calibrator.from_dict(m["calibrator"]),
                float(m["base_rate"]), float(m["offset"]), m["info"])
        return scorer


def raw_columns(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """A training frame's feature columns (each row its own owner)."""
    return {F.column(ref): (rows[F.column(ref)].to_numpy(object) if F.column(ref) in rows
                            else np.full(len(rows), None, dtype=object))
            for ref in F.FEATURE_REFS}


def _value(v: float, i: int, model: ScenarioModel) -> Any:
    """A design value as a reader would want it: the category for a categorical input."""
    name = F.NAMES[i]
    if np.isnan(v):
        return None
    if name in F.CATEGORICAL:
        return model.vocab.values[name][int(v)]
    return float(v)


def _round(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
