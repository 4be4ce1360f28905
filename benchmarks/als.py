"""hybridrec-als: quality on MovieLens 100K and speed, printed as tables.

Quality protocol: a seeded random 80/20 split of all MovieLens 100K interactions (every rating
counts); for every user with test interactions, rank every item the user did not interact with
in training; NDCG@10 and Recall@10 over the test items. In the same run: popularity (the core
scorer, no time decay), implicit's BM25 item-kNN, and the ALS plugin. ALS and item-kNN choose
their hyper-parameters on a validation slice of the training part drawn the way the test is
(10 % of its ratings at random), never on the test part.

Speed: ALS training seconds (one fit, no grid) on MovieLens 100K and on a synthetic world with
about 1M shop and video events; scoring 500 candidates; top-100 retrieval over the whole
catalogue (medians of 200 calls, one user).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/als.py [--ml PATH] [--skip-speed]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hybridrec_als import AlsScorer  # noqa: E402
from hybridrec_als.device import cpu_threads, single_threaded_blas  # noqa: E402

from hybridrec import columns as C  # noqa: E402
from hybridrec import metrics as M  # noqa: E402
from hybridrec.builtin.popularity import PopularityScorer  # noqa: E402
from hybridrec.builtin.scenarios import MOVIES, SHOP, VIDEO  # noqa: E402
from hybridrec.contracts import Ragged, RetrievalBatch, ScoreBatch, TrainingData  # noqa: E402
from hybridrec.data import movielens  # noqa: E402
from hybridrec.scenario_models import VALIDATION_SEED  # noqa: E402
from hybridrec.training.data import make_split  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = {"popularity": 0.2197, "item-kNN (BM25)": 0.3986, "ALS (hybridrec-als)": 0.4402}


def split(events: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    test = np.random.default_rng(seed).random(len(events)) < 0.2
    return events[~test].reset_index(drop=True), events[test].reset_index(drop=True)


def evaluate(top: dict[str, np.ndarray], test: pd.DataFrame) -> dict[str, float]:
    users = np.array(sorted(top))
    ranked = np.stack([top[u] for u in users])
    rows = pd.Index(users).get_indexer(test[C.USER_ID])
    keep = rows >= 0
    item_codes = {i: n for n, i in enumerate(np.unique(np.r_[ranked.ravel(),
                                                             test[C.ITEM_ID]]))}
    codes = np.vectorize(item_codes.get)(ranked)
    cols = test[C.ITEM_ID].map(item_codes).to_numpy()
    hits = M.hits_matrix(codes, rows[keep], cols[keep])
    got = M.ranking_metrics(hits, np.bincount(rows[keep], minlength=len(users)))
    return {"ndcg@10": got["ndcg"], "recall@10": got["recall"]}


def knn_top(train: pd.DataFrame, users: np.ndarray, items: np.ndarray, K: int,
            n: int = 10) -> dict[str, np.ndarray]:
    from hybridrec_als.model import confidence_matrix
    from implicit.nearest_neighbours import BM25Recommender

    all_users = np.unique(train[C.USER_ID])
    matrix = confidence_matrix(train, {"rating": 1.0}, all_users, items)
    import warnings

    model = BM25Recommender(K=K)
    with single_threaded_blas(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit's own COO->CSR note inside BM25 weighting
        model.fit(matrix, show_progress=False)
    rows = pd.Index(all_users).get_indexer(users)
    ids, _ = model.recommend(rows, matrix[rows], N=n, filter_already_liked_items=True)
    return {u: items[r] for u, r in zip(users, ids, strict=True)}


def source_top(source, train: pd.DataFrame, users: np.ndarray, n: int = 10
               ) -> dict[str, np.ndarray]:
    """Top ``n`` for every user in one batched retrieval, seen items excluded."""
    seen = train.groupby(C.USER_ID)[C.ITEM_ID].agg(list)
    history = Ragged.from_rows([seen[u] for u in users], dtype=str)
    batch = RetrievalBatch(scenario=MOVIES, user_ids=np.asarray(users, dtype=object),
                           history=history, exclude=history)
    top = source.retrieve(batch, n)
    return {u: top[r] for r, u in enumerate(users)}


def quality(ml: Path) -> None:
    data = movielens.load(ml)
    items = data.items[C.ITEM_ID].to_numpy(str)
    train, test = split(data.events)
    users = np.array(sorted(set(test[C.USER_ID]) & set(train[C.USER_ID])))
    td = TrainingData(events=train, items=data.items, users=data.users,
                      scenarios={"movies": MOVIES}, split="random")
    rows = []

    pop = PopularityScorer(half_life_days=None)
    pop.fit(td)
    rows.append(("popularity", evaluate(source_top(pop, train, users), test), ""))

    # item-kNN: K chosen on a validation slice of the training part drawn as the test is
    # (as ALS draws its own: TrainingData.split)
    held = make_split(train, "random", 0.1, seed=VALIDATION_SEED)
    fit_part, val_part = held.train, held.test
    val_part = val_part.merge(fit_part[[C.USER_ID, C.ITEM_ID]], how="left", indicator=True)
    val_part = val_part[val_part["_merge"] == "left_only"]
    val_users = np.array(sorted(set(val_part[C.USER_ID]) & set(fit_part[C.USER_ID])))
    best_k = max((20, 50, 100, 200), key=lambda K: evaluate(
        knn_top(fit_part, val_users, items, K), val_part)["ndcg@10"])
    rows.append(("item-kNN (BM25)", evaluate(knn_top(train, users, items, best_k), test),
                 f"K={best_k}"))

    start = time.perf_counter()
    als = AlsScorer(device="cpu", random_state=0)
    als.fit(td)
    seconds = time.perf_counter() - start
    chosen = als.describe()["scenarios"]["movies"]["params"]
    rows.append(("ALS (hybridrec-als)", evaluate(source_top(als, train, users), test),
                 f"factors={chosen['factors']} reg={chosen['regularization']} "
                 f"alpha={chosen['alpha']} (grid + final fit {seconds:.1f} s)"))

    print(f"MovieLens 100K, seeded random 80/20 split, {len(users)} test users, full ranking "
          "over unseen items")
    print(f"{'model':<22}{'NDCG@10':>9}{'Recall@10':>11}{'published':>11}  chosen on validation")
    for name, metrics, note in rows:
        print(f"{name:<22}{metrics['ndcg@10']:>9.4f}{metrics['recall@10']:>11.4f}"
              f"{PUBLISHED[name]:>11.4f}  {note}")


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def speed(ml: Path) -> None:
    from hybridrec.data.synthetic import SyntheticConfig, generate

    print(f"\nspeed: implicit threads={cpu_threads()}, BLAS threads=1, CPU")
    print(f"{'dataset':<34}{'events':>11}{'pairs':>10}{'fit s':>8}{'score 500 ms':>14}"
          f"{'top-100 ms':>12}")
    data = movielens.load(ml)
    cases = [("MovieLens 100K", TrainingData(events=data.events, items=data.items,
                                             users=data.users, scenarios={"movies": MOVIES}),
              "movies")]
    world = generate(SyntheticConfig(users=10_000, items=3_000, ads=10, events=1_260_000))
    keep = world.events[C.SCENARIO].isin(["shop", "video"])
    cases.append(("synthetic shop+video (10k users)", TrainingData(
        events=world.events[keep], items=world.items, users=world.users,
        scenarios={"shop": SHOP, "video": VIDEO}), "shop"))
    rng = np.random.default_rng(0)
    for label, td, scenario in cases:
        als = AlsScorer(device="cpu", tune=False, random_state=0)
        start = time.perf_counter()
        als.fit(td)
        fit_s = time.perf_counter() - start
        model = als.models[scenario]
        user = model.user_ids[0]
        sc = td.scenarios[scenario]
        batch = ScoreBatch.one(sc, user, rng.choice(model.item_ids, 500, replace=False))
        request = RetrievalBatch.one(sc, user)
        score_ms = timed(lambda a=als, b=batch: a.score(b), 200) * 1000
        top_ms = timed(lambda a=als, r=request: a.retrieve(r, 100), 200) * 1000
        pairs = int(sum(m.user_items.nnz for m in als.models.values()))
        print(f"{label:<34}{len(td.events):>11,}{pairs:>10,}{fit_s:>8.2f}{score_ms:>14.3f}"
              f"{top_ms:>12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="hybridrec-als benchmarks")
    parser.add_argument("--ml", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not (args.ml / "u.data").exists():
        raise SystemExit(f"MovieLens 100K not found at {args.ml}")
    quality(args.ml)
    if not args.skip_speed:
        speed(args.ml)
    print(f"\ncommand: OPENBLAS_NUM_THREADS=1 {Path(sys.executable).name} "
          f"benchmarks/als.py {' '.join(sys.argv[1:])}".rstrip())


if __name__ == "__main__":
    main()
