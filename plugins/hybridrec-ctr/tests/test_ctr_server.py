"""hybridrec-ctr installed with pip beside the core: trained by `hybridrec train` for the ads
slot, measured by `hybridrec evaluate`, explained by `hybridrec serve` (the shared session
workspace and server from the root conftest)."""

import json

import pytest


def test_ctr_is_trained_for_the_ads_slot_only(workspace):
    manifest = json.loads((workspace.bundles / "current" / "manifest.json").read_text())
    assert "ctr" in manifest["scenarios"]["ads"]["scorers"]
    assert "ctr" not in manifest["scenarios"]["shop"]["scorers"]
    [ctr] = [c for c in manifest["components"] if c["dir"] == "ctr"]
    ads = ctr["params"]["scenarios"]["ads"]
    assert ads["calibration"] in ("platt", "isotonic")
    assert abs(sum(ads["feature_importance"].values()) - 1) < 0.01
    assert ads["clicks"] > 0 and ads["slices"]["calibration"] > 0


def test_evaluate_reports_calibration_and_importance(workspace):
    out = json.loads(workspace.cli("evaluate", "--quiet", "--json", "--scenario", "ads").stdout)
    ctr = out["metrics"]["ads"]["ctr"]
    assert 0 < ctr["logloss"] < 1 and 0 <= ctr["ece"] < 0.1 and ctr["impressions"] > 100
    assert "logloss" not in out["metrics"]["ads"]["popularity"]  # counts, not probabilities
    assert out["feature_importance"]["ads"]["ctr"]
    table = workspace.cli("evaluate", "--quiet", "--scenario", "ads").stdout
    assert "ece" in table and "ctr in ads, importance" in table


def test_an_ad_request_returns_probabilities_and_explanations(server):
    body = {"user_id": "u00003", "scenario": "ads", "k": 3, "explain": True,
            "context": {"position": 2}}
    status, answer = server.call("POST", "/v1/recommend", body)
    assert status == 200, answer
    for item in answer["items"]:
        p = item["scores"]["ctr.ctr"]
        assert 0 < p < 1
        note = item["explanation"]["ctr"]
        assert note["probability"] == pytest.approx(p, rel=1e-9) and note["task"] == "ctr"
        assert len(note["contributions"]) == 5
        assert all({"feature", "value", "contribution"} == set(c)
                   for c in note["contributions"])
        sizes = [abs(c["contribution"]) for c in note["contributions"]]
        assert sizes == sorted(sizes, reverse=True)


def test_explanations_only_when_asked_and_explain_must_be_a_boolean(server):
    status, answer = server.call("POST", "/v1/recommend",
                                 {"user_id": "u00003", "scenario": "ads", "k": 2})
    assert status == 200 and all(i["explanation"] is None for i in answer["items"])
    status, answer = server.call("POST", "/v1/recommend", {"user_id": "u00003",
                                                           "scenario": "shop", "k": 2,
                                                           "explain": True})
    assert status == 200 and all(i["explanation"] is None for i in answer["items"])
    status, answer = server.call("POST", "/v1/recommend", {"user_id": "u00003",
                                                           "scenario": "ads",
                                                           "explain": "yes"})
    assert status == 422 and "explain" in json.dumps(answer)
