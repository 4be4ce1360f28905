"""hybridrec-llm: quality on MovieLens 100K, ablations, cold-start items and speed.

Protocol (the ALS benchmark's): a seeded random 80/20 split of all MovieLens 100K ratings;
for every user with test ratings, rank every item the user did not rate in training; NDCG@10
and Recall@10 over the test items. In one run: popularity, ALS (tuned on a validation slice
of the training part) and the llm scorer ranking by its engagement head; for the llm scorer
also the AUC of its strong-positive head (test ratings >= 4 against the rest) and the RMSE
of its rating head on the test ratings. The llm scorer early-stops on each user's latest 10 %
of training pairs, never on the test part.

Ablations (each a full training): uncertainty weighting and fixed equal task weights against
GradNorm (the default); the engagement task alone against all tasks; LoRA fine-tuning of the
encoder against the frozen encoder; a distilled student (dim 32, hidden 32) served instead of
the model, with its model time.

Cold-start items: 10 % of the items are held out of training entirely (all their ratings);
for each user who rated any of them, those items are ranked (NDCG@10) by the llm scorer from
their text embeddings alone, against random order and a text-only baseline (cosine between
the item's embedding and the mean embedding of the user's training items).

Speed: encoding throughput (items/s), training time, model time for 500 candidates.

    .venv/bin/python benchmarks/llm.py [--ml PATH] [--skip-ablations]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import als as A  # noqa: E402  (the ALS benchmark: same split, same metrics)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hybridrec_als import AlsScorer  # noqa: E402
from hybridrec_llm import LlmScorer  # noqa: E402
from hybridrec_llm import embeddings as E  # noqa: E402
from hybridrec_llm.scorer import timed_score  # noqa: E402

from hybridrec import columns as C  # noqa: E402
from hybridrec import metrics as M  # noqa: E402
from hybridrec.builtin.popularity import PopularityScorer  # noqa: E402
from hybridrec.builtin.scenarios import MOVIES  # noqa: E402
from hybridrec.contracts import Ragged, ScoreBatch, TrainingData  # noqa: E402
from hybridrec.data import movielens  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
USER_COLUMNS = {"age": "user_profile__age", "gender": "user_profile__gender",
                "occupation": "user_profile__occupation"}
CHUNK = 64  # users per scoring batch


def with_user_features(data) -> pd.DataFrame:
    """Events with the user profile joined as the core would (``view__feature`` columns)."""
    users = data.users.rename(columns=USER_COLUMNS).drop(columns=[C.EVENT_TIMESTAMP])
    return data.events.merge(users, on=C.USER_ID, how="left")


def score_all(scorer: LlmScorer, users: np.ndarray, candidates: dict[str, np.ndarray],
              train: pd.DataFrame, item_features: dict[str, np.ndarray] | None = None
              ) -> tuple[ScoreBatch, dict[str, np.ndarray]]:
    """Every user's candidates scored in batches of ``CHUNK`` users; one batch back."""
    seen = train.sort_values(C.EVENT_TIMESTAMP, kind="stable").groupby(C.USER_ID)[C.ITEM_ID]
    seen = seen.agg(list)
    profile = train.drop_duplicates(C.USER_ID).set_index(C.USER_ID)
    batches, outs = [], []
    for start in range(0, len(users), CHUNK):
        chunk = users[start:start + CHUNK]
        cands = Ragged.from_rows([candidates[u] for u in chunk], dtype=str)
        batch = ScoreBatch(
            scenario=MOVIES, user_ids=chunk.astype(object), candidates=cands,
            history=Ragged.from_rows([seen.get(u, []) for u in chunk], dtype=str),
            user_features={c: profile.reindex(chunk)[c].to_numpy(object)
                           for c in USER_COLUMNS.values()},
            item_features={c: item_features[c][np.searchsorted(item_features["ids"],
                                                                cands.values)]
                           for c in (E.COLUMN, E.ENCODER_COLUMN)} if item_features else {})
        batches.append(batch)
        outs.append(scorer.score(batch))
    ids = np.concatenate([b.item_ids for b in batches])
    offsets = np.r_[0, np.cumsum(np.concatenate([b.candidates.lengths for b in batches]))]
    merged = ScoreBatch(scenario=MOVIES, user_ids=users.astype(object),
                        candidates=Ragged(ids, offsets))
    return merged, {t: np.concatenate([o[t] for o in outs]) for t in outs[0]}


def top_by(batch: ScoreBatch, values: np.ndarray, n: int = 10) -> dict[str, np.ndarray]:
    from hybridrec.ranking import top_k_groups

    top = top_k_groups(values, batch.offsets, n)
    return {u: batch.item_ids[top[r]] for r, u in enumerate(batch.user_ids)}


