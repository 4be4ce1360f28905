"""Scale-out on Redis, end to end: the trained session workspace switched by configuration to
Feast's Redis online store and to the Redis feedback log and adaptive state, on one real
``redis-server`` (installed from Debian's package when missing, ``appendonly yes``,
``appendfsync always``), with two ``hybridrec serve`` replicas. They answer as the SQLite
server does, count feedback sent to either once, lose nothing acknowledged across a restart,
and nothing acknowledged when a server and Redis are killed with ``kill -9`` mid-stream."""

from __future__ import annotations

import shutil
import signal
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from feedback_stream import FeedbackStream, assert_each_once, events_for
from redis_server import RedisServer

from conftest import BIN, Server, Workspace, run
from hybridrec.redislog import RedisFeedbackLog

pytestmark = pytest.mark.redis

PREFIX = "scaleout"
SCENARIOS = ("shop", "video", "ads")


@dataclass
class Deployment:
    ws: Workspace
    redis: RedisServer
    #: ``{(user, scenario): answer}`` from a server on the SQLite stores, before the switch.
    sqlite_answers: dict[tuple[str, str], dict[str, Any]]
    users: list[str]
    replicas: list[Server] = field(default_factory=list)

    def log(self) -> RedisFeedbackLog:
        return RedisFeedbackLog(self.redis.url, PREFIX, create=False)

    def start(self, n: int) -> list[Server]:
        servers = [Server(self.ws, "--refresh-seconds", "0") for _ in range(n)]
        for server in servers:
            server.wait_ready()
        return servers


def warm_users(ws: Workspace, scenario: str, n: int) -> list[str]:
    import pandas as pd

    history = pd.read_parquet(ws.bundles / "current" / "history.parquet")
    counts = history.loc[history.scenario == scenario, "user_id"].value_counts()
    return list(counts.index[:n])


def recommend(server: Server, user: str, scenario: str, k: int = 5) -> dict[str, Any]:
    status, body = server.call("POST", "/v1/recommend",
                               {"user_id": user, "scenario": scenario, "k": k})
    assert status == 200, body
    assert isinstance(body, dict)
    return body


