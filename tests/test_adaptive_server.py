"""The adaptive blend over HTTP: every served list's decision logged with its propensities,
feedback updating the right state once, two server processes and a restart, freezing, the
policy endpoint and its gauges. Real ``hybridrec serve`` processes on 127.0.0.1."""

import json
import signal
import time

import pytest

from conftest import Server
from hybridrec.feedback import FeedbackLog

USERS = [f"u{i:05d}" for i in range(10, 70)]


def exploring_pair(ws):
    """Two server processes on one workspace copy, exploring at 0.5 in shop and video,
    from an empty feedback log (other tests serve lists from the session workspace that the
    copy would carry)."""
    ws.drop_feedback_log()
    servers = [Server(ws, "--refresh-seconds", "0") for _ in range(2)]
    for srv in servers:
        srv.wait_ready()
    for scenario in ("shop", "video"):
        status, body = servers[0].admin("POST", f"/v1/admin/scenarios/{scenario}/policy",
                                       {"exploration": 0.5})
        assert status == 200 and body["exploration"] == 0.5
    return servers


@pytest.fixture(scope="module")
def shared(module_workspace_copy):
    """The pair, shared by the tests that count only their own requests' effects (the one
    that freezes shop comes last)."""
    servers = exploring_pair(module_workspace_copy)
    yield module_workspace_copy, servers
    for srv in servers:
        srv.stop()


@pytest.fixture
def exploring(workspace_copy):
    """A pair of its own, for a test that counts every pull."""
    servers = exploring_pair(workspace_copy)
    yield workspace_copy, servers
    for srv in servers:
        srv.stop()


def log_of(ws):
    return FeedbackLog(ws.repo / "data" / "feedback.db")


def recommend(srv, user, scenario="shop", k=5):
    status, body = srv.call("POST", "/v1/recommend",
                            {"user_id": user, "scenario": scenario, "k": k})
    assert status == 200, body
    return body


def test_every_served_list_logs_its_decision_and_propensities(shared):
    ws, servers = shared
    answers = [recommend(servers[i % 2], user) for i, user in enumerate(USERS)]
    warm = [a for a in answers if not a["cold_start"]]
    assert warm, "the small world has warm users in shop"
    arms = set()
    for answer in warm:
        decision = answer["decision"]
        assert decision["policy"] == "adaptive"
        assert sum(decision["probabilities"].values()) == pytest.approx(1.0)
        assert decision["propensity"] == decision["probabilities"][decision["arm"]] > 0
        assert len(decision["positions"]) == len(answer["items"])
        assert all(decision["propensity"] - 1e-6 <= p <= 1 + 1e-6
                   for p in decision["positions"])
        arms.add(decision["arm"])
    assert len(arms) > 1, "at exploration 0.5, sixty lists draw more than one arm"
    log = log_of(ws)
    logged = {d["request_id"]: d for d in log.decisions("shop")}
    log.close()
    for answer in answers:
        entry = logged[answer["request_id"]]
        assert entry["items"] == [i["item_id"] for i in answer["items"]]
        if answer["decision"] is not None:
            assert {k: entry["decision"][k] for k in answer["decision"]} == answer["decision"]
            assert set(entry["decision"]["lists"]) == set(answer["decision"]["probabilities"])


def test_feedback_moves_the_right_scenario_once(shared):
    ws, (first, second) = shared
    answer = next(a for a in (recommend(first, u) for u in USERS) if not a["cold_start"])
    before = {s: first.call("GET", f"/v1/scenarios/{s}/policy")[1] for s in ("shop", "video")}
    item = answer["items"][0]["item_id"]
    events = [{"request_id": answer["request_id"], "item_id": item, "event_type": "purchase"}]
    assert second.call("POST", "/v1/feedback", {"events": events})[1]["accepted"] == 1
    status, body = first.call("POST", "/v1/feedback", {"events": events})  # the same again
    assert status == 422 and "duplicate" in body["rejected"][0]["errors"][0]
    cart = [{**events[0], "event_type": "cart"}]  # accepted; gains less than the purchase
    assert first.call("POST", "/v1/feedback", {"events": cart})[1]["accepted"] == 1
    after = {s: first.call("GET", f"/v1/scenarios/{s}/policy")[1] for s in ("shop", "video")}
    assert after["shop"]["updates"] == before["shop"]["updates"] + 1  # credited once
    [latest] = after["shop"]["history"][:1]
    assert latest["request_id"] == answer["request_id"]
    assert latest["arm"] == answer["decision"]["arm"]
    assert latest["activity"] == answer["decision"]["context"]["activity"]
    assert after["video"]["updates"] == before["video"]["updates"]
    assert after["video"]["contexts"] == before["video"]["contexts"]
    # a request id never served: refused with the reason, kept for audit, no update
    status, body = first.call("POST", "/v1/feedback", {"events": [
        {"request_id": "never-served", "item_id": item, "event_type": "purchase"}]})
    assert status == 422 and "kept for audit" in body["rejected"][0]["errors"][0]
    assert first.call("GET", "/v1/scenarios/shop/policy")[1]["updates"] == \
        after["shop"]["updates"]


