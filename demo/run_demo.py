"""The whole product on the embedded default, end to end, as a user would run it.

generate data -> feast apply -> materialise -> train (every scorer, the learned blender, the
evaluation report) -> serve -> HTTP requests per scenario -> a readable table per scenario
with what moved each item -> why an ad was shown -> a new product embedded and ranked
without retraining -> feedback -> the adaptive blend learning from ad clicks -> stop the
server -> off-policy estimates of other blend policies from the server's logs.

Run with ``make demo`` (which installs everything first). Uses ./feature_repo and ./bundles.
A scenario plugin installed beside the core (``hybridrec install plugins/hybridrec-news``)
joins every step: its data, its Feast view, its training and its top-10 list.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from hybridrec.data.tables import write_parquet

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "feature_repo"
BIN = Path(sys.executable).parent
USER = "u00042"
#: The built-in world's scenarios, shown first; an installed plugin's (hybridrec-news) follow.
BUILTIN = ("shop", "video", "ads")


def step(title: str, *cmd: str, cwd: Path = ROOT) -> None:
    print(f"\n== {title}\n$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True)
    print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            status, body = call(base, "/readyz")
            if status == 200:
                return body
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready within {timeout:.0f} s")


def show(result: dict, items: pd.DataFrame) -> None:
    rows = []
    for rank, item in enumerate(result["items"], 1):
        meta = items.loc[item["item_id"]]
        parts = item.get("contributions") or {}
        why = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(
            parts.items(), key=lambda kv: -abs(kv[1] or 0.0))[:3] if v is not None)
        rows.append({"rank": rank, "item": item["item_id"], "category": meta["category"],
                     "title": meta["title"][:30], "score": f"{item['score']:.3f}",
                     "largest contributions to the score": why})
    print(pd.DataFrame(rows).to_string(index=False))


def explain_ad(base: str) -> None:
    """The ad slot's list again, with the ctr scorer's explanation of the ad it ranks first
    (in the first slot, the default position, as above)."""
    status, result = call(base, "/v1/recommend", {"user_id": USER, "scenario": "ads", "k": 3,
                                                  "explain": True})
    if status != 200:
        raise SystemExit(f"POST /v1/recommend with explain answered {status}: {result}")
    ad = result["items"][0]
    note = (ad.get("explanation") or {}).get("ctr")
    if note is None:
        return
    print(f"\n-- why {ad['item_id']} (\"explain\": true): click probability "
          f"{note['probability']:.4f}; log-odds {note['raw_score']:+.3f} = base "
          f"{note['base']:+.3f} plus, largest first:")
    for c in note["contributions"]:
        value = c["value"] if not isinstance(c["value"], float) else f"{c['value']:.3g}"
        print(f"   {c['feature']:<22} = {value!s:<14} {c['contribution']:+.3f}")


def new_item(base: str, hybridrec: str, items: pd.DataFrame) -> None:
    """A product added after training: embedded by `hybridrec llm embed`, picked up by the
    running server at its next refresh, scored by the llm scorer from its text alone."""
    path = REPO / "data" / "items.parquet"
    table = pd.read_parquet(path)
    row = table[table["scenario"] == "shop"].iloc[[0]].copy()
    row["item_id"], row["category"] = "s-new-headphones", "electronics"
    row["title"] = "wireless bluetooth headphones"
    row["text"] = "wireless bluetooth headphones with a long battery and a charger"
    # written whole or not at all: the running server may read the table at any moment
    write_parquet(pd.concat([table, row], ignore_index=True), path)
    step("6. A new product arrives: embed its text and push it online", hybridrec, "llm",
         "embed")
    known = items[items["scenario"] == "shop"].index[:2].tolist()
    body = {"user_id": USER, "scenario": "shop", "candidates": ["s-new-headphones", *known]}
    deadline = time.monotonic() + 30
    while True:  # until a refresh has read both the new row and its embedding
        status, result = call(base, "/v1/recommend", body)
        scored = {i["item_id"]: i["scores"].get("llm.click") for i in result.get("items", [])}
        if scored.get("s-new-headphones") is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("\n-- the running server ranks it without retraining (llm scores it from its text; "
          "ALS has never seen it):")
    for item in result["items"]:
        scores = ", ".join(f"{k}={v:.3f}" if v is not None else f"{k}=-"
                           for k, v in item["scores"].items())
        print(f"   {item['item_id']:<18} {scores}")


def adapt(base: str) -> None:
    """Ad traffic with simulated clicks (each shown ad clicked with the ctr scorer's own
    probability): the adaptive blend logs every decision and learns from the clicks."""
    import random

    rng, clicks = random.Random(0), 0
    for n in range(1, 301):
        status, answer = call(base, "/v1/recommend",
                              {"user_id": f"u{n:05d}", "scenario": "ads", "k": 3})
        if status != 200:
            continue
        events = [{"request_id": answer["request_id"], "item_id": item["item_id"],
                   "event_type": "click"} for item in answer["items"]
                  if rng.random() < (item["scores"].get("ctr.ctr") or 0.02)]
        if events:
            clicks += call(base, "/v1/feedback", {"events": events})[1]["accepted"]
    status, policy = call(base, "/v1/scenarios/ads/policy")
    print(f"\n-- 300 ad requests, {clicks} simulated clicks sent as feedback; "
          f"GET /v1/scenarios/ads/policy: policy {policy['policy']}, exploration "
          f"{policy.get('exploration')}, {policy['updates']} rewards credited")
    for context in policy["contexts"]:
        arms = "  ".join(f"{a['arm']} {a['probability']:.2f} ({a['window']['reward']:.0f}/"
                         f"{a['window']['pulls']:.0f})" for a in context["arms"])
        print(f"   {context['activity']:<6} {arms}")


def main() -> None:
    hybridrec = str(BIN / "hybridrec")
    os.environ.setdefault("FEAST_USAGE", "False")
    # A clean slate: data, registry, online store, feedback log and bundles of earlier runs.
    shutil.rmtree(REPO / "data", ignore_errors=True)
    shutil.rmtree(ROOT / "bundles", ignore_errors=True)
    step("1. Generate the embedded synthetic world (shop, video, ads, and any scenario an "
         "installed plugin adds)", hybridrec, "data", "synthetic")
    present = set(pd.read_parquet(REPO / "data" / "events.parquet", columns=["scenario"])
                  ["scenario"])
    scenarios = [s for s in BUILTIN if s in present] + sorted(present - set(BUILTIN))
    step("2. Register the features with Feast", str(BIN / "feast"), "apply", cwd=REPO)
    step("3. Load the online store", hybridrec, "materialize")
    report = ROOT / ".demo" / "report"
    step("4. Train every scorer and the learned blender, evaluate on a temporal hold-out, "
         "write the report", hybridrec, "train", "--quiet", "--report", str(report))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"\n== 5. Serve on {base}", flush=True)
    server = subprocess.Popen([hybridrec, "serve", "--port", str(port), "--log-level",
                               "warning", "--refresh-seconds", "2"], cwd=ROOT)
    try:
        ready = wait_ready(base, server)
        print(f"ready: bundle {ready['bundle_version']}, {ready['items_cached']} items cached")
        items = pd.read_parquet(REPO / "data" / "items.parquet").set_index("item_id")
        last = first_shop = None
        for scenario in scenarios:
            status, result = call(base, "/v1/recommend",
                                  {"user_id": USER, "scenario": scenario, "k": 10})
            if status != 200:
                raise SystemExit(f"POST /v1/recommend for {scenario} answered {status}: "
                                 f"{result}")
            print(f"\n-- POST /v1/recommend  user={USER} scenario={scenario} k=10  "
                  f"(request {result['request_id'][:8]}…)")
            show(result, items)
            last = result
            if scenario == "shop":
                first_shop = result
        if importlib.util.find_spec("hybridrec_ctr") is not None:
            explain_ad(base)
        anchor = first_shop["items"][0]["item_id"]
        status, similar = call(base, f"/v1/items/{anchor}/similar?scenario=shop&k=5")
        if status == 200:
            print(f"\n-- GET /v1/items/{anchor}/similar?scenario=shop&k=5  "
                  f"(from {similar['source']}; {anchor} is "
                  f"{items.loc[anchor, 'category']}: {items.loc[anchor, 'title']})")
            for entry in similar["items"]:
                meta = items.loc[entry["item_id"]]
                print(f"   {entry['item_id']}  {meta['category']:<12} {meta['title']:<34} "
                      f"cosine={entry['similarity']:.3f}")
        else:
            print(f"\n-- similar items: {status} {similar['detail']}")
        status, cold = call(base, "/v1/recommend",
                            {"user_id": "someone-new", "scenario": "shop", "k": 5})
        print(f"\n-- a user never seen before gets the fallback: cold_start={cold['cold_start']}"
              f", fallback={cold['fallback']}")
        show(cold, items)
        event = {"request_id": last["request_id"], "item_id": last["items"][0]["item_id"],
                 "event_type": "click"}
        status, ack = call(base, "/v1/feedback", {"events": [event]})
        print(f"\n-- POST /v1/feedback (a click on {event['item_id']}): {status} {ack}")
        print("   (feedback is part of the data from now on: the next 'hybridrec train' or "
              "'hybridrec evaluate' reads it)")
        decision = last["decision"] or {}
        if decision:
            print(f"   (that ads list was arm {decision['arm']!r}, drawn with probability "
                  f"{decision['propensity']:.3f} by the {decision['policy']} policy)")
        adapt(base)
        if importlib.util.find_spec("hybridrec_llm") is not None:
            new_item(base, hybridrec, items)
        status, bad = call(base, "/v1/recommend", {"user_id": USER, "scenario": "podcasts"})
        print(f"-- an unknown scenario: {status} {bad['detail']['message']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        print("\nserver stopped")
    step("7. Estimate other blend policies from the server's own logs (off-policy)",
         hybridrec, "evaluate", "--ope", "--policy", "logged", "--policy", "offline",
         "--policy", "toward:ctr.ctr")
    print(f"\nthe evaluation report (each scorer alone and the learned blend, with intervals): "
          f"{(report / 'index.html').as_uri()}")


if __name__ == "__main__":
    main()
