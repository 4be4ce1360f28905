"""EASE's cost: fitting one penalty (XᵀX, then the inverse) and its peak memory, at a given
number of items, on a synthetic matrix of 20,000 users with 100 Zipf-distributed items each;
and scoring one request of 500 candidates for profiles of several sizes.

    .venv/bin/python benchmarks/ease.py [--items 5000] [--users 20000]
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ease.py     # one BLAS thread
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import timeit
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from hybridrec.builtin.ease import ScenarioModel, gram, item_weights
from hybridrec.builtin.scenarios import SHOP
from hybridrec.contracts import ScoreBatch


def main() -> None:
    parser = argparse.ArgumentParser(description="EASE fit and scoring cost")
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cols = rng.zipf(1.3, size=args.users * 100) % args.items
    rows = np.repeat(np.arange(args.users), 100)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                           shape=(args.users, args.items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    start = time.perf_counter()
    xtx = gram(matrix)
    gram_s = time.perf_counter() - start
    start = time.perf_counter()
    weights = item_weights(xtx, 400.0)
    fit_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.items} items, {args.users} users, {matrix.nnz:,} pairs: XᵀX {gram_s:.2f} s, "
          f"one penalty {fit_s:.2f} s, peak memory {peak:,.0f} MB, weights "
          f"{weights.nbytes / 1e6:,.0f} MB")
    items = np.array([f"i{j}" for j in range(args.items)])
    model = ScenarioModel(np.array(["nobody"]), items, sp.csr_matrix((1, args.items)),
                          weights, {"lam": 400.0})
    from hybridrec.builtin.ease import EaseScorer

    scorer = EaseScorer(lam=400.0)
    scorer.models["shop"] = model
    for size in (20, 100, 700):
        batch = ScoreBatch.one(SHOP, "someone", rng.choice(items, 500, replace=False),
                               history=rng.choice(items, size, replace=False))
        times = timeit.repeat(lambda b=batch: scorer.score(b), number=1, repeat=200)
        print(f"score 500 candidates, profile of {size} items: "
              f"{np.median(times) * 1000:.3f} ms (median of 200)")
    print(f"\ncommand: {Path(sys.executable).name} benchmarks/ease.py "
          f"{' '.join(sys.argv[1:])}".rstrip())


if __name__ == "__main__":
    main()