def test_a_frozen_scenario_serves_one_arm_and_learns_nothing(shared):
    ws, (first, second) = shared
    status, policy = first.admin("POST", "/v1/admin/scenarios/shop/policy",
                                 {"adapt": False, "refresh_seconds": 0})
    assert status == 200 and policy["policy"] == "adaptive-frozen"
    assert policy["refresh_seconds"] == 0
    deadline = time.monotonic() + 10  # the other process follows within a second or two
    while recommend(second, USERS[0])["decision"]["policy"] != "adaptive-frozen":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    answers = [recommend(second, user) for user in USERS[:20]]
    decisions = [a["decision"] for a in answers if a["decision"] is not None]
    assert decisions and all(d["policy"] == "adaptive-frozen" and d["propensity"] == 1.0
                             for d in decisions)
    status, body = second.call("POST", "/v1/feedback", {"events": [
        {"request_id": answers[0]["request_id"], "item_id": answers[0]["items"][0]["item_id"],
         "event_type": "purchase"}]})
    assert status == 200
    after = first.call("GET", "/v1/scenarios/shop/policy")[1]
    assert after["updates"] == policy["updates"]
    assert second.admin("POST", "/v1/admin/scenarios/shop/policy", {"exploration": 2})[0] == 422
    for refresh in (-1, 0.05, 301, "1"):
        status, body = second.admin("POST", "/v1/admin/scenarios/shop/policy",
                                    {"refresh_seconds": refresh})
        assert status == 422 and "refresh_seconds" in json.dumps(body), body
    # the other process now re-reads before every decision: resumed, its next answer adapts
    status, policy = first.admin("POST", "/v1/admin/scenarios/shop/policy", {"adapt": True})
    assert status == 200 and policy["policy"] == "adaptive"
    assert recommend(second, USERS[1])["decision"]["policy"] == "adaptive"
    assert second.admin("POST", "/v1/admin/scenarios/nope/policy", {"adapt": True})[0] == 404


def test_two_processes_and_a_restart_apply_every_update_once(exploring):
    ws, servers = exploring
    served = []
    for i, user in enumerate(USERS):
        answer = recommend(servers[i % 2], user, k=3)
        if answer["decision"] is not None and answer["decision"]["policy"] == "adaptive":
            served.append(answer)
    rewarded = served[::2]
    for i, answer in enumerate(rewarded):  # feedback to the other process than served it
        events = [{"request_id": answer["request_id"], "item_id": answer["items"][0]["item_id"],
                   "event_type": "purchase"}]
        status, body = servers[(i + 1) % 2].call("POST", "/v1/feedback", {"events": events})
        assert status == 200, body
    for srv in servers:
        srv.stop(signal.SIGKILL)
    again = Server(ws, "--refresh-seconds", "0")
    again.wait_ready()
    try:
        policy = again.call("GET", "/v1/scenarios/shop/policy")[1]
    finally:
        again.stop()
    pulls = sum(arm["total"]["pulls"] for c in policy["contexts"] for arm in c["arms"])
    reward = sum(arm["total"]["reward"] for c in policy["contexts"] for arm in c["arms"])
    assert pulls == len(served)
    assert reward == pytest.approx(len(rewarded)) and policy["updates"] == len(rewarded)
    by_arm = {}
    for answer in rewarded:
        key = (answer["decision"]["context"]["activity"], answer["decision"]["arm"])
        by_arm[key] = by_arm.get(key, 0) + 1
    for context in policy["contexts"]:
        for arm in context["arms"]:
            assert arm["total"]["reward"] == by_arm.get((context["activity"], arm["arm"]), 0)
            assert arm["window"] == arm["total"]  # fewer lists than the window
    # off-policy evaluation from these logs: the logging policy at its observed value
    ope = json.loads(ws.cli("evaluate", "--ope", "--json", "--policy", "logged",
                            "--policy", "offline", "--policy", "bundle:current").stdout)
    logged = ope["shop"]["logged"]
    assert logged["requests"] == len(USERS)
    assert logged["logged_value"] > 0
    for name in ("ips", "snips"):
        assert logged["estimates"][name]["value"] == pytest.approx(logged["logged_value"])
    assert set(ope["shop"]["offline"]["estimates"]) >= {"ips", "snips"}
    candidate = ope["shop"]["bundle:current"]  # the bundle's own ranking of each request
    assert candidate["requests"] == len(USERS) and candidate["skipped"] == 0
    assert set(candidate["estimates"]) >= {"ips", "snips"}


def test_the_policy_endpoint_and_its_gauges(server):
    status, policy = server.call("GET", "/v1/scenarios/video/policy")
    assert status == 200
    assert len(policy["arms"]) > 2  # offline, and one per scorer output at least
    assert policy["arms"][0] == {"arm": "offline", "mix": {"offline": 1.0}}
    assert all(arm["mix"] == {"offline": 0.5, arm["arm"].removeprefix("toward:"): 0.5}
               for arm in policy["arms"][1:])
    assert {c["activity"] for c in policy["contexts"]} == {"cold", "light", "heavy"}
    for context in policy["contexts"]:
        assert sum(a["probability"] for a in context["arms"]) == pytest.approx(1.0)
    assert policy["offline_prior"]["blender"] == "learned"
    assert server.call("GET", "/v1/scenarios/nope/policy")[0] == 404
    metrics = server.call("GET", "/metrics")[1]
    assert 'hybridrec_policy_arm_probability{activity="cold",arm="offline",scenario="video"}' \
        in metrics
    assert 'hybridrec_policy_updates{scenario="video"}' in metrics
