"""plugins/hybridrec-news, the third-party scenario plugin: written against the public API
only, its own tests pass where it is installed, and installing it into a fresh environment
adds the news scenario to the data, Feast, training, evaluation and the server, while
uninstalling it leaves the other scenarios working."""

import re
import subprocess

import pytest

from conftest import (
    FEAST_CLI,
    LLM_TEST_CONFIG,
    ROOT,
    SMALL_WORLD,
    Server,
    base_env,
    empty_workspace,
    fresh_env,
    private_imports,
    run,
)

NEWS = ROOT / "plugins" / "hybridrec-news"


@pytest.fixture(scope="module")
def news_python(tmp_path_factory):
    """A fresh environment with hybridrec-news pip-installed (not editable)."""
    return fresh_env(tmp_path_factory.mktemp("news") / "env", NEWS)


def test_written_against_the_public_api_only():
    assert private_imports(NEWS / "hybridrec_news") == []
    assert private_imports(NEWS / "tests") == []


def test_its_own_tests_pass_where_it_is_installed(news_python):
    result = subprocess.run([str(news_python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-W", "ignore::DeprecationWarning"], cwd=NEWS,
                            env=base_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary


def test_install_adds_the_scenario_everywhere_and_uninstall_removes_it(news_python, tmp_path):
    config = tmp_path / "hybridrec.toml"
    config.write_text(LLM_TEST_CONFIG)
    ws = empty_workspace(tmp_path, HYBRIDREC_CONFIG=str(config))
    repo = ws.repo
    cli = [str(news_python), "-m", "hybridrec.cli"]

    def hybridrec(*args, check=True):
        return run([*cli, *args], ws.env, cwd=tmp_path, check=check)

    def feast_apply():
        return run([str(news_python), "-c", FEAST_CLI, "apply"], ws.env, cwd=repo).stdout

    written = hybridrec("data", "synthetic", *SMALL_WORLD).stdout
    assert "news_article.parquet" in written and "news (" in written, written
    assert "news_article" in feast_apply()
    assert "news_article" in hybridrec("materialize").stdout
    trained = hybridrec("train", "--quiet", "--no-refit", "--scorer", "freshness", "--scorer",
                        "popularity", "--scorer", "als").stdout  # the quick scorers
    news_rows = [line for line in trained.splitlines() if line.startswith("news ")]
    assert any("freshness" in line for line in news_rows), trained
    assert "news: blend objective@10" in trained, trained
    evaluated = hybridrec("evaluate", "--quiet", "-s", "news", "--scorer", "freshness",
                          "--scorer", "popularity").stdout
    assert [line for line in evaluated.splitlines() if line.startswith("news ")], evaluated

    server = Server(ws, "--refresh-seconds", "0", python=news_python)
    try:
        server.wait_ready()
        status, answer = server.call("POST", "/v1/recommend",
                                     {"user_id": "u00001", "scenario": "news", "k": 5})
        assert status == 200, answer
        assert len(answer["items"]) == 5
        assert all(item["item_id"].startswith("n") for item in answer["items"])
        assert all(item["scores"].get("freshness.read") is not None
                   for item in answer["items"]), answer
        status, cold = server.call("POST", "/v1/recommend",
                                   {"user_id": "nobody-yet", "scenario": "news", "k": 3})
        assert status == 200 and cold["fallback"] == "freshness", cold
    finally:
        server.stop()

    gone = hybridrec("uninstall", "-y", "news")
    assert "plugin news 0.1.0 (hybridrec-news) removed" in gone.stdout, gone.stdout
    assert "needs plugin news" in gone.stderr and "Retrain without it" in gone.stderr
    applied = feast_apply()
    assert re.search(r"Deleted .*news_article", applied), applied  # and its online table
    retrained = hybridrec("train", "--quiet", "--no-refit", "--scorer", "popularity",
                          "--scorer", "als")
    assert "events of scenario 'news' left out" in retrained.stdout + retrained.stderr
    assert not [line for line in retrained.stdout.splitlines() if line.startswith("news ")]
    server = Server(ws, "--refresh-seconds", "0", python=news_python)
    try:
        server.wait_ready()
        status, answer = server.call("POST", "/v1/recommend",
                                     {"user_id": "u00001", "scenario": "shop", "k": 5})
        assert status == 200 and len(answer["items"]) == 5, answer
        status, answer = server.call("POST", "/v1/recommend",
                                     {"user_id": "u00001", "scenario": "news", "k": 5})
        assert status == 404 and "news" in str(answer), (status, answer)
    finally:
        server.stop()