def fit_llm(td: TrainingData, **config) -> tuple[LlmScorer, float]:
    start = time.perf_counter()
    scorer = LlmScorer(device="cpu", **config)
    scorer.fit(td, progress=sys.stderr.isatty())
    return scorer, time.perf_counter() - start


def llm_metrics(scorer: LlmScorer, users: np.ndarray, items: np.ndarray,
                train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    seen = train.groupby(C.USER_ID)[C.ITEM_ID].agg(set)
    candidates = {u: np.array([i for i in items if i not in seen[u]]) for u in users}
    batch, out = score_all(scorer, users, candidates, train)
    got = A.evaluate(top_by(batch, out["click"]), test)
    # strong-positive AUC and rating RMSE on the test ratings themselves
    pairs = pd.DataFrame({C.USER_ID: np.repeat(batch.user_ids, batch.candidates.lengths),
                          C.ITEM_ID: batch.item_ids, "like": out.get("like", np.nan),
                          "rating": out.get("rating", np.nan)})
    rated = test.merge(pairs, on=[C.USER_ID, C.ITEM_ID], how="inner")
    got["auc(like)"] = M.auc((rated[C.VALUE] >= 4).to_numpy(), rated["like"].to_numpy())
    got["rmse(rating)"] = float(np.sqrt(np.mean((rated["rating"] - rated[C.VALUE]) ** 2)))
    return got


def quality(ml: Path, ablations: bool) -> None:
    data = movielens.load(ml)
    events = with_user_features(data)
    items = data.items[C.ITEM_ID].to_numpy(str)
    train, test = A.split(events)
    users = np.array(sorted(set(test[C.USER_ID]) & set(train[C.USER_ID])))
    td = TrainingData(events=train, items=data.items, users=data.users,
                      scenarios={"movies": MOVIES})
    rows: list[tuple[str, dict[str, float], str]] = []
    pop = PopularityScorer(half_life_days=None)
    pop.fit(td)
    rows.append(("popularity", A.evaluate(A.source_top(pop, train, users), test), ""))
    als = AlsScorer(device="cpu", random_state=0)
    als.fit(td)
    rows.append(("ALS", A.evaluate(A.source_top(als, train, users), test), ""))

    runs = {"llm (GradNorm weights)": {}}
    if ablations:
        runs.update({"llm, uncertainty weights": {"task_weighting": "uncertainty"},
                     "llm, fixed equal weights": {"task_weighting": "fixed"},
                     "llm, engagement task only": {"train_tasks": ["click"]},
                     "llm, LoRA fine-tuned encoder": {"fine_tune": "lora"},
                     "llm, distilled student (32/32)": {"distill": True}})
    main = None
    for label, config in runs.items():
        scorer, seconds = fit_llm(td, **config)
        info = scorer.models["movies"].info
        got = llm_metrics(scorer, users, items, train, test)
        note = (f"best epoch {info['best_epoch']}/{len(info['epochs'])}, "
                f"fit {seconds:.0f} s")
        if config.get("distill"):
            ms = timed_score(scorer.models["movies"]) * 1000
            note += f", model time for 500 candidates {ms:.3f} ms"
        rows.append((label, got, note))
        if main is None:
            main = (scorer, seconds)

    print(f"MovieLens 100K, seeded random 80/20 split, {len(users)} test users, full ranking "
          "over unseen items")
    print(f"{'model':<30}{'NDCG@10':>9}{'Recall@10':>11}{'AUC(like)':>11}{'RMSE':>8}  notes")
    for name, m, note in rows:
        auc, rmse = m.get("auc(like)", float("nan")), m.get("rmse(rating)", float("nan"))
        print(f"{name:<30}{m['ndcg@10']:>9.4f}{m['recall@10']:>11.4f}"
              f"{auc:>11.4f}{rmse:>8.4f}  {note}".replace("nan", "  -"))
    assert main is not None
    scorer, seconds = main
    info = scorer.fit_info
    model = scorer.models["movies"]
    print(f"\nspeed: encoding {info['encode_items_per_second']:.0f} items/s "
          f"({info['encoded_items']} items, {Path(info['encoder']).parent.name}); "
          f"training {seconds:.0f} s ({model.info['train_seconds']:.0f} s in the training "
          f"loop); model time for 500 candidates "
          f"{timed_score(model) * 1000:.3f} ms (median of 200, one core)")
    numpy_ms, torch_ms, import_s = torch_or_numpy(model)
    print(f"serving choice: NumPy {numpy_ms:.3f} ms vs torch {torch_ms:.3f} ms for the same "
          f"network on 500 candidates (one thread); 'import torch' alone takes {import_s:.1f} s")
    weights = [e["weights"] for e in model.info["epochs"]]
    print(f"{model.info['task_weighting']} task weights by epoch: " + "; ".join(
        ", ".join(f"{t} {w:.2f}" for t, w in epoch.items()) for epoch in weights))
    cold(data, events)


def torch_or_numpy(model) -> tuple[float, float, float]:
    """Model time for one request of 500 candidates, NumPy (what serves) against the same
    network in torch, and what importing torch costs a fresh process."""
    import subprocess

    import torch
    from hybridrec_llm.net import MultiTaskNet

    torch.set_num_threads(1)
    a = model.net.a
    dim, hidden = a["item_reps"].shape[1], a["trunk2_w"].shape[0]
    n_items = len(model.item_ids)
    net = MultiTaskNet(np.zeros((n_items + 1, model.text_dim), np.float32),
                       np.zeros(n_items + 1, np.int64), n_items + 1, a["user_code"].shape[0],
                       a["user_num_w"].shape[0], 2, dim, hidden).eval()
    rng = np.random.default_rng(0)
    history = torch.as_tensor(rng.integers(1, n_items + 1, size=(1, 100)))
    targets = torch.as_tensor(rng.integers(1, n_items + 1, size=(1, 500)))
    codes = torch.zeros((1, max(len(model.codec.categorical), 1)), dtype=torch.long)
    numeric = torch.zeros((1, a["user_num_w"].shape[0]))
    times = []
    with torch.inference_mode():
        for _ in range(200):
            start = time.perf_counter()
            net(history, targets, codes, numeric)
            times.append(time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    import_s = time.perf_counter() - start
    return timed_score(model) * 1000, float(np.median(times)) * 1000, import_s


def cold(data, events: pd.DataFrame) -> None:
    """Items never seen in training, ranked from their text alone."""
    rng = np.random.default_rng(0)
    items = data.items[C.ITEM_ID].to_numpy(str)
    held = np.sort(rng.choice(items, size=len(items) // 10, replace=False))
    is_held = events[C.ITEM_ID].isin(held)
    train, test = events[~is_held], events[is_held]
    users = np.array(sorted(set(test[C.USER_ID]) & set(train[C.USER_ID])))
    td = TrainingData(events=train, items=data.items[~data.items[C.ITEM_ID].isin(held)],
                      users=data.users, scenarios={"movies": MOVIES})
    scorer, _ = fit_llm(td)
    encoder = scorer.load_encoder()
    texts = E.item_texts(data.items)
    vectors = encoder.encode(texts, progress=False)
    order = np.argsort(items)
    column = np.empty(len(items), dtype=object)
    column[:] = [v.tolist() for v in vectors[order]]
    features = {"ids": items[order], E.COLUMN: column,
                E.ENCODER_COLUMN: np.full(len(items), scorer.fit_info["encoder_id"], dtype=object)}
    batch, out = score_all(scorer, users, {u: held for u in users}, train, features)
    results = {"llm (text embedding, no ID)": A.evaluate(top_by(batch, out["click"]), test)}
    # text-only baseline: cosine of the item with the user's mean training-item embedding
    by_item = dict(zip(items, vectors, strict=True))
    mean = train.groupby(C.USER_ID)[C.ITEM_ID].agg(
        lambda s: np.mean([by_item[i] for i in s], axis=0))
    user_vec = np.stack(mean.reindex(np.repeat(batch.user_ids, batch.candidates.lengths)))
    cosine = np.einsum("ij,ij->i", user_vec, np.stack([by_item[i] for i in batch.item_ids]))
    results["text-only (cosine to mean history)"] = A.evaluate(top_by(batch, cosine), test)
    randoms = [A.evaluate(top_by(batch, np.random.default_rng(s).random(len(batch))), test)
               for s in range(5)]
    results["random order (mean of 5)"] = {k: float(np.mean([r[k] for r in randoms]))
                                           for k in randoms[0]}
    print(f"\ncold-start items: {len(held)} items held out of training, ranked for the "
          f"{len(users)} users who rated them")
    print(f"{'ranking':<38}{'NDCG@10':>9}{'Recall@10':>11}")
    for name, m in results.items():
        print(f"{name:<38}{m['ndcg@10']:>9.4f}{m['recall@10']:>11.4f}")
    ratio = results["llm (text embedding, no ID)"]["ndcg@10"] / results[
        "random order (mean of 5)"]["ndcg@10"]
    print(f"llm / random NDCG@10: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description="hybridrec-llm benchmarks")
    parser.add_argument("--ml", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    parser.add_argument("--skip-ablations", action="store_true")
    parser.add_argument("--cold-only", action="store_true", help="only the cold-start part")
    args = parser.parse_args()
    if not (args.ml / "u.data").exists():
        raise SystemExit(f"MovieLens 100K not found at {args.ml}")
    if args.cold_only:
        data = movielens.load(args.ml)
        cold(data, with_user_features(data))
    else:
        quality(args.ml, not args.skip_ablations)
    print(f"\ncommand: {Path(sys.executable).name} benchmarks/llm.py "
          f"{' '.join(sys.argv[1:])}".rstrip())


if __name__ == "__main__":
    main()
