"""``llm``: the transformer multi-task scorer.

Fit (torch, on ``device``): item texts are embedded by the encoder, per scenario a
multi-task network (``net.MultiTaskNet``) is trained on the scenario's pairs with sampled
negatives, task weights adapted by uncertainty or GradNorm, early stopped on the latest
``validation_fraction`` of the pairs with the best epoch restored; optionally LoRA fine-tunes
the encoder (items are then re-embedded with the merged weights) and a smaller student is
distilled for serving. The bundle holds NumPy arrays only; scoring (``serving.ServingNet``)
never imports torch, and the serving process never loads the encoder.

Scores per candidate: ``click`` (engagement probability), ``like`` (strong-positive
probability) and ``rating`` (predicted stars), each where the scenario has such labels (a
shop has no ratings: no ``rating``); NaN for items the model never saw that have no text
embedding in the feature store.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import FeatureWriter, Ragged, Scenario, ScoreBatch, Scorer, TrainingData
from hybridrec.ids import IdIndex
from hybridrec_llm import embeddings as E
from hybridrec_llm.serving import ARRAYS, ITEM_TASKS, WEIGHTINGS, ServingNet, UserCodec

DEFAULT_USER_FEATURES = ("user_profile:age", "user_profile:gender", "user_profile:occupation")
FINE_TUNE = ("none", "lora")
TASKS = ITEM_TASKS


@dataclass
class ScenarioModel:
    item_ids: np.ndarray
    net: ServingNet
    codec: UserCodec
    tasks: tuple[str, ...]
    text_dim: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = IdIndex(self.item_ids)


class LlmScorer(Scorer, FeatureWriter):
    name = "llm"
    tasks = TASKS

    def __init__(
        self,
        encoder: str | None = None,
        device: str = "auto",
        threads: int | None = 1,
        dim: int = 64,
        hidden: int = 128,
        history_length: int = 100,
        negatives: int = 8,
        epochs: int = 20,
        patience: int = 3,
        batch_size: int = 512,
        learning_rate: float = 2e-3,
        weight_decay: float = 0.01,
        history_dropout: float = 0.3,
        id_dropout: float = 0.15,
        task_weighting: str = "gradnorm",
        train_tasks: list[str] | None = None,
        min_item_interactions: int = 5,
        validation_fraction: float = 0.1,
        fine_tune: str = "none",
        lora_steps: int = 60,
        lora_batch: int = 16,
        lora_r: int = 8,
        lora_learning_rate: float = 5e-4,
        distill: bool = False,
        student_dim: int = 32,
        student_hidden: int = 32,
        distill_epochs: int = 3,
        user_features: list[str] | None = None,
        scenarios: list[str] | None = None,
        random_state: int = 0,
    ) -> None:
        from hybridrec_llm.device import DEVICES

        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        if fine_tune not in FINE_TUNE:
            raise ValueError(f"fine_tune must be one of {', '.join(FINE_TUNE)}, "
                             f"got {fine_tune!r}")
        if task_weighting not in WEIGHTINGS:
            raise ValueError(f"task_weighting must be one of {', '.join(WEIGHTINGS)}, "
                             f"got {task_weighting!r}")
        unknown = set(train_tasks or ()) - {*TASKS, "profile"}
        if unknown:
            raise ValueError(f"train_tasks has unknown tasks {sorted(unknown)}; "
                             "known: click, like, rating, profile")
        if train_tasks is not None and not set(train_tasks) & {"click", "like"}:
            raise ValueError("train_tasks must include click or like: the candidates are "
                             f"ranked by them (got {train_tasks})")
        users = list(DEFAULT_USER_FEATURES if user_features is None else user_features)
        super().__init__(
            encoder=encoder, device=device, threads=threads, dim=dim, hidden=hidden,
            history_length=history_length, negatives=negatives, epochs=epochs,
            patience=patience, batch_size=batch_size, learning_rate=learning_rate,
            weight_decay=weight_decay, history_dropout=history_dropout, id_dropout=id_dropout,
            task_weighting=task_weighting, train_tasks=train_tasks,
            min_item_interactions=min_item_interactions,
            validation_fraction=validation_fraction, fine_tune=fine_tune,
            lora_steps=lora_steps, lora_batch=lora_batch, lora_r=lora_r,
            lora_learning_rate=lora_learning_rate, distill=distill, student_dim=student_dim,
            student_hidden=student_hidden, distill_epochs=distill_epochs,
            user_features=users, scenarios=scenarios, random_state=random_state)
        self.feature_refs = (E.REF, E.ENCODER_REF, *users)
        self.models: dict[str, ScenarioModel] = {}
        self.fit_info: dict[str, Any] = {}
        self.encoder: Any = None  # the fitted encoder, in the training process only
        self.encoder_dir: Path | None = None  # a saved (LoRA-merged) encoder in the bundle

    def supports(self, scenario: Scenario) -> bool:
        """Preference scenarios, as for ALS: any listed in config, else every one whose
        objective is not click-through rate."""
        if self.config.get("scenarios"):
            return scenario.name in self.config["scenarios"]
        return "ctr" not in scenario.objective and any(
            w > 0 for w in scenario.event_weights.values())

    @property
    def user_columns(self) -> list[str]:
        return [r.replace(":", "__") for r in self.config["user_features"]]

    # Fitting ----------------------------------------------------------------------------
    def fit(self, data: TrainingData, progress: bool = True) -> None:
        from hybridrec_llm import fitting

        self.models, self.fit_info, self.encoder = fitting.fit(self, data, progress)

    def load_encoder(self) -> Any:
        """The encoder that embeds items for this model: the fitted one, the LoRA-merged one
        saved in the bundle, or the configured base model."""
        from hybridrec_llm.device import choose_device
        from hybridrec_llm.encoder import Encoder, resolve

        if self.encoder is None:
            path = self.encoder_dir or resolve(self.config["encoder"])
            self.encoder = Encoder(path, choose_device(self.config["device"]))
            self.encoder.lora = self.encoder_dir is not None
        return self.encoder

    def write_features(self, store: Any, items: Any, progress: bool = True) -> dict[str, int]:
        """Embed the catalogue items whose text (or encoder) changed since they were last
        written, into ``item_text_embedding`` offline and online."""
        from hybridrec_llm.encoder import embed

        items = items[items[C.SCENARIO].isin(list(self.models))]
        if not len(items):
            return {E.VIEW: 0}
        encoder = self.load_encoder()
        texts = E.item_texts(items)
        hashes = E.text_hashes(texts, encoder.identity())
        ids = items[C.ITEM_ID].to_numpy(str)
        todo = np.flatnonzero(E.stale(Path(store.repo_path), ids, hashes))
        if not len(todo):
            return {E.VIEW: 0}
        vectors = embed(encoder, [texts[i] for i in todo], hashes[todo], progress)
        return {E.VIEW: E.write(store, ids[todo], vectors, hashes[todo], encoder.identity())}

    def describe(self) -> dict[str, Any]:
        return {"config": {k: v for k, v in self.config.items() if v is not None},
                **self.fit_info,
                "scenarios": {n: m.info for n, m in self.models.items()}}

    # Serving ----------------------------------------------------------------------------
    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        n = len(batch)
        model = self.models.get(batch.scenario.name)
        if model is None:
            return {"click": np.full(n, np.nan)}
        out = {t: np.full(n, np.nan) for t in model.tasks}
        if n == 0:
            return out
        rows = batch.positions(model.index) + 1
        text = None
        new = rows == 0
        if new.any():
            column = batch.item_features.get(E.COLUMN)
            encoders = batch.item_features.get(E.ENCODER_COLUMN)
            text = np.zeros((n, model.text_dim), dtype=np.float32)
            if column is not None and encoders is not None:
                text[new], ok = E.matrix(column[new], model.text_dim)
                # an embedding from another encoder lives in another space: no opinion
                ok &= encoders[new] == self.fit_info.get("encoder_id")
                unscored = np.flatnonzero(new)[~ok]
            else:
                unscored = np.flatnonzero(new)
        else:
            unscored = np.array([], dtype=np.int64)
        history = self._history_rows(batch, model)
        codes, numeric = model.codec.encode(batch.user_features, batch.n_requests)
        users = model.net.users(history, codes, numeric)
        heads = model.net.score(users, batch.request, rows, text)
        for j, task in enumerate(TASKS):
            if task in model.tasks:
                out[task] = heads[:, j]
                out[task][unscored] = np.nan
        return out

    def _history_rows(self, batch: ScoreBatch, model: ScenarioModel) -> Ragged:
        """Each request's most recent distinct items (the history the core hands over: events
        with a positive weight, feedback since training, ``context.recent_items``; what the
        model trained on) as item-table rows, at most ``history_length``; items the model does
        not know are left out."""
        assert batch.history is not None
        rows = model.index.positions(batch.history.values) + 1
        kept = batch.history.mask(rows > 0)
        kept = Ragged(rows[rows > 0], kept.offsets)
        length = int(self.config["history_length"])
        if len(kept.values) and kept.lengths.max() > length:
            position = np.arange(len(kept.values)) - np.repeat(kept.offsets[:-1], kept.lengths)
            kept = kept.mask(position >= np.repeat(kept.lengths - length, kept.lengths))
        return kept

    # Persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        meta: dict[str, Any] = {"config": self.config, "fit_info": self.fit_info,
                                "scenarios": {}}
        for name, m in self.models.items():
            directory = path / name
            directory.mkdir()
            np.save(directory / "item_ids.npy", m.item_ids)
            np.savez(directory / "net.npz", **m.net.a)
            meta["scenarios"][name] = {"tasks": list(m.tasks), "text_dim": m.text_dim,
                                       "rating_scale": list(m.net.rating_scale),
                                       "codec": m.codec.as_dict(), "info": m.info}
        if self.encoder is not None and self.encoder.lora:
            self.encoder.save(path / "encoder")
        (path / "llm.json").write_text(json.dumps(meta, indent=2, default=_json))

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = json.loads((path / "llm.json").read_text())
        scorer = cls(**meta["config"])
        scorer.fit_info = meta["fit_info"]
        if (path / "encoder").is_dir():
            scorer.encoder_dir = path / "encoder"
        for name, info in meta["scenarios"].items():
            d = path / name
            with np.load(d / "net.npz") as arrays:
                net = ServingNet({k: arrays[k] for k in ARRAYS},
                                 tuple(info["rating_scale"]))  # type: ignore[arg-type]
            scorer.models[name] = ScenarioModel(
                np.load(d / "item_ids.npy"), net, UserCodec.from_dict(info["codec"]),
                tuple(info["tasks"]), int(info["text_dim"]), info["info"])
        return scorer


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def timed_score(model: ScenarioModel, n: int = 500, repeat: int = 200,
                rng: np.random.Generator | None = None) -> float:
    """Median seconds of model time for one request of ``n`` known candidates."""
    rng = rng or np.random.default_rng(0)
    rows = rng.integers(1, len(model.item_ids) + 1, size=n)
    history = Ragged.single(rng.integers(1, len(model.item_ids) + 1, size=20))
    codes, numeric = model.codec.encode({}, 1)
    request = np.zeros(n, dtype=np.int64)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        users = model.net.users(history, codes, numeric)
        model.net.score(users, request, rows)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
