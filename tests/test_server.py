"""The HTTP API: a real `hybridrec serve` subprocess on 127.0.0.1, called over HTTP."""

import json
import random
import signal
import sqlite3

import pytest

from conftest import Server

USER = "u00003"


def recommend(server, **body):
    body = {"user_id": USER, "scenario": "shop", **body}
    return server.call("POST", "/v1/recommend", body)


def warm_user(workspace, scenario):
    """A user with history (positive-weight events) in the scenario."""
    import pandas as pd

    history = pd.read_parquet(workspace.bundles / "current" / "history.parquet")
    return history.loc[history.scenario == scenario, "user_id"].value_counts().index[0]


@pytest.mark.parametrize("scenario", ["shop", "video", "ads"])
def test_recommend_each_scenario(server, workspace, scenario):
    status, body = recommend(server, user_id=warm_user(workspace, scenario),
                             scenario=scenario, k=7)
    assert status == 200, body
    assert len(body["items"]) == 7 and len({i["item_id"] for i in body["items"]}) == 7
    assert body["scenario"] == scenario and body["cold_start"] is False
    assert len(body["request_id"]) == 32 and body["bundle_version"]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    prefix = {"shop": "s", "video": "v", "ads": "a"}[scenario]
    assert all(i["item_id"].startswith(prefix) for i in body["items"])
    for item in body["items"]:
        assert "popularity.click" in item["scores"]
        assert ("cheapest.click" in item["scores"]) == (scenario == "shop")
    # why each item ranked: every scorer's term of its score, adding up to the score up to
    # one constant per answer
    gaps = []
    for item in body["items"]:
        parts = item["contributions"]
        assert set(item["scores"]) <= set(parts)
        gaps.append(item["score"] - sum(v for v in parts.values() if v is not None))
    assert max(gaps) - min(gaps) < 1e-6


def test_default_k_and_exclude_seen(server, workspace):
    import pandas as pd

    status, body = recommend(server)
    assert status == 200 and len(body["items"]) == 10
    history = pd.read_parquet(workspace.bundles / "current" / "history.parquet")
    seen = set(history[(history.user_id == USER) & (history.scenario == "shop")].item_id)
    assert seen and not seen & {i["item_id"] for i in body["items"]}
    status, everything = recommend(server, exclude_seen=False, k=100)
    assert seen & {i["item_id"] for i in everything["items"]}


def test_explicit_candidates_are_ranked_and_unknown_ones_reported(server):
    status, body = recommend(server, candidates=["s00001", "s00002", "nope", "s00001"],
                             exclude_seen=False)
    assert status == 200
    assert sorted(i["item_id"] for i in body["items"]) == ["s00001", "s00002"]
    assert body["unknown_candidates"] == ["nope"]


def test_unknown_user_gets_the_cold_start_fallback(server):
    status, body = recommend(server, user_id="someone-brand-new", k=5)
    assert status == 200
    assert body["cold_start"] is True and body["fallback"] == "popularity"
    assert all(set(i["scores"]) == {"popularity.click"} for i in body["items"])


def test_unknown_scenario_is_404_listing_the_known_ones(server):
    status, body = recommend(server, scenario="news")
    assert status == 404
    assert body["detail"]["known_scenarios"] == ["ads", "shop", "video"]
    assert "news" in body["detail"]["message"]


@pytest.mark.parametrize("body,field", [
    ({"user_id": USER, "scenario": "shop", "k": 0}, "k"),
    ({"user_id": USER, "scenario": "shop", "k": 101}, "k"),  # over the scenario's max_k
    ({"user_id": USER, "scenario": "shop", "k": "5"}, "k"),
    ({"user_id": USER, "scenario": "shop", "k": 2.5}, "k"),
    ({"user_id": 42, "scenario": "shop"}, "user_id"),
    ({"user_id": "", "scenario": "shop"}, "user_id"),
    ({"scenario": "shop"}, "user_id"),
    ({"user_id": USER}, "scenario"),
    ({"user_id": USER, "scenario": "shop", "candidates": []}, "candidates"),
    ({"user_id": USER, "scenario": "shop", "candidates": "s00001"}, "candidates"),
    ({"user_id": USER, "scenario": "shop", "exclude_seen": "yes"}, "exclude_seen"),
    ({"user_id": USER, "scenario": "shop", "context": [1]}, "context"),
    ({"user_id": USER, "scenario": "shop", "kk": 3}, "kk"),
])
def test_invalid_requests_are_422_naming_the_field(server, body, field):
    status, answer = server.call("POST", "/v1/recommend", body)
    assert status == 422, answer
    assert field in {str(part) for err in answer["detail"] for part in err["loc"]}


