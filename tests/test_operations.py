"""Operating the server: one JSON line per request with its id, a full disk that costs the
served log's row, not the answer, and a process computing at most its scoring threads'
recommendations at once."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Server, free_port, http
from hybridrec.plugins import reset_registry


def test_json_access_log_has_one_line_per_request_with_its_id(workspace):
    server = Server(workspace, "--refresh-seconds", "0", "--access-log", "json")
    server.wait_ready()
    try:
        status, body = server.call("POST", "/v1/recommend",
                                   {"user_id": "u00007", "scenario": "shop"})
        assert status == 200
        assert server.call("POST", "/v1/recommend", {"user_id": "u7", "scenario": "x"})[0] == 404
        time.sleep(0.2)
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines()
             if line.startswith("{")]
    recommend = [entry for entry in lines if entry["route"] == "/v1/recommend"]
    assert [e["status"] for e in recommend] == [200, 404]
    assert recommend[0]["request_id"] == body["request_id"]
    assert recommend[0]["ms"] > 0 and recommend[0]["method"] == "POST"
    assert not any("POST /v1/recommend HTTP/1.1" in line
                   for line in server.log.read_text().splitlines())  # not twice


@pytest.fixture
def in_process(workspace_copy, hello_site, monkeypatch):
    """The app served by uvicorn in a thread of this process, over loopback, so that the
    test can reach its feedback log's connection."""
    import uvicorn

    from hybridrec.server.app import create_app
    from hybridrec.workspace import Workspace

    monkeypatch.syspath_prepend(str(hello_site))
    monkeypatch.setenv("HYBRIDREC_SCORING_THREADS", "2")
    reset_registry()
    app = create_app(Workspace.from_env(workspace_copy.repo, workspace_copy.bundles),
                     refresh_seconds=0, load_in_background=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app.state.hybridrec
    server.should_exit = True
    thread.join(timeout=30)
    reset_registry()


def test_a_full_disk_costs_the_log_row_not_the_answer(in_process):
    base, state = in_process
    conn = state.feedback._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own 'database or disk is full'
    answers = [http(base, "POST", "/v1/recommend", {"user_id": f"u{i:05d}", "scenario": "shop"})
               for i in range(40)]
    assert [status for status, _ in answers] == [200] * 40
    assert all(body["items"] for _, body in answers)
    unlogged = {"component": "feedback log",
                "reason": "this answer was not logged: feedback on it will be refused"}
    lost = [body for _, body in answers if unlogged in body["degraded"]]
    assert len(lost) > 20  # once the file's last free page is used
    body = lost[-1]
    status, ack = http(base, "POST", "/v1/feedback", {"events": [
        {"request_id": body["request_id"], "item_id": body["items"][0]["item_id"],
         "event_type": "purchase"}]})
    assert status == 422 and "unknown request id" in ack["rejected"][0]["errors"][0]
    metrics = http(base, "GET", "/metrics")[1]
    assert f'component="feedback log",kind="write",scenario="shop"}} {len(lost)}.0' in metrics


def test_a_process_computes_at_most_its_scoring_threads_at_once(in_process, monkeypatch):
    base, state = in_process
    rec = state.recommender
    now, most, lock = [0], [0], threading.Lock()
    original = rec.recommend

    def counted(*args, **kwargs):  # the real recommend, held 50 ms, its overlaps counted
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            time.sleep(0.05)
            return original(*args, **kwargs)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(rec, "recommend", counted)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: http(base, "POST", "/v1/recommend", {
            "user_id": f"u{i:05d}", "scenario": "shop"}), range(24)))
    assert [status for status, _ in answers] == [200] * 24
    assert all(body["items"] for _, body in answers)
    assert most[0] == 2  # HYBRIDREC_SCORING_THREADS; the other six clients waited


def test_the_scoring_threads_must_be_a_whole_number_from_one(workspace):
    done = workspace.cli("serve", "--scoring-threads", "0", check=False)
    assert done.returncode == 2
    assert "--scoring-threads (or HYBRIDREC_SCORING_THREADS) must be a whole number from 1 " \
        "to 256, got '0'" in done.stderr


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_the_exploration_seed_must_be_a_whole_number(value):
    from click.testing import CliRunner

    from hybridrec.cli import make_cli
    from hybridrec.workspace import ENV_EXPLORATION_SEED, exploration_seed

    result = CliRunner().invoke(make_cli(), ["serve", "--exploration-seed", value])
    assert result.exit_code == 2
    assert f"--exploration-seed (or {ENV_EXPLORATION_SEED}) must be a whole number from 0 " \
        f"up, got {value!r}" in result.output
    assert exploration_seed("") is None and exploration_seed("12") == 12


def test_an_exploration_seed_is_refused_with_more_than_one_worker(monkeypatch):
    from click.testing import CliRunner

    from hybridrec.cli import make_cli
    from hybridrec.workspace import ENV_EXPLORATION_SEED

    monkeypatch.setenv(ENV_EXPLORATION_SEED, "")  # the option sets it: restored afterwards
    result = CliRunner().invoke(make_cli(), ["serve", "--workers", "2",
                                             "--exploration-seed", "3"])
    assert result.exit_code == 2
    assert "reproducible with one worker only: with --workers 2 every worker would draw " \
        "the same arms" in result.output


def test_an_answer_as_data_is_every_field_of_it():
    from dataclasses import asdict

    from hybridrec.isolation import Degraded
    from hybridrec.pipeline import Decision
    from hybridrec.recommender import Recommendation, RecommendedItem

    decision = Decision("adaptive", "offline", {"offline": 0.9, "toward:als.click": 0.1},
                        {"activity": "light"}, [0.9], {"offline": ["a"]})
    answer = Recommendation("r1", "u1", "shop", "v1", False, None,
                            [RecommendedItem("a", 1.5, {"als.click": 0.2}, {"ctr": {"p": 1}},
                                             {"als.click": 1.5})],
                            ["zz"], decision, [Degraded("scorer 'x'", "raised")])
    expected = asdict(answer)
    expected["decision"] = decision.as_dict()
    assert answer.as_dict() == expected
