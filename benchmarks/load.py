"""Load benchmark of ``hybridrec serve``: ``POST /v1/recommend`` driven by wrk over loopback.

On the current workspace (run ``make demo`` or ``hybridrec train`` first) it measures, per
scenario, with 500 candidates (a scenario's whole catalogue where it has fewer) and k = 10,
each request for another real user (``users.parquet``) and another draw of candidates from
the scenario's items (``items.parquet``, those the bundle was trained with):

* concurrency 1 against 1 worker: p50/p95/p99 latency and requests/s;
* concurrency 16 against 2 workers: the same;
* side by side, the same for a plain FastAPI endpoint that returns a fixed list
  (``benchmarks/plain_app.py``) under the same uvicorn, so that the framework's own cost per
  request shows as a ratio;
* start-up time to ready (process start to the first ``/readyz`` 200, and to a 200 from
  every worker) for 1 and 2 workers, and how long ``import feast`` alone takes.

Each scenario is measured ``--rounds`` times, the scenarios in turn, and the tables show the
median run with the lowest and highest figure over the runs: on a shared machine one run can
be half as fast as the next with the same code. The budget is checked on the median
runs and, separately, on every run.

Every run counts answers outside 2xx, socket errors and timeouts, and the answers marked
``degraded`` (a scorer or the features left out); one answer per scenario is checked (k
items, all of them among the candidates). The server listens on 127.0.0.1
only and serves a copy of the workspace in a temporary directory (the benchmark's requests
are logged as served rows and count in the adaptive state; ``--in-place`` serves the
workspace itself). Each wrk run is bounded in time (``--warmup`` or ``--duration``
seconds), each request by ``--timeout``. Prints Markdown tables and the exact command, and
exits 1 if an answer was outside 2xx or wrong, or a socket error or timeout occurred.

    .venv/bin/python benchmarks/load.py [--rounds 3] [--duration 5] [--scenario shop ...]

Needs wrk, the HTTP load generator (Debian: ``apt-get install wrk``; run as root, the
script installs it with apt-get when it is missing).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LUA = HERE / "load_recommend.lua"
MARK = "LOAD_RESULT "
ENV_REPO, ENV_BUNDLES = "HYBRIDREC_FEATURE_REPO", "HYBRIDREC_BUNDLES"
#: The budget of the serving issue: p50 and p99 at concurrency 1, requests/s at the higher.
BUDGET = {"p50_ms": 5.0, "p99_ms": 15.0, "rps": 300.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5,
                        help="seconds of each measured run (1 to 120)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measured runs per scenario and setting, the scenarios in turn; "
                        "the tables show their median and spread (1 to 20)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="seconds of load per scenario before its measured runs, not "
                        "counted (0 to 30)")
    parser.add_argument("--timeout", type=int, default=2, help="seconds before wrk counts a "
                        "request as timed out")
    parser.add_argument("--scenario", action="append", default=None,
                        help="repeatable; default: every scenario of the bundle")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--bodies", type=int, default=400,
                        help="distinct request bodies (users) per scenario, cycled")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections of the throughput setting")
    parser.add_argument("--workers", type=int, default=2,
                        help="server workers of the throughput setting")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk's threads (one leaves the most CPU to the server)")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument("--import-repeats", type=int, default=3,
                        help="fresh interpreters timing 'import feast' (median)")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the plain FastAPI reference")
    parser.add_argument("--in-place", action="store_true",
                        help="serve the workspace itself, not a temporary copy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.duration <= 120 or not 0 <= args.warmup <= 30:
        parser.error("--duration must be 1 to 120 seconds and --warmup 0 to 30")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1 to 20")
    if min(args.candidates, args.k, args.bodies, args.concurrency, args.workers,
           args.wrk_threads, args.timeout) < 1:
        parser.error("counts and --timeout must be at least 1")
    return args


def find_wrk() -> str:
    """wrk's path; installed with apt-get (as root, on Debian or Ubuntu) when missing."""
    found = shutil.which("wrk")
    apt = shutil.which("apt-get")
    if found is None and apt is not None and os.geteuid() == 0:
        print("wrk is not installed: installing the Debian package with apt-get", flush=True)
        subprocess.run([apt, "update", "-qq"], check=False)
        subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("this benchmark drives the server with wrk, which is not installed; "
                         "install it (Debian or Ubuntu: 'sudo apt-get install -y wrk') and "
                         "run it again")
    return found