@pytest.mark.parametrize("k", [0, -3, 101, 10**30, "5", 5.0, True, None])
def test_one_rule_for_k(server, k):
    body = {"user_id": USER, "scenario": "shop", "k": k}
    status, answer = server.call("POST", "/v1/recommend", body)
    if k is None:  # null: the scenario's default
        assert status == 200 and len(answer["items"]) == 10
        return
    assert status == 422
    [error] = answer["detail"]
    assert error["loc"] == ["body", "k"]
    assert error["msg"] == (f"k must be an integer between 1 and 100 for scenario 'shop', "
                            f"got {k!r}")
    if isinstance(k, int) and not isinstance(k, bool):
        status, answer = server.call("GET", f"/v1/items/s00001/similar?scenario=shop&k={k}")
        assert status == 422 and answer["detail"][0]["msg"] == error["msg"]
    status, answer = server.call("GET", "/v1/items/s00001/similar?scenario=shop&k=abc")
    assert status == 422 and "between 1 and 100" in answer["detail"][0]["msg"]
    status, openapi = server.call("GET", "/openapi.json")
    schema = openapi["components"]["schemas"]["RecommendRequest"]["properties"]["k"]
    assert "between 1 and the scenario's `max_k`" in schema["description"]


def test_the_cli_answers_in_the_http_shape(server, workspace):
    status, http_answer = recommend(server, k=3)
    cli = json.loads(workspace.cli("recommend", USER, "--scenario", "shop", "-k", "3",
                                   "--json").stdout)
    assert set(cli) == set(http_answer)
    assert [set(i) for i in cli["items"]] == [set(i) for i in http_answer["items"]]
    strip = {"request_id"}
    assert {k: v for k, v in cli.items() if k not in strip} == {
        k: v for k, v in http_answer.items() if k not in strip}


def test_the_cli_and_the_server_agree_after_feedback(server, workspace):
    user = "u00031"
    status, first = recommend(server, user_id=user, scenario="video", k=5)
    status, ack = server.call("POST", "/v1/feedback", {"events": [
        {"request_id": first["request_id"], "item_id": i["item_id"], "event_type": "like"}
        for i in first["items"][:2]]})
    assert ack["accepted"] == 2
    status, http_answer = recommend(server, user_id=user, scenario="video", k=5)
    cli = json.loads(workspace.cli("recommend", user, "--scenario", "video", "-k", "5",
                                   "--json").stdout)
    assert [i["item_id"] for i in cli["items"]] == [i["item_id"] for i in http_answer["items"]]
    assert not {i["item_id"] for i in first["items"][:2]} & {i["item_id"] for i in cli["items"]}


