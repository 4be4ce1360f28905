"""hybridrec train / evaluate / recommend through the real CLI on the session workspace."""

import json
import os

import pytest

from conftest import BIN, ML100K, Workspace, base_env, copy_feature_repo, run


def manifest(ws):
    return json.loads((ws.bundles / "current" / "manifest.json").read_text())


def test_bundle_manifest_records_what_was_trained(workspace):
    m = manifest(workspace)
    assert set(m["scenarios"]) == {"shop", "video", "ads"}
    assert m["scenarios"]["shop"]["scorers"][0] == "popularity"
    assert "cheapest" in m["scenarios"]["shop"]["scorers"]  # the pip-installed plugin
    assert "cheapest" not in m["scenarios"]["video"]["scorers"]  # it supports shop only
    # features are what the components declare: cheapest reads the price; hybridrec-llm,
    # when installed, the user profile and the item text embedding; nothing else
    llm = "llm" in m["scenarios"]["shop"]["scorers"]
    llm_user = {"user_profile:age", "user_profile:gender", "user_profile:occupation"}
    llm_item = {"item_text_embedding:embedding", "item_text_embedding:encoder"}
    shop = m["scenarios"]["shop"]["features"]
    assert set(shop["user"]) == (llm_user if llm else set())
    assert set(shop["item"]) == {"item_profile:price"} | (llm_item if llm else set())
    assert shop["absent"] == []
    assert set(m["scenarios"]["video"]["features"]["item"]) == (llm_item if llm else set())
    assert m["scenarios"]["shop"]["fallback"] == "popularity"
    assert m["plugins"]["hello"] == "0.3.0"
    window = m["data_window"]
    assert window["start"] < window["test_cutoff"] < window["end"]
    shop = m["metrics"]["shop"]
    assert {"popularity", "cheapest", "blend"} <= set(shop)
    assert 0 < shop["popularity"]["ndcg@10"] <= 1
    comps = {c["dir"]: c for c in m["components"]}
    assert comps["popularity"]["names"] == ["popularity"]
    assert comps["cheapest"]["plugin"] == "hello"


def test_train_again_switches_current_atomically(workspace_copy):
    before = os.readlink(workspace_copy.bundles / "current")
    # ads only: installed scorers that apply to no trained scenario are left out entirely
    out = workspace_copy.cli("train", "--quiet", "--scenario", "ads", "--no-refit").stdout
    after = os.readlink(workspace_copy.bundles / "current")
    assert after != before and after in out
    assert (workspace_copy.bundles / before / "manifest.json").exists()  # old version kept
    m = manifest(workspace_copy)
    assert set(m["scenarios"]) == {"ads"}
    assert "cheapest" not in {c["dir"] for c in m["components"]}
    assert all(c["names"] and c["fit_seconds"] is not None for c in m["components"])


def test_a_misspelled_weight_lists_the_known_keys(workspace, tmp_path):
    config = tmp_path / "weights.toml"
    config.write_text('[weighted.weights.shop]\n"cheapest.clik" = 2.0\n')
    result = workspace.cli("evaluate", "--quiet", "--config", str(config), check=False)
    assert result.returncode != 0
    for key in ("popularity.click", "als.click", "cheapest.click"):
        assert key in result.stderr, result.stderr


def test_evaluate_prints_every_scorer_per_scenario(workspace):
    result = workspace.cli("evaluate", "--quiet", "--json")

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    metrics = json.loads(result.stdout, parse_constant=refuse)["metrics"]  # strict
    assert metrics["ads"]["blend"]["auc"] is None  # pooled AUC does not apply to a blend
    json.loads((workspace.bundles / "current" / "manifest.json").read_text(),
               parse_constant=refuse)
    assert {"popularity", "blend"} <= set(metrics["ads"])
    assert "gauc" in metrics["ads"]["popularity"]
    result = workspace.cli("evaluate", "--scenario", "video")  # progress on, output piped
    assert "ndcg@10" in result.stdout and "video" in result.stdout
    assert "shop" not in result.stdout
    assert "\r" not in result.stderr and "it/s" not in result.stderr  # no bars in logs


def test_recommend_prints_a_ranked_list(workspace):
    out = workspace.cli("recommend", "u00001", "--scenario", "shop", "-k", "4").stdout
    lines = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4"]
    cold = workspace.cli("recommend", "stranger", "--scenario", "shop").stdout
    assert "cold start" in cold