def workspace(in_place: bool, scratch: Path) -> tuple[Path, Path]:
    """The feature repository and bundles to serve: the workspace's (``HYBRIDREC_*`` or
    ./feature_repo and ./bundles), or a copy of them and of the current bundle."""
    repo = Path(os.environ.get(ENV_REPO) or ROOT / "feature_repo").resolve()
    bundles = Path(os.environ.get(ENV_BUNDLES) or ROOT / "bundles").resolve()
    if not (bundles / "current" / "manifest.json").is_file():
        raise SystemExit(f"no trained bundle in {bundles}: run 'make demo' or "
                         "'hybridrec train' first")
    if in_place:
        return repo, bundles
    copy = scratch / "feature_repo"
    shutil.copytree(repo, copy, symlinks=True,
                    ignore=shutil.ignore_patterns("feedback.db*", "__pycache__"))
    log = repo / "data" / "feedback.db"
    if log.is_file():  # a consistent copy even while a server writes to it
        with sqlite3.connect(log) as source, sqlite3.connect(copy / "data" / log.name) as to:
            source.backup(to)
    target = (bundles / "current").resolve()
    shutil.copytree(target, scratch / "bundles" / target.name)
    (scratch / "bundles" / "current").symlink_to(target.name)
    return copy, scratch / "bundles"


def write_bodies(repo: Path, bundles: Path, args: argparse.Namespace, scratch: Path
                 ) -> dict[str, tuple[Path, int]]:
    """Per scenario, a file of request bodies (one JSON a line) and its candidate count."""
    import numpy as np
    import pandas as pd

    manifest = json.loads((bundles / "current" / "manifest.json").read_text())
    scenarios = args.scenario or sorted(manifest["scenarios"])
    unknown = sorted(set(scenarios) - set(manifest["scenarios"]))
    if unknown:
        raise SystemExit(f"the bundle has no scenario {', '.join(unknown)}; it has "
                         f"{', '.join(sorted(manifest['scenarios']))}")
    items = pd.read_parquet(repo / "data" / "items.parquet", columns=["item_id", "scenario"])
    # items created since training join the catalogue at the server's first refresh only
    trained = pd.read_parquet(bundles / "current" / "catalogue.parquet")
    items = items.merge(trained[["item_id", "scenario"]], on=["item_id", "scenario"])
    users = pd.read_parquet(repo / "data" / "users.parquet", columns=["user_id"])
    user_ids = np.sort(users["user_id"].astype(str).unique())
    out = {}
    for n, scenario in enumerate(scenarios):
        ids = np.sort(items.loc[items["scenario"] == scenario, "item_id"].astype(str).unique())
        if not len(ids):
            raise SystemExit(f"items.parquet has no trained items of scenario {scenario!r}")
        rng = np.random.default_rng([args.seed, n])
        size = min(args.candidates, len(ids))
        chosen = rng.permutation(user_ids)
        lines = []
        for i in range(args.bodies):
            body = {"user_id": str(chosen[i % len(chosen)]), "scenario": scenario,
                    "k": args.k, "candidates": rng.choice(ids, size, replace=False).tolist()}
            lines.append(json.dumps(body, separators=(",", ":")))
        path = scratch / f"bodies-{scenario}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        out[scenario] = (path, size)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(port: int, method: str, path: str, body: str | None = None,
         timeout: float = 30.0) -> tuple[int | None, Any]:
    """One request on a new connection: (status, parsed JSON), (None, None) when refused."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    except OSError:
        return None, None
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``uptime``), as noted with each run."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Server:
    label: str
    command: list[str]
    workers: int
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.started = time.monotonic()
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env}, cwd=self.log.parent,
                                            start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, timeout: float) -> tuple[float, float]:
        """Seconds from start to the first ``/readyz`` 200, and to one from every worker
        (each poll opens a new connection, which any worker may accept)."""
        assert self.process is not None
        first, seen = None, set()
        while time.monotonic() - self.started < timeout:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{self.label} exited with {self.process.returncode} before "
                                 f"it was ready:\n{tail}")
            status, answer = call(self.port, "GET", "/readyz", timeout=5)
            if status == 200 and isinstance(answer, dict):
                now = time.monotonic() - self.started
                first = now if first is None else first
                seen.add(answer.get("worker"))
                if len(seen) >= self.workers:
                    return first, now
            time.sleep(0.02)
        raise SystemExit(f"{self.label} was not ready within {timeout:.0f} s; log: {self.log}")

    def stop(self) -> None:
        """SIGTERM (uvicorn stops its workers), SIGKILL to the group after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) used so far by a process and its descendants (the
    server's workers): a cost per request that other work on the machine hardly moves."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, used = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2:].split()  # from field 3 (state) on
        parent[int(stat.parent.name)] = int(fields[1])
        used[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, grown = {pid}, True
    while grown:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree, grown = tree | more, bool(more)
    return sum(used.get(p, 0.0) for p in tree)


def run_wrk(wrk: str, port: int, bodies: Path, connections: int, args: argparse.Namespace,
            seconds: int, server_pid: int) -> dict[str, Any]:
    """One wrk run, bounded in time: its counts and percentiles (ms), requests/s, the
    server's CPU time per request and the load average before it."""
    threads = min(args.wrk_threads, connections)
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
               f"--timeout={args.timeout}s", "-s", str(LUA),
               f"http://127.0.0.1:{port}/v1/recommend", "--", str(bodies)]
    load, cpu = load_average(), cpu_seconds(server_pid)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    cpu = cpu_seconds(server_pid) - cpu
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[len(MARK):])
    result["rps"] = result["requests"] / max(result["duration_us"] / 1e6, 1e-9)
    for p in ("50", "90", "95", "99", "99.9"):
        result[f"p{p}_ms"] = result[f"p{p}_us"] / 1000.0
    result["socket_errors"] = sum(result[f"{k}_errors"] for k in ("connect", "read", "write"))
    result["cpu_ms"] = 1000.0 * cpu / max(result["requests"], 1)
    result["load"], result["command"] = load, shlex.join(command)
    return result