def test_metrics_count_curl_style_bodies_under_their_route(server):
    body = json.dumps({"user_id": USER, "scenario": "ads", "k": 1}).encode()
    before = _count(server, 'route="/v1/recommend",status="200"')
    unmatched = _count(server, 'route="unmatched"')
    status, _ = server.call("POST", "/v1/recommend", raw=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    assert _count(server, 'route="/v1/recommend",status="200"') == before + 1
    assert _count(server, 'route="unmatched"') == unmatched


def test_metrics_labels_do_not_grow_with_client_paths(server):
    for item in ("s00001", "s00002", "zz-made-up"):
        server.call("GET", f"/v1/items/{item}/similar/?scenario=shop")  # a slash redirect
        server.call("GET", f"/nothing/here/{item}")
    assert server.call("GET", "/openapi.json")[0] == 200
    metrics = server.call("GET", "/metrics")[1]
    assert "zz-made-up" not in metrics and "/nothing" not in metrics
    assert 'route="/openapi.json"' in metrics


def _count(server, labels):
    return sum(float(line.rsplit(" ", 1)[1])
               for line in server.call("GET", "/metrics")[1].splitlines()
               if line.startswith("hybridrec_http_requests_total{") and labels in line)


def test_malformed_json_is_422(server):
    status, answer = server.call("POST", "/v1/recommend", raw=b'{"user_id": ')
    assert status == 422 and answer["detail"][0]["type"] == "json_invalid"


def test_curl_style_body_without_json_content_type_is_read(server):
    body = json.dumps({"user_id": USER, "scenario": "video", "k": 2}).encode()
    status, answer = server.call("POST", "/v1/recommend", raw=body,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and len(answer["items"]) == 2


def test_no_client_input_produces_a_server_error(server):
    rng = random.Random(0)
    atoms = [None, True, 0, -1, 10**30, 1.5, float("inf"), "", "x" * 5000, "shop", [], {},
             ["s00001"], {"a": [1]}, "\u0000", "😀"]
    fields = ["user_id", "scenario", "k", "context", "candidates", "exclude_seen", "zz"]
    for _ in range(150):
        body = {f: rng.choice(atoms) for f in rng.sample(fields, rng.randint(0, len(fields)))}
        raw = json.dumps(body, allow_nan=True).encode()
        for path in ("/v1/recommend", "/v1/feedback"):
            status, answer = server.call("POST", path, raw=raw)
            assert status < 500, (path, body, answer)
    for raw in (b"", b"[]", b"null", b"\xff\xfe", b'{"events": [null, 1, "x"]}', b"1e999"):
        for path in ("/v1/recommend", "/v1/feedback"):
            assert server.call("POST", path, raw=raw)[0] < 500, raw


def test_feedback_keeps_valid_events_and_rejects_bad_ones_by_index(server, workspace):
    status, rec = recommend(server, scenario="video", k=3)
    rid, item = rec["request_id"], rec["items"][0]["item_id"]
    events = [
        {"request_id": rid, "item_id": item, "event_type": "like"},
        {"request_id": "not-a-request", "item_id": item, "event_type": "like"},
        {"request_id": rid, "item_id": item, "event_type": "purchase"},  # not a video event
        {"request_id": rid, "item_id": item, "event_type": "watch", "value": "lots"},
        {"request_id": rid, "item_id": "zzz", "event_type": "watch"},
        {"request_id": rid, "item_id": item, "event_type": "watch", "value": 0.5,
         "timestamp": "2025-03-30T10:00:00Z"},
        "not an object",
        {"request_id": rid, "item_id": item, "event_type": "watch", "user_id": "someone-else"},
        {"request_id": rid, "item_id": item, "event_type": "watch", "surprise": 1},
        {"request_id": rid, "item_id": item, "event_type": "watch",
         "timestamp": "2025-03-30T10:00:00"},
    ]
    status, body = server.call("POST", "/v1/feedback", {"events": events})
    assert status == 200, body
    assert body["accepted"] == 2
    rejected = {r["index"]: " ".join(r["errors"]) for r in body["rejected"]}
    assert set(rejected) == {1, 2, 3, 4, 6, 7, 8, 9}
    assert "request_id" in rejected[1] and "event_type" in rejected[2]
    assert "value" in rejected[3] and "item_id" in rejected[4]
    assert "user_id" in rejected[7] and "surprise" in rejected[8] and "zone" in rejected[9]
    with sqlite3.connect(workspace.repo / "data" / "feedback.db") as db:
        rows = db.execute("SELECT event_type, value, event_timestamp FROM feedback "
                          "WHERE request_id = ? ORDER BY id", (rid,)).fetchall()
    assert rows[0][:2] == ("like", 1.0)
    assert rows[1] == ("watch", 0.5, "2025-03-30T10:00:00+00:00")


def test_feedback_with_nothing_valid_is_422(server):
    status, body = server.call("POST", "/v1/feedback", {"events": [{"request_id": "x"}]})
    assert status == 422 and body["rejected"][0]["index"] == 0
    status, body = server.call("POST", "/v1/feedback", {"events": []})
    assert status == 422


def test_feedback_changes_what_is_seen(server):
    status, first = recommend(server, user_id="u00010", scenario="video", k=3)
    top = first["items"][0]["item_id"]
    server.call("POST", "/v1/feedback", {"events": [
        {"request_id": first["request_id"], "item_id": top, "event_type": "watch"}]})
    status, again = recommend(server, user_id="u00010", scenario="video", k=3)
    assert top not in {i["item_id"] for i in again["items"]}


def test_acknowledged_feedback_survives_a_killed_server(workspace_copy):
    """``kill -9`` while feedback streams in: after a restart every acknowledged event is in
    the SQLite log, and at most the one call in flight besides. (A copy of the workspace:
    its lists would count in the adaptive state of other tests' copies.)"""
    from feedback_stream import FeedbackStream, assert_each_once, events_for

    workspace = workspace_copy
    srv = Server(workspace, "--refresh-seconds", "0")
    srv.wait_ready()
    try:
        answers = []
        for n in range(12):
            status, rec = srv.call("POST", "/v1/recommend",
                                   {"user_id": f"u{n + 100:05d}", "scenario": "shop", "k": 3})
            assert status == 200, rec
            answers.append(rec)
    except BaseException:
        srv.stop(signal.SIGKILL)
        raise
    acknowledged = FeedbackStream(srv.base, events_for(answers)).killed_midway(
        lambda: srv.stop(signal.SIGKILL))
    again = Server(workspace, "--refresh-seconds", "0")  # opens the log after the crash
    again.wait_ready()
    again.stop()
    ids = [answer["request_id"] for answer in answers]
    with sqlite3.connect(workspace.repo / "data" / "feedback.db") as db:
        rows = db.execute(f"SELECT request_id, item_id, event_type FROM feedback WHERE "
                          f"request_id IN ({','.join('?' * len(ids))})", ids).fetchall()
    assert_each_once(acknowledged, rows)


def test_operational_endpoints(server, workspace):
    assert server.call("GET", "/healthz") == (200, {"status": "ok"})
    status, ready = server.call("GET", "/readyz")
    # the catalogue of every scenario whose scorers read item features (120 items per content
    # scenario, 30 ads): shop's prices, for cheapest, the text embeddings where hybridrec-llm
    # is installed, the ads' bids and click counts where hybridrec-ctr is
    manifest = json.loads((workspace.bundles / ready["bundle_version"] / "manifest.json")
                          .read_text())
    reading = [n for n, p in manifest["scenarios"].items() if p["features"]["item"]]
    assert "shop" in reading
    sizes = {"shop": 120, "video": 120, "ads": 30}
    assert status == 200 and ready["items_cached"] == sum(sizes[n] for n in reading)
    log = server.log.read_text()
    assert f"serving bundle {ready['bundle_version']}" in log and " s after start" in log
    from datetime import UTC, datetime, timedelta

    refreshed = datetime.fromisoformat(ready["items_refreshed_at"])
    assert datetime.now(UTC) - timedelta(hours=1) < refreshed <= datetime.now(UTC)
    status, scenarios = server.call("GET", "/v1/scenarios")
    assert [s["name"] for s in scenarios] == ["ads", "shop", "video"]
    shop = next(s for s in scenarios if s["name"] == "shop")
    assert "cheapest" in shop["scorers"] and shop["items"] == 120
    status, plugins = server.call("GET", "/v1/plugins")
    assert "hello" in {p["name"] for p in plugins}
    assert recommend(server)[0] == 200
    status, metrics = server.call("GET", "/metrics")
    assert 'hybridrec_http_requests_total{method="POST",route="/v1/recommend",status="200"}' \
        in metrics
    assert "hybridrec_bundle_info{version=" in metrics
    status, openapi = server.call("GET", "/openapi.json")
    assert {"/v1/recommend", "/v1/feedback"} <= set(openapi["paths"])
    assert server.call("GET", "/docs")[0] == 200


def test_concurrent_requests_all_succeed(server):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        scenario = ("shop", "video", "ads")[i % 3]
        return recommend(server, user_id=f"u{i % 300:05d}", scenario=scenario, k=5)[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(120)))
    assert statuses == [200] * 120


def test_server_follows_a_newly_trained_bundle(workspace_copy):
    srv = Server(workspace_copy, "--refresh-seconds", "0.5")
    srv.wait_ready()
    try:
        before = srv.call("GET", "/readyz")[1]["bundle_version"]
        # ads alone, to be quick: the new bundle serves that scenario only
        workspace_copy.cli("train", "--quiet", "--no-refit", "--scenario", "ads")
        import time

        deadline = time.monotonic() + 60
        version = before
        while version == before and time.monotonic() < deadline:
            time.sleep(0.5)
            version = srv.call("GET", "/readyz")[1]["bundle_version"]
        assert version != before
        assert version == (workspace_copy.bundles / "current").resolve().name
        status, body = srv.call("POST", "/v1/recommend", {"user_id": USER, "scenario": "ads"})
        assert status == 200 and body["bundle_version"] == version
    finally:
        srv.stop()


def test_a_server_without_a_bundle_is_alive_not_ready_and_keeps_trying(workspace, tmp_path):
    from dataclasses import replace

    empty = replace(workspace, env={**workspace.env, "HYBRIDREC_BUNDLES": str(tmp_path)})
    srv = Server(empty, "--refresh-seconds", "0")
    try:
        import time

        deadline = time.monotonic() + 60
        status, body = 0, {}
        while time.monotonic() < deadline:
            try:
                status, body = srv.call("GET", "/readyz")
                if "hybridrec train" in str(body):
                    break
            except OSError:
                pass
            time.sleep(0.25)
        assert status == 503 and "hybridrec train" in body["detail"]
        assert srv.call("GET", "/healthz")[0] == 200
        status, body = srv.call("POST", "/v1/recommend", {"user_id": USER, "scenario": "shop"})
        assert status == 503
        # a bundle that appears later is picked up without a restart
        (tmp_path / "current").symlink_to((workspace.bundles / "current").resolve())
        deadline = time.monotonic() + 60
        while srv.call("GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.25)
        status, body = srv.call("POST", "/v1/recommend", {"user_id": USER, "scenario": "shop"})
        assert status == 200 and body["items"]
    finally:
        srv.stop()


def test_bodies_above_the_limit_are_413_naming_it(server):
    import http.client

    from hybridrec.server.models import MAX_BODY_BYTES

    big = json.dumps({"user_id": USER, "scenario": "shop",
                      "context": {"note": "x" * (MAX_BODY_BYTES + 10)}}).encode()
    for path in ("/v1/recommend", "/v1/feedback"):
        # a declared length above the limit is refused before the body is read (and the
        # connection closed: a client still sending its body would see a broken pipe)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(big)))
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        assert response.status == 413 and f"limit of {MAX_BODY_BYTES} bytes" in body["detail"]
    # a chunked body declares no length: it is counted as it arrives
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))
    connection.request("POST", "/v1/recommend", body=chunks, encode_chunked=True,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    status, body = server.call("POST", "/v1/recommend", {"user_id": USER, "scenario": "shop",
                                                         "k": 2})
    assert status == 200  # the server is fine


def test_too_many_recent_items_is_422_naming_the_context(server):
    status, body = recommend(server, context={"recent_items": ["s00001"] * 1001})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "context"]
    assert "at most 1000" in body["detail"][0]["msg"]


