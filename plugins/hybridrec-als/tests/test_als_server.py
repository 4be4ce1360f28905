"""hybridrec-als installed with pip beside the core: trained by `hybridrec train`, served by
`hybridrec serve` (the shared session workspace and server from the root conftest)."""

import json

import pandas as pd

from hybridrec import columns as C


def test_als_is_trained_for_preference_scenarios(workspace):
    manifest = json.loads((workspace.bundles / "current" / "manifest.json").read_text())
    for scenario in ("shop", "video"):
        assert "als" in manifest["scenarios"][scenario]["scorers"]
        assert "als" in manifest["scenarios"][scenario]["candidate_sources"]
    assert "als" not in manifest["scenarios"]["ads"]["scorers"]
    [als] = [c for c in manifest["components"] if c["dir"] == "als"]
    shop = als["params"]["scenarios"]["shop"]
    assert als["plugin"] == "als" and als["params"]["device"] == "cpu"
    assert shop["params"]["factors"] in (16, 32) and len(shop["tuning"]) == 8
    assert "als" in manifest["metrics"]["shop"]


def test_responses_carry_als_scores(server):
    status, body = server.call("POST", "/v1/recommend",
                               {"user_id": "u00003", "scenario": "video", "k": 5})
    assert status == 200
    assert all(i["scores"]["als.click"] is not None for i in body["items"])


def test_similar_items_endpoint(server, workspace):
    items = pd.read_parquet(workspace.repo / "data" / C.ITEMS_FILE).set_index(C.ITEM_ID)
    status, body = server.call("GET", "/v1/items/s00001/similar?scenario=shop&k=4")
    assert status == 200, body
    assert body["source"] == "als" and len(body["items"]) == 4
    assert all(items.loc[i["item_id"], C.SCENARIO] == "shop" for i in body["items"])
    sims = [i["similarity"] for i in body["items"]]
    assert sims == sorted(sims, reverse=True)
    assert server.call("GET", "/v1/items/zzz/similar?scenario=shop")[0] == 404
    status, body = server.call("GET", "/v1/items/s00001/similar?scenario=news")
    assert status == 404 and "shop" in body["detail"]["known_scenarios"]
    for bad in ("k=0", "k=abc", "k=1000"):
        assert server.call("GET", f"/v1/items/s00001/similar?scenario=shop&{bad}")[0] == 422
    assert server.call("GET", "/v1/items/s00001/similar")[0] == 422  # scenario missing


def test_feedback_moves_a_new_user_towards_the_items_touched(server, workspace):
    items = pd.read_parquet(workspace.repo / "data" / C.ITEMS_FILE)
    shop = items[items[C.SCENARIO] == "shop"]
    user = "fresh-user-1"
    status, cold = server.call("POST", "/v1/recommend",
                               {"user_id": user, "scenario": "shop", "k": 20})
    assert cold["cold_start"] is True
    # the category the popularity fallback shows least
    shown = shop.set_index(C.ITEM_ID).loc[[i["item_id"] for i in cold["items"]], "category"]
    counts = shown.value_counts().reindex(sorted(shop["category"].unique()), fill_value=0)
    category = counts.idxmin()
    chosen = shop.loc[shop["category"] == category, C.ITEM_ID].tolist()[:6]
    # feedback names items of a response: the user is offered them, and buys them all
    status, offer = server.call("POST", "/v1/recommend", {
        "user_id": user, "scenario": "shop", "k": len(chosen), "candidates": chosen})
    assert sorted(i["item_id"] for i in offer["items"]) == sorted(chosen)
    status, ack = server.call("POST", "/v1/feedback", {"events": [
        {"request_id": offer["request_id"], "item_id": i, "event_type": "purchase"}
        for i in chosen]})
    assert ack["accepted"] == len(chosen)
    status, warm = server.call("POST", "/v1/recommend",
                               {"user_id": user, "scenario": "shop", "k": 20})
    assert warm["cold_start"] is False
    assert all(i["scores"]["als.click"] is not None for i in warm["items"])
    in_category = set(shop.loc[shop["category"] == category, C.ITEM_ID])

    def share(result):
        return sum(i["item_id"] in in_category for i in result["items"]) / len(result["items"])

    assert share(warm) > share(cold), (share(warm), share(cold))
    assert not set(chosen) & {i["item_id"] for i in warm["items"]}  # seen ones left out


def test_device_and_parameters_come_from_config(workspace, tmp_path):
    config = tmp_path / "als.toml"
    config.write_text('[als]\ndevice = "cpu"\ntune = false\nfactors = 8\n\n'
                      '[als.weights.shop]\nview = 1.0\npurchase = 20.0\n')
    out = workspace.cli("evaluate", "--quiet", "--json", "--scenario", "shop", "--scorer",
                        "als", "--config", str(config)).stdout
    assert "als" in json.loads(out)["metrics"]["shop"]
    config.write_text('[als]\ndevice = "cuda"\n')
    result = workspace.cli("evaluate", "--quiet", "--scenario", "shop", "--scorer", "als",
                           "--config", str(config), check=False)
    assert result.returncode != 0 and "no CUDA" in result.stderr
    config.write_text('[als]\nfactor = 8\n')
    result = workspace.cli("evaluate", "--quiet", "--config", str(config), check=False)
    assert result.returncode != 0 and "'factor'" in result.stderr