def check_answer(port: int, bodies: Path, k: int) -> list[str]:
    """Problems with the answer to the file's first body (empty when it is right)."""
    body = bodies.read_text().split("\n", 1)[0]
    sent = json.loads(body)
    status, answer = call(port, "POST", "/v1/recommend", body)
    if status != 200 or not isinstance(answer, dict):
        return [f"{sent['scenario']}: HTTP {status}: {str(answer)[:300]}"]
    problems = []
    ids = [item.get("item_id") for item in answer.get("items", [])]
    if len(ids) != min(k, len(sent["candidates"])):
        problems.append(f"{sent['scenario']}: {len(ids)} items for k = {k}")
    if set(ids) - set(sent["candidates"]):
        problems.append(f"{sent['scenario']}: items that are not candidates")
    if answer.get("unknown_candidates"):
        problems.append(f"{sent['scenario']}: candidates reported unknown")
    return problems


def measure(server: Server, wrk: str, bodies: dict[str, tuple[Path, int]], connections: int,
            args: argparse.Namespace, check: bool) -> dict[str, Any]:
    """Start ``server``, time it to ready, warm each scenario up, then measure the scenarios
    in turn ``--rounds`` times (interleaved, so that a slow spell of the machine touches every
    scenario alike) and keep each scenario's median run; stop."""
    print(f"  {server.label}: {server.workers} worker(s), {connections} connection(s) "
          f"(load {load_average()})", flush=True)
    server.start()
    try:
        first, every = server.wait_ready(args.ready_timeout)
        rounds: dict[str, list[dict[str, Any]]] = {scenario: [] for scenario in bodies}
        problems = []
        for scenario, (path, _) in bodies.items():
            if args.warmup:
                warm = run_wrk(wrk, server.port, path, connections, args, args.warmup,
                               server.pid)
                if warm["non2xx"]:
                    problems.append(f"{scenario} warm-up: {warm['non2xx']} answers outside "
                                    f"2xx, first: {warm['first_non2xx']}")
            if check:
                problems += check_answer(server.port, path, args.k)
        for number in range(1, args.rounds + 1):
            for scenario, (path, _) in bodies.items():
                run = run_wrk(wrk, server.port, path, connections, args, args.duration,
                              server.pid)
                rounds[scenario].append(run)
                print(f"    {scenario} round {number}: p50 {run['p50_ms']:.2f} ms, p99 "
                      f"{run['p99_ms']:.2f} ms, {run['rps']:.0f} req/s, CPU "
                      f"{run['cpu_ms']:.2f} ms/req, non-2xx {run['non2xx']}, degraded "
                      f"{run['degraded']}, socket errors {run['socket_errors']}, timeouts "
                      f"{run['timeouts']} (load {run['load']})", flush=True)
                if run["non2xx"] or run["socket_errors"] or run["timeouts"]:
                    problems.append(f"{scenario} round {number}: {run['non2xx']} non-2xx "
                                    f"(first: {run['first_non2xx'] or '-'}), "
                                    f"{run['socket_errors']} socket errors, "
                                    f"{run['timeouts']} timeouts")
    finally:
        server.stop()
    return {"ready": (first, every), "problems": problems,
            "runs": {scenario: median_run(runs) for scenario, runs in rounds.items()}}


