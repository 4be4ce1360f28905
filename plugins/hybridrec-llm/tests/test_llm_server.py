"""hybridrec-llm installed beside the core: trained by `hybridrec train` with the default
encoder (all-MiniLM-L6-v2 from site-packages), served by `hybridrec serve`, and a new item
embedded by `hybridrec llm embed` ranked by a running server without retraining."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from hybridrec_llm import embeddings as E

from hybridrec import columns as C

pytestmark = pytest.mark.slow


def test_llm_is_trained_for_shop_and_video_with_its_manifest(workspace):
    manifest = json.loads((workspace.bundles / "current" / "manifest.json").read_text())
    for scenario in ("shop", "video"):
        assert "llm" in manifest["scenarios"][scenario]["scorers"]
        assert "llm.click" in manifest["metrics"][scenario]
        assert "llm.like" in manifest["metrics"][scenario]
    assert "llm" not in manifest["scenarios"]["ads"]["scorers"]
    [llm] = [c for c in manifest["components"] if c["dir"] == "llm"]
    shop = llm["params"]["scenarios"]["shop"]
    assert llm["params"]["encoder"].endswith("model")  # the packaged MiniLM
    assert llm["params"]["text_dim"] == 384
    assert shop["task_weighting"] == "gradnorm"
    assert [e["epoch"] for e in shop["epochs"]] == list(range(1, len(shop["epochs"]) + 1))
    assert all(set(e["weights"]) == set(shop["tasks"]) for e in shop["epochs"])


def test_training_wrote_the_embeddings_view(workspace):
    stored = E.read(workspace.repo)
    items = pd.read_parquet(workspace.repo / "data" / C.ITEMS_FILE)
    wanted = set(items.loc[items[C.SCENARIO].isin(["shop", "video"]), C.ITEM_ID])
    assert wanted <= set(stored[C.ITEM_ID])
    assert {len(v) for v in stored[E.EMBEDDING]} == {384}
    norms = np.linalg.norm(np.stack(stored[E.EMBEDDING].to_numpy()), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)


def test_responses_carry_each_head_as_a_task(server):
    status, body = server.call("POST", "/v1/recommend",
                               {"user_id": "u00003", "scenario": "video", "k": 5})
    assert status == 200, body
    for item in body["items"]:
        assert 0.0 <= item["scores"]["llm.click"] <= 1.0
        assert 0.0 <= item["scores"]["llm.like"] <= 1.0
        assert "llm.rating" not in item["scores"]  # video has no ratings


def test_evaluate_shows_it_per_task(workspace):
    out = workspace.cli("evaluate", "--quiet", "--json", "--scenario", "video",
                        "--scorer", "llm").stdout
    metrics = json.loads(out)["metrics"]["video"]
    assert {"llm.click", "llm.like"} <= set(metrics)
    assert metrics["llm.click"]["ndcg@10"] > 0


def test_new_item_embedded_and_scored_by_a_running_server(workspace_copy, server_class):
    """A running server, then a new shop item: `hybridrec llm embed` embeds only it and
    pushes it online, the server adds it to the catalogue at its next refresh, and the llm
    scorer gives it a finite score from its text alone. The serving process never imports
    torch or transformers."""
    copied = workspace_copy
    modules = copied.root / "server-modules.json"
    server = server_class(copied, "--refresh-seconds", "1", modules=modules)
    try:
        server.wait_ready()
        items_path = copied.repo / "data" / C.ITEMS_FILE
        items = pd.read_parquet(items_path)
        template = items[items[C.SCENARIO] == "shop"].iloc[0].copy()
        template[C.ITEM_ID] = "s-new-1"
        template["title"] = "wireless bluetooth headphones with charger"
        template["text"] = "wireless headphones, bluetooth, long battery, charger included"
        pd.concat([items, template.to_frame().T.astype(items.dtypes)],
                  ignore_index=True).to_parquet(items_path, index=False)
        request = {"user_id": "u00003", "scenario": "shop",
                   "candidates": ["s-new-1", "s00001"]}

        def new_item_scores():
            status, body = server.call("POST", "/v1/recommend", request)
            assert status == 200, body
            return {i["item_id"]: i["scores"] for i in body["items"]}.get("s-new-1")

        time.sleep(2.5)  # two refreshes: the server now knows the item, but not its text
        before = new_item_scores()
        assert before is None or before["llm.click"] is None, before

        out = copied.cli("llm", "embed").stdout
        assert out.startswith("1 item embedded"), out

        deadline = time.monotonic() + 30
        scores = new_item_scores()
        while (scores is None or scores["llm.click"] is None) and time.monotonic() < deadline:
            time.sleep(0.5)
            scores = new_item_scores()
        assert scores is not None and scores["llm.click"] is not None, scores
        assert 0.0 < scores["llm.click"] < 1.0
        assert scores.get("als.click") is None  # no CF signal for a new item
    finally:
        server.stop()
    loaded = set(json.loads(modules.read_text()))
    assert "hybridrec_llm.scorer" in loaded  # the scorer did serve
    assert not loaded & {"torch", "transformers", "peft"}, loaded & {"torch", "transformers"}
