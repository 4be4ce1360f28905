"""Request latency of `hybridrec serve` over loopback, per scenario.

Starts the server on 127.0.0.1 for the current workspace (run `make demo` or `hybridrec train`
first), sends a bounded number of sequential requests per scenario over one keep-alive
connection, prints p50/p95/p99 and the rate, and stops the server.

    .venv/bin/python benchmarks/serve_latency.py [--requests 300] [--k 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per scenario (max 5000)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per scenario")
    args = parser.parse_args()
    n = min(args.requests, 5000)
    if not (ROOT / "bundles" / "current").exists():
        raise SystemExit("no trained bundle in ./bundles: run 'make demo' first")
    users = pd.read_parquet(ROOT / "feature_repo" / "data" / "users.parquet")["user_id"].tolist()
    port = free_port()
    server = subprocess.Popen([str(BIN / "hybridrec"), "serve", "--port", str(port),
                               "--log-level", "warning"], cwd=ROOT)
    try:
        conn = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/readyz")
                response = conn.getresponse()
                body = json.loads(response.read())
                if response.status == 200:
                    break
            except OSError:
                time.sleep(0.5)
                continue
            time.sleep(0.5)
        else:
            raise SystemExit("server not ready in 180 s")
        scenarios = body["scenarios"]
        rng = random.Random(0)
        print(f"bundle {body['bundle_version']}, {n} sequential requests per scenario, "
              f"k={args.k}, one keep-alive connection on 127.0.0.1")
        print(f"{'scenario':<10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}")
        for scenario in scenarios:
            times = []
            stop = time.monotonic() + args.timeout
            for _ in range(n):
                if time.monotonic() > stop:
                    break
                body = json.dumps({"user_id": rng.choice(users), "scenario": scenario,
                                   "k": args.k})
                start = time.perf_counter()
                conn.request("POST", "/v1/recommend", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                times.append(time.perf_counter() - start)
                if response.status != 200:
                    raise SystemExit(f"{scenario}: HTTP {response.status}")
            ms = np.array(times) * 1000
            print(f"{scenario:<10}{np.percentile(ms, 50):>9.2f}{np.percentile(ms, 95):>9.2f}"
                  f"{np.percentile(ms, 99):>9.2f}{len(ms) / (ms.sum() / 1000):>9.0f}")
        print(f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