def test_cli_errors_name_the_problem(workspace):
    bad = workspace.cli("recommend", "u00001", "--scenario", "news", check=False)
    assert bad.returncode != 0 and "unknown scenario 'news'" in bad.stderr
    bad = workspace.cli("train", "--scenario", "movies", check=False)
    assert bad.returncode != 0 and "no events for scenario(s) movies" in bad.stderr
    bad = workspace.cli("train", "--scorer", "nope", check=False)
    assert bad.returncode != 0 and "unknown scorer(s) nope" in bad.stderr


def test_train_before_feast_apply_says_what_to_do(tmp_path):
    repo = copy_feature_repo(tmp_path)
    env = base_env(HYBRIDREC_FEATURE_REPO=str(repo), HYBRIDREC_BUNDLES=str(tmp_path / "b"))
    ws = Workspace(tmp_path, repo, tmp_path / "b", env)
    missing = ws.cli("train", check=False)
    assert missing.returncode != 0 and "hybridrec data synthetic" in missing.stderr
    ws.cli("data", "synthetic", "--users", "50", "--items", "20", "--ads", "5",
           "--events", "2000")
    unapplied = ws.cli("train", check=False)
    assert unapplied.returncode != 0 and "feast apply" in unapplied.stderr


@pytest.mark.slow
@pytest.mark.skipif(not ML100K.exists(), reason=f"MovieLens 100K not found at {ML100K}")
def test_evaluate_movielens_popularity(tmp_path):
    repo = copy_feature_repo(tmp_path)
    env = base_env(HYBRIDREC_FEATURE_REPO=str(repo), HYBRIDREC_BUNDLES=str(tmp_path / "b"))
    ws = Workspace(tmp_path, repo, tmp_path / "b", env)
    ws.cli("data", "movielens", str(ML100K))
    run([str(BIN / "feast"), "apply"], env, cwd=repo)
    metrics = json.loads(ws.cli("evaluate", "--quiet", "--json", "--scorer",
                                "popularity").stdout)["metrics"]
    pop = metrics["movies"]["popularity"]
    assert pop["users"] > 50
    assert 0.02 < pop["ndcg@10"] < 0.5 and 0.01 < pop["recall@10"] < 0.5


def test_component_config_from_a_toml_file(workspace_copy, tmp_path):
    config = tmp_path / "hybridrec.toml"
    config.write_text('[popularity]\nhalf_life_days = 7.0\n\n'
                      '[scenarios.shop]\nblender = "weighted"\n\n'
                      '[weighted.weights.shop]\n"popularity.click" = 2.0\n')
    workspace_copy.cli("train", "--quiet", "--no-refit", "--scenario", "shop", "--config",
                       str(config))
    m = manifest(workspace_copy)
    comps = {c["dir"]: c for c in m["components"]}
    assert comps["popularity"]["params"] == {"half_life_days": 7.0}
    assert m["blenders"]["weighted"]["params"] == {
        "weights": {"shop": {"popularity.click": 2.0}}}
    assert m["scenarios"]["shop"]["blender"] == "weighted"
    assert m["config"]["popularity"] == {"half_life_days": 7.0}


@pytest.mark.parametrize("text,message", [
    ("[popularty]\nhalf_life_days = 7\n", "config section [popularty] names no installed"),
    ("[popularity]\nhalf_life = 7\n",
     "invalid config for [popularity]: no parameter 'half_life'; it takes half_life_days"),
    ("[popularity]\nhalf_life_days = -1\n", "half_life_days must be positive"),
    ("[popularity\n", "is not valid TOML"),
    ('[weighted.weights.shop]\n"cheapest.clik" = 2.0\n',
     "'cheapest.clik', which no scorer of 'shop' produces; known: "),
    ('[weighted.weights.shp]\n"cheapest.click" = 2.0\n', "unknown scenario 'shp'"),
    ('[weighted.weights.shop]\n"cheapest.click" = "high"\n', "must be a number"),
])
def test_bad_config_is_named(workspace, tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = workspace.cli("evaluate", "--quiet", "--config", str(config), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_recommend_exits_cleanly_after_answering(workspace, tmp_path):
    """pandas' Parquet reader let Arrow's threads abort the interpreter at exit now and then
    (about one run in seven), after a complete answer."""
    from dataclasses import replace

    ws = replace(workspace, bundles=tmp_path,
                 env={**workspace.env, "HYBRIDREC_BUNDLES": str(tmp_path)})
    ws.cli("train", "--quiet", "--no-refit", "--scenario", "video", "--scorer", "als")
    for _ in range(20):  # no features declared: no Feast, about a second each
        result = ws.cli("recommend", "u00003", "--scenario", "video", "-k", "3", check=False)
        assert result.returncode == 0, result.stderr[-500:]
        assert "bundle" in result.stdout