def test_a_half_written_item_table_is_skipped_then_read_whole(workspace_copy):
    """The item table read while another program writes it (truncated): the refresh logs
    why once and keeps serving; the table written whole adds its new item."""
    import time

    import pandas as pd

    from hybridrec import columns as C
    from hybridrec.data.tables import write_parquet

    path = workspace_copy.repo / "data" / C.ITEMS_FILE
    items = pd.read_parquet(path)
    srv = Server(workspace_copy, "--refresh-seconds", "0.2")
    srv.wait_ready()
    try:
        path.write_bytes(path.read_bytes()[:4])
        time.sleep(1.5)  # several refreshes meet the same broken file
        body = {"user_id": USER, "scenario": "shop", "candidates": ["s-new-1", "s00001"]}
        status, answer = srv.call("POST", "/v1/recommend", body)
        assert status == 200 and answer["unknown_candidates"] == ["s-new-1"], answer
        log = srv.log.read_text()
        assert log.count(f"could not read {path}") == 1, log
        assert "Traceback" not in log, log

        new = items[items[C.SCENARIO] == "shop"].iloc[[0]].assign(**{C.ITEM_ID: "s-new-1"})
        write_parquet(pd.concat([items, new], ignore_index=True), path)
        deadline = time.monotonic() + 30
        while answer["unknown_candidates"] and time.monotonic() < deadline:
            time.sleep(0.2)
            status, answer = srv.call("POST", "/v1/recommend", body)
        assert status == 200 and answer["unknown_candidates"] == [], answer
        assert "s-new-1" in {i["item_id"] for i in answer["items"]}
    finally:
        srv.stop()
    assert not list(path.parent.glob("*.partial"))