@pytest.fixture(scope="module")
def deployment(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    """A copy of the session workspace: first served from its SQLite stores (the answers to
    compare with), then applied and materialised to Feast's Redis online store, its SQLite
    online store moved away, and its feedback log and adaptive state in Redis."""
    redis = RedisServer(tmp_path_factory.mktemp("redis-data"))
    root = tmp_path_factory.mktemp("scaleout") / "copy"
    shutil.copytree(workspace.root, root, symlinks=True,
                    ignore=shutil.ignore_patterns("server-*.log", "feedback.db*"))
    repo = root / "feature_repo"
    env = {**workspace.env, "HYBRIDREC_FEATURE_REPO": str(repo),
           "HYBRIDREC_BUNDLES": str(root / "bundles")}
    ws = Workspace(root, repo, root / "bundles", env)
    users = list(dict.fromkeys([u for s in SCENARIOS for u in warm_users(ws, s, 3)]
                               + ["u00001", "never-seen-user"]))
    reference = Server(ws, "--refresh-seconds", "0")  # SQLite online store and log
    try:
        reference.wait_ready()
        answers = {(u, s): recommend(reference, u, s) for u in users for s in SCENARIOS}
    finally:
        reference.stop()
    for path in (repo / "data").glob("feedback.db*"):  # the reference's log
        path.unlink()
    ws.env.update(FEAST_FS_YAML_FILE_PATH=str(repo / "feature_store.redis.yaml"),
                  HYBRIDREC_FEAST_REDIS=redis.feast_connection,
                  HYBRIDREC_STATE_URL=redis.url, HYBRIDREC_STATE_PREFIX=PREFIX)
    # a registry of its own: the copied one names the original's SQLite tables
    (repo / "data" / "registry.db").unlink()
    run([str(BIN / "feast"), "apply"], ws.env, cwd=repo)
    ws.cli("materialize")
    (repo / "data" / "online.db").rename(repo / "data" / "online.db.unused")
    deployed = Deployment(ws, redis, answers, users)
    yield deployed
    for server in deployed.replicas:
        server.stop()
    redis.stop()


@pytest.fixture(scope="module")
def replicas(deployment: Deployment) -> list[Server]:
    """Two replicas on the Redis deployment (stopped with it)."""
    deployment.replicas[:] = deployment.start(2)
    return deployment.replicas


def test_the_feature_store_and_the_log_are_in_redis(deployment, replicas):
    import redis

    client = redis.Redis.from_url(deployment.redis.url)
    try:
        keys = [k.decode(errors="replace") for k in client.scan_iter(count=1000)]
        feast_keys = [k for k in keys if not k.startswith(f"{PREFIX}:")]
        assert len(feast_keys) >= 300, "Feast's entity keys (300 users, the items, the ads)"
        assert f"{PREFIX}:meta" in keys
    finally:
        client.close()
    assert not (deployment.ws.repo / "data" / "online.db").exists()
    assert not (deployment.ws.repo / "data" / "feedback.db").exists()
    for server in replicas:
        status, ready = server.call("GET", "/readyz")
        assert status == 200, ready


def test_replicas_answer_as_the_sqlite_server(deployment, replicas):
    n = 0
    for (user, scenario), expected in deployment.sqlite_answers.items():
        answer = recommend(replicas[n % 2], user, scenario)
        n += 1
        assert answer["cold_start"] == expected["cold_start"], (user, scenario)
        assert [i["item_id"] for i in answer["items"]] == \
            [i["item_id"] for i in expected["items"]], (user, scenario)
        assert [i["score"] for i in answer["items"]] == \
            pytest.approx([i["score"] for i in expected["items"]], rel=1e-9, abs=1e-12)
        assert answer.get("degraded") == expected.get("degraded"), (user, scenario)
        if expected["decision"] is not None:  # exploration 0 (the test config): greedy arm
            assert expected["decision"]["propensity"] == 1.0
            assert answer["decision"]["arm"] == expected["decision"]["arm"]
    assert n == len(SCENARIOS) * len(deployment.users)


def test_feedback_to_either_replica_is_counted_once(deployment, replicas):
    first, second = replicas
    before = first.call("GET", "/v1/scenarios/shop/policy")[1]
    served = [recommend(replicas[i % 2], user, "shop", k=3)
              for i, user in enumerate(f"u{n:05d}" for n in range(150, 170))]
    adaptive = [a for a in served if a["decision"] and a["decision"]["policy"] == "adaptive"]
    assert len(adaptive) >= 10
    rewarded = adaptive[::2]
    for i, answer in enumerate(rewarded):  # each event to one replica, the next to the other
        for j, (item, kind) in enumerate(((0, "purchase"), (1, "cart"))):
            target = replicas[(i + j) % 2]
            status, ack = target.call("POST", "/v1/feedback", {"events": [{
                "request_id": answer["request_id"],
                "item_id": answer["items"][item]["item_id"], "event_type": kind}]})
            assert status == 200 and ack["accepted"] == 1, ack
    policies = [srv.call("GET", "/v1/scenarios/shop/policy")[1] for srv in replicas]
    assert policies[0]["updates"] == policies[1]["updates"] == \
        before["updates"] + len(rewarded)  # the cart after a purchase raises nothing
    for policy in policies:
        assert _totals(policy)["pulls"] == _totals(before)["pulls"] + len(adaptive)
        assert _totals(policy)["reward"] == pytest.approx(
            _totals(before)["reward"] + len(rewarded))
    log = deployment.log()
    try:
        recorded = log.served(a["request_id"] for a in served)
        for answer in served:
            items = [i["item_id"] for i in answer["items"]]
            expected = [(items[0], "purchase"), (items[1], "cart")] \
                if answer in rewarded else []
            assert recorded[answer["request_id"]]["events"] == expected
        frame = log.events()
        assert frame.feedback_id.is_unique
        ids = {a["request_id"] for a in rewarded}
        mine = [d for d in log.decisions("shop") if d["request_id"] in ids]
        assert sum(len(d["feedback"]) for d in mine) == 2 * len(rewarded)
    finally:
        log.close()
    # what one replica took, the other knows: a purchase is not recommended again
    answer = rewarded[0]
    bought = answer["items"][0]["item_id"]
    again = recommend(replicas[1], answer["user_id"], "shop", k=10)
    assert bought not in {i["item_id"] for i in again["items"]}


def _totals(policy: dict[str, Any]) -> dict[str, float]:
    arms = [arm["total"] for context in policy["contexts"] for arm in context["arms"]]
    return {"pulls": sum(a["pulls"] for a in arms), "reward": sum(a["reward"] for a in arms)}


def test_training_reads_the_feedback_in_redis(deployment, replicas):
    """The next training run joins the feedback the replicas took (``load_inputs``), up to
    the id it records for serving."""
    from hybridrec import columns as C
    from hybridrec.data.tables import read_table
    from hybridrec.training.data import load_inputs
    from hybridrec.workspace import Workspace as Paths

    ws = deployment.ws
    paths = Paths(ws.repo, ws.bundles, state_url=deployment.redis.url, state_prefix=PREFIX)
    log = deployment.log()
    try:
        feedback = log.events()
    finally:
        log.close()
    assert len(feedback) > 0, "the tests before took feedback"
    inputs = load_inputs(paths)
    logged = read_table(ws.repo / "data", C.EVENTS_FILE)
    assert len(inputs.events) == len(logged) + len(feedback)
    assert inputs.feedback_until == int(feedback.feedback_id.max())


def not_ready_naming(server: Server, url: str, timeout: float = 120) -> None:
    """Wait until ``/readyz`` answers 503 with a reason that names ``url``."""
    deadline, body = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited: {server.log.read_text()}")
        try:
            status, body = server.call("GET", "/readyz")
        except (urllib.error.URLError, ConnectionError):
            status = None
        if status == 503 and url in str(body):
            return
        assert status != 200, "ready without its feedback log"
        time.sleep(0.2)
    raise AssertionError(f"/readyz never named {url}: {body}")


def test_a_restart_of_the_replicas_and_redis_loses_nothing(deployment, replicas):
    answer = recommend(replicas[0], "u00180", "shop", k=3)
    status, ack = replicas[1].call("POST", "/v1/feedback", {"events": [
        {"request_id": answer["request_id"], "item_id": answer["items"][0]["item_id"],
         "event_type": "purchase"}]})
    assert status == 200 and ack["accepted"] == 1
    before = replicas[0].call("GET", "/v1/scenarios/shop/policy")[1]
    log = deployment.log()
    events_before = log.events()
    log.close()
    for server in replicas:
        server.stop()
    deployment.redis.stop()  # a clean shutdown; it starts again from its append-only file
    replicas[:] = [Server(deployment.ws, "--refresh-seconds", "0") for _ in range(2)]
    for server in replicas:  # Redis still down: up, not ready, and saying why
        not_ready_naming(server, deployment.redis.url)
    deployment.redis.start()
    for server in replicas:  # ready by themselves once Redis is back
        server.wait_ready()
    for server in replicas:
        after = server.call("GET", "/v1/scenarios/shop/policy")[1]
        assert after["updates"] == before["updates"] and after["contexts"] == before["contexts"]
    log = deployment.log()
    try:
        assert log.events().equals(events_before)
        assert log.served([answer["request_id"]])[answer["request_id"]]["events"] == [
            (answer["items"][0]["item_id"], "purchase")]
    finally:
        log.close()
    # and the restarted replicas go on sharing it
    status, ack = replicas[0].call("POST", "/v1/feedback", {"events": [
        {"request_id": answer["request_id"], "item_id": answer["items"][1]["item_id"],
         "event_type": "view"}]})
    assert status == 200 and ack["accepted"] == 1


def test_kill_9_of_a_server_and_redis_mid_stream_loses_nothing_acknowledged(deployment,
                                                                           replicas):
    """Feedback streams at one replica; Redis and that replica die with ``kill -9``; Redis
    restarts from its append-only file, a new replica takes the dead one's place, and the
    other replica, which lived through it, goes on."""
    target = replicas[0]
    answers = [recommend(target, f"u{n:05d}", scenario, k=3)
               for n in range(200, 212) for scenario in ("shop", "video")]
    acknowledged = FeedbackStream(target.base, events_for(answers)).killed_midway(
        lambda: deployment.redis.stop(signal.SIGKILL),  # Redis dies mid-stream, then the
        lambda: target.stop(signal.SIGKILL))  # replica
    deployment.redis.start()
    replicas[0:1] = deployment.start(1)
    log = deployment.log()
    try:
        recorded = log.served(a["request_id"] for a in answers)
        rows = [(q, item, kind) for q, row in recorded.items() for item, kind in row["events"]]
        frame = log.events()
    finally:
        log.close()
    assert_each_once(acknowledged, rows)
    assert frame.feedback_id.is_unique and len(frame) >= len(rows)
    # both replicas answer and take feedback on the lists served before the crash
    pending = next(a for a in answers if a["scenario"] == "shop")
    for server, kind in zip(replicas, ("view", "cart"), strict=True):
        status, ack = server.call("POST", "/v1/feedback", {"events": [
            {"request_id": pending["request_id"], "item_id": pending["items"][2]["item_id"],
             "event_type": kind}]})
        assert status == 200 and ack["accepted"] == 1, ack
