"""The learned blend against its parts, through the product's own training and evaluation.

MovieLens 100K (``--data movielens``): the ALS benchmark's protocol, a seeded random 80/20
split of all ratings (``hybridrec train --split random --test-fraction 0.2``), full ranking
of every item the user has not rated in training (the ``movies`` scenario with
``n_candidates`` above the catalogue's size). In one run: every scorer alone, the ``weighted``
blend (equal weights) and the ``learned`` blend, each metric a mean over the test users with
a 95 % bootstrap interval, and the blend's paired difference from the best single scorer.
The run is a full ``hybridrec train`` (the blend slice, the blender, evaluation, the refit on
everything and the bundle), so its wall time is the full pipeline's training time.

The default synthetic world (``--data synthetic``): the same on every scenario's objective,
with the default temporal split.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/blend.py --data movielens [--ml PATH]
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/blend.py --data synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("FEAST_USAGE", "False")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def workspace(folder: Path, data: list[str]) -> None:
    """A feature repo in ``folder`` with the given ``hybridrec data`` command's tables, applied
    and materialised."""
    repo = folder / "feature_repo"
    repo.mkdir(parents=True)
    for name in ("definitions.py", "feature_store.yaml"):
        shutil.copy(ROOT / "feature_repo" / name, repo / name)
    env = {**os.environ, "HYBRIDREC_FEATURE_REPO": str(repo),
           "HYBRIDREC_BUNDLES": str(folder / "bundles")}
    for cmd, cwd in ((["hybridrec", "data", *data], folder), (["feast", "apply"], repo),
                     (["hybridrec", "materialize"], folder)):
        subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    os.environ.update({k: env[k] for k in ("HYBRIDREC_FEATURE_REPO", "HYBRIDREC_BUNDLES")})


def cell(row: dict[str, float], metric: str) -> str:
    return (f"{row[metric]:.4f} [{row.get(metric + ' lo', float('nan')):.4f}, "
            f"{row.get(metric + ' hi', float('nan')):.4f}]")


def show(result, k: int = 10) -> None:
    metrics = result.metrics
    for scenario, per in metrics.items():
        objective = f"objective@{k}"
        print(f"\n{scenario}: {int(next(iter(per.values()))['users'])} test users")
        print(f"  {'ranker':<18} {'ndcg@10':>26} {'recall@10':>10} {objective:>26}")
        for ranker, row in per.items():
            print(f"  {ranker:<18} {cell(row, f'ndcg@{k}'):>26} {row[f'recall@{k}']:>10.4f} "
                  f"{cell(row, objective):>26}")
        c = result.evaluation.comparison.get(scenario)
        if c:
            print(f"  blend - best single ({c['best_single']}) on {c['metric']}: "
                  f"{c['difference']:+.4f} [95% {c['difference lo']:+.4f}, "
                  f"{c['difference hi']:+.4f}]")
        buckets = result.evaluation.buckets.get(scenario, {})
        for bucket, rows in buckets.items():
            cells = ", ".join(f"{r} {v[objective]:.4f}" for r, v in rows.items())
            print(f"  {bucket} ({int(next(iter(rows.values()))['users'])} users): {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=["movielens", "synthetic"], default="movielens")
    parser.add_argument("--ml", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    parser.add_argument("--report", type=Path, default=None,
                        help="Write the evaluation report here too.")
    args = parser.parse_args()
    from hybridrec import training
    from hybridrec.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.data == "movielens":
            if not (args.ml / "u.data").exists():
                raise SystemExit(f"MovieLens 100K not found at {args.ml}")
            workspace(folder, ["movielens", str(args.ml)])
            options = {"split": "random", "test_fraction": 0.2,
                       "config": {"scenarios": {"movies": {"n_candidates": 5000}}}}
            command = "benchmarks/blend.py --data movielens"
        else:
            workspace(folder, ["synthetic", "--end", "2026-11-01T00:00:00"])
            options = {}
            command = "benchmarks/blend.py --data synthetic"
        started = time.perf_counter()
        result = training.run(Workspace.from_env(), progress=False, baselines=("weighted",),
                              report=args.report, **options)
        seconds = time.perf_counter() - started
        manifest = json.loads((result.path / "manifest.json").read_text())
    print(f"\n{args.data}: {options.get('split', 'temporal')} split; command: "
          f"OPENBLAS_NUM_THREADS=1 .venv/bin/python {command}")
    show(result)
    print(f"\nfull pipeline (blend slice, blender, evaluation, refit, bundle): {seconds:.0f} s "
          f"on {os.cpu_count()} cores; fit seconds of the final bundle: "
          + ", ".join(f"{c['names'][0]} {c.get('fit_seconds') or 0:.1f}"
                      for c in manifest.get("components", [])))
    print(f"learned blender: {json.dumps(manifest['blenders']['learned']['params']['fit'])}")


if __name__ == "__main__":
    main()
