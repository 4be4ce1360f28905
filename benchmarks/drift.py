"""Drift: does the adaptive blend follow when what works changes?

Protocol. A small synthetic world is generated, applied, materialised and trained in a
temporary workspace (the llm scorer small, as in the tests), with the video scenario set to
``exploration = 0.2`` and ``adaptation_window = 400`` lists. ``hybridrec serve`` runs on
127.0.0.1. Simulated users (``hybridrec.simulation``) of the scenario's most common activity
bucket request 5 items and like a shown item with probability 0.5 if it is among the
``--liked`` (5) items the *informative* scorer output ranks highest for them (computed once
from the bundle), else 0.02; their likes go back as feedback. For the first ``--before``
requests the informative output is ``--from`` (ALS by default), then, for ``--after``
requests, ``--to`` (the llm scorer's click head by default).

Reported per phase: the mean value (probability of at least one like) of the lists served,
of the lists the fixed offline weights would have shown, and of the best arm's list for
each request (the oracle; every arm's list is read from the server's logged decision);
cumulative regret against the oracle for the adaptive policy and for fixed weights, and the
adaptive policy's gain over fixed weights; the arms served; each arm's mean list value; and
how many feedback events after the switch it took until the policy's greedy arm for that
bucket was the best arm of the new phase (in hindsight).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/drift.py [--before 600] [--after 1500]
        [--from als.click] [--to llm.click] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("FEAST_USAGE", "False")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORLD = ["--users", "400", "--items", "150", "--ads", "30", "--events", "30000", "--weeks",
         "4", "--seed", "11", "--end", "2025-03-31T00:00:00Z"]
CONFIG = """[scenarios.video]
exploration = 0.2
adaptation_window = 400
"""
SMALL_LLM = """[llm]
dim = 32
hidden = 64
history_length = 20
epochs = 4
patience = 2
"""


def build(root: Path) -> tuple[Path, dict[str, str]]:
    """A trained workspace under ``root``; returns its feature repo and environment."""
    repo = root / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    config = root / "hybridrec.toml"
    small = SMALL_LLM if importlib.util.find_spec("hybridrec_llm") else ""
    config.write_text(small + CONFIG)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")},
           "HYBRIDREC_FEATURE_REPO": str(repo), "HYBRIDREC_BUNDLES": str(root / "bundles"),
           "HYBRIDREC_CONFIG": str(config), "FEAST_USAGE": "False"}
    hybridrec = str(BIN / "hybridrec")
    for cmd, cwd in (([hybridrec, "data", "synthetic", *WORLD], root),
                     ([str(BIN / "feast"), "apply"], repo),
                     ([hybridrec, "materialize"], root),
                     ([hybridrec, "train", "--quiet"], root)):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
        print(f"  {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:3]))}"
              f" ({time.perf_counter() - start:.0f} s)", flush=True)
    return repo, env


def serve(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(BIN / "hybridrec"), "serve", "--port", str(port)],
                              cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                if r.status == 200:
                    return server, port
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not become ready in 180 s")


def table(result: dict) -> str:
    lines = ["| phase | informative | requests | served | fixed weights | oracle | "
             "regret adaptive | regret fixed | adaptive - fixed | arms served (last "
             "quarter) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, phase in zip(("before", "after"), result["phases"], strict=True):
        arms = ", ".join(f"{a} {c}" for a, c in sorted(phase["arms_last_quarter"].items()))
        lines.append(f"| {name} | {phase['informative']} | {phase['requests']} | "
                     f"{phase['served']:.3f} | {phase['fixed']:.3f} | {phase['oracle']:.3f} | "
                     f"{phase['regret_adaptive']:.1f} | {phase['regret_fixed']:.1f} | "
                     f"{phase['adaptive_minus_fixed']:+.1f} | {arms} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, default=600)
    parser.add_argument("--after", type=int, default=1500)
    parser.add_argument("--from", dest="source", default="als.click")
    parser.add_argument("--to", dest="target", default=None,
                        help="default: llm.click when hybridrec-llm is installed, else "
                             "popularity.click")
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--liked", type=int, default=5,
                        help="items a user likes per informative output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 1 <= args.before <= 20_000 or not 1 <= args.after <= 20_000:
        parser.error("--before and --after must be between 1 and 20000 requests")
    target = args.target or ("llm.click" if importlib.util.find_spec("hybridrec_llm")
                             else "popularity.click")

    from hybridrec.feedback import open_feedback
    from hybridrec.simulation import Replay, Truth, active_users, drift
    from hybridrec.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="hybridrec-drift-") as tmp:
        root = Path(tmp)
        print("building the world:", flush=True)
        start = time.perf_counter()
        repo, env = build(root)
        ws = Workspace(feature_repo=repo, bundles=root / "bundles")
        activity, users = active_users(ws, "video", args.users, args.seed)
        truth = Truth.from_workspace(ws, "video", users, [args.source, target], args.liked)
        print(f"  ready in {time.perf_counter() - start:.0f} s; {len(users)} {activity} "
              f"users", flush=True)
        server, port = serve(root, env)
        try:
            log = open_feedback(ws, create=False)
            assert log is not None, "the server opened no feedback log"
            replay = Replay("127.0.0.1", port, log, truth, users, seed=args.seed)
            start = time.perf_counter()
            result = drift(replay, args.source, target, (args.before, args.after), activity)
            seconds = time.perf_counter() - start
            replay.close()
            log.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    for phase, informative in zip(result["phases"], (args.source, target), strict=True):
        phase["informative"] = informative
    result.update(activity=activity, users=len(users), seconds=round(seconds, 1))
    print()
    print(table(result))
    followed, best = result["followed_after_events"], result["phases"][1]["best_arm"]
    values = ", ".join(f"{a} {v:.3f}" for a, v in result["phases"][1]["arm_values"].items())
    print(f"\nafter the switch, each arm's mean list value: {values}")
    print(f"the greedy arm for {activity} users became the best one ({best}) after "
          f"{followed} feedback events" if followed is not None else
          f"the greedy arm never became the best one ({best}) in "
          f"{result['events_after_switch']} events; it ends at {result['greedy_at_end']}")
    print(f"{sum(p['requests'] for p in result['phases'])} requests in {seconds:.0f} s")
    print("\n$ OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/drift.py "
          + shlex.join(sys.argv[1:]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