#: The figures of a run that ``median_run`` takes the median of (the rest are summed).
MEDIANS = ("p50_ms", "p95_ms", "p99_ms", "rps", "cpu_ms")
COUNTS = ("requests", "non2xx", "degraded", "socket_errors", "timeouts")


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one scenario as one: the median of each figure, its lowest and
    highest (``spread``), the counts summed, the first run's load and command."""
    out = dict(runs[0])
    for key in MEDIANS:
        values = [r[key] for r in runs]
        out[key], out[f"{key}_spread"] = statistics.median(values), (min(values), max(values))
    for key in COUNTS:
        out[key] = sum(r[key] for r in runs)
    out["rounds"] = len(runs)
    return out


def import_seconds(module: str, repeats: int, after: str = "") -> float:
    """Median seconds ``import module`` takes in a fresh interpreter (once ``after`` is
    imported, untimed)."""
    code = (f"{f'import {after}; ' if after else ''}import time; t = time.perf_counter(); "
            f"import {module}; print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True, env={**os.environ, "FEAST_USAGE": "False"}
                                  ).stdout.strip().splitlines()[-1])
             for _ in range(max(repeats, 1))]
    return statistics.median(times)


def servers(repo: Path, bundles: Path, scratch: Path, workers: int, plain: bool
            ) -> list[Server]:
    """The hybridrec server and (with ``plain``) the reference app, both on new ports."""
    port = free_port()
    out = [Server("hybridrec serve", [
        str(BIN / "hybridrec"), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning", "--cpu-affinity", "auto"],
        workers, port,
        scratch / f"hybridrec-{workers}.log",
        {ENV_REPO: str(repo), ENV_BUNDLES: str(bundles), "FEAST_USAGE": "False"})]
    if plain:
        port = free_port()
        out.append(Server("plain FastAPI", [
            str(BIN / "uvicorn"), "plain_app:app", "--app-dir", str(HERE), "--host",
            "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level",
            "warning"], workers, port, scratch / f"plain-{workers}.log"))
    return out


def ms(value: float) -> str:
    return f"{value:.2f}"


def spread(run: dict[str, Any], key: str, shown: Any = ms) -> str:
    """A figure of a median run with its lowest and highest over the rounds."""
    low, high = run.get(f"{key}_spread", (run[key], run[key]))
    if run.get("rounds", 1) < 2:
        return shown(run[key])
    return f"{shown(run[key])} ({shown(low)}-{shown(high)})"


def whole(value: float) -> str:
    return f"{value:.0f}"


def ratio(ours: float, plain: float | None) -> str:
    return f"{ours / plain:.1f}x" if plain else "-"


def tables(settings: list[dict[str, Any]], bodies: dict[str, tuple[Path, int]],
           feast_import: tuple[float, float]) -> str:
    """The Markdown report: one table per setting, then start-up."""
    lines = []
    for s in settings:
        ours, plain = s["hybridrec serve"], s.get("plain FastAPI")
        lines += ["", f"**{s['connections']} connection(s), {s['workers']} worker(s)**: "
                      f"{s['rounds']} runs of {s['duration']} s per scenario, the scenarios "
                      f"in turn, after {s['warmup']} s of warm-up each; the median run, "
                      "(lowest-highest) over the runs, and the counts summed; ratios are "
                      "hybridrec over plain", "",
                  "| scenario | candidates | p50 ms | p95 ms | p99 ms | req/s | CPU ms/req | "
                  "non-2xx | degraded | socket errors / timeouts | plain p50 ms | plain p99 ms "
                  "| plain req/s | plain CPU ms/req | p50 ratio | CPU ratio | load 1/5/15 min |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                  "| ---: | ---: | ---: | ---: | ---: | --- |"]
        for scenario, (_, size) in bodies.items():
            r = ours["runs"][scenario]
            p = plain["runs"][scenario] if plain else None
            reference = (f"{ms(p['p50_ms'])} | {ms(p['p99_ms'])} | {p['rps']:.0f} | "
                         f"{ms(p['cpu_ms'])} | {ratio(r['p50_ms'], p['p50_ms'])} | "
                         f"{ratio(r['cpu_ms'], p['cpu_ms'])}") if p else "- | - | - | - | - | -"
            lines.append(
                f"| {scenario} | {size} | {spread(r, 'p50_ms')} | {ms(r['p95_ms'])} | "
                f"{spread(r, 'p99_ms')} | {spread(r, 'rps', whole)} | {spread(r, 'cpu_ms')} | "
                f"{r['non2xx']} | "
                f"{r['degraded']} | {r['socket_errors']} / {r['timeouts']} | {reference} | "
                f"{r['load']} |")
    lines += ["", "| start-up to ready (s) | workers | first /readyz 200 | every worker "
                  "ready |", "| --- | ---: | ---: | ---: |"]
    for s in settings:
        for label in ("hybridrec serve", "plain FastAPI"):
            if label in s:
                first, every = s[label]["ready"]
                lines.append(f"| {label} | {s['workers']} | {first:.1f} | {every:.1f} |")
    lines.append(f"| `import feast` alone, median of fresh interpreters (after `import "
                 f"hybridrec`, as the server does: without torch) | - | {feast_import[0]:.1f} "
                 f"({feast_import[1]:.1f}) | - |")
    return "\n".join(lines)


def verdict(settings: list[dict[str, Any]], worst: bool = False) -> str:
    """Whether the figures meet the budget (p50 and p99 at concurrency 1, req/s above): the
    median runs', or with ``worst`` every run's."""
    def figure(run: dict[str, Any], key: str, high: bool) -> float:
        if not worst:
            return float(run[key])
        low_, high_ = run.get(f"{key}_spread", (run[key], run[key]))
        return float(high_ if high else low_)

    low = min(settings, key=lambda s: s["connections"])["hybridrec serve"]["runs"]
    high = max(settings, key=lambda s: s["connections"])["hybridrec serve"]["runs"]
    misses = [f"{name} p50 {figure(r, 'p50_ms', True):.2f} ms" for name, r in low.items()
              if figure(r, "p50_ms", True) > BUDGET["p50_ms"]]
    misses += [f"{name} p99 {figure(r, 'p99_ms', True):.2f} ms" for name, r in low.items()
               if figure(r, "p99_ms", True) > BUDGET["p99_ms"]]
    misses += [f"{name} {figure(r, 'rps', False):.0f} req/s" for name, r in high.items()
               if figure(r, "rps", False) < BUDGET["rps"]]
    budget = (f"p50 <= {BUDGET['p50_ms']:g} ms and p99 <= {BUDGET['p99_ms']:g} ms at the "
              f"lower concurrency, >= {BUDGET['rps']:g} req/s at the higher")
    which = "every run" if worst else "median runs"
    return (f"budget ({budget}), {which}: "
            + ("met" if not misses else "missed: " + ", ".join(misses)))


def main() -> None:
    args = parse_args()
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="hybridrec-load-") as tmp:
        scratch = Path(tmp)
        repo, bundles = workspace(args.in_place, scratch)
        bodies = write_bodies(repo, bundles, args, scratch)
        print(f"load before: {load_average()}; timing 'import feast'", flush=True)
        feast_import = (import_seconds("feast", args.import_repeats),
                        import_seconds("feast", args.import_repeats, after="hybridrec"))
        settings, problems = [], []
        for workers, connections in ((1, 1), (args.workers, args.concurrency)):
            setting: dict[str, Any] = {"workers": workers, "connections": connections,
                                       "duration": args.duration, "warmup": args.warmup,
                                       "rounds": args.rounds}
            for server in servers(repo, bundles, scratch, workers, not args.no_plain):
                checked = server.label == "hybridrec serve"
                result = setting[server.label] = measure(server, wrk, bodies, connections,
                                                         args, checked)
                problems += [f"{server.label}, {connections} connection(s): {p}"
                             for p in result["problems"]]
            settings.append(setting)
        print(tables(settings, bodies, feast_import))
        print(f"\n{verdict(settings)}\n{verdict(settings, worst=True)}")
        wrk_example = next(iter(settings[-1]["hybridrec serve"]["runs"].values()))["command"]
        print(f"\ncommand: {shlex.join([_shown(Path(sys.executable)), *sys.argv])}\n"
              f"each run: {wrk_example} (a temporary file of {args.bodies} bodies per "
              "scenario)\nservers: hybridrec serve --host 127.0.0.1 --port P --workers N "
              "--log-level warning --cpu-affinity auto; uvicorn plain_app:app --app-dir "
              "benchmarks, the same options but the last\n"
              f"bundle {(bundles / 'current').resolve().name}, {os.cpu_count()} CPUs, "
              f"load after: {load_average()}")
        if problems:
            print("\nproblems:\n" + "\n".join(f"- {p}" for p in problems))
            raise SystemExit(1)


def _shown(path: Path) -> str:
    """A path as typed from the repository's root, when it is inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    main()
