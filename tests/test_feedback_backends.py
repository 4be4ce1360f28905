"""The feedback log's behaviour, the same tests run against every backend (SQLite, and Redis
on a real ``redis-server``) so that they cannot drift: what a served row and a feedback batch
record, rewards credited once, the policy's counts and window, operator controls, the
decisions off-policy evaluation reads, bounded user histories, the event frame training
reads, restarts and two processes writing at once. Then what only the Redis backend has:
its configuration, its errors and its durability check."""

from __future__ import annotations

import logging
import multiprocessing
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from redis_server import RedisServer, free_port

from hybridrec import columns as C
from hybridrec.adaptive import ADAPTIVE, FROZEN, OFFLINE
from hybridrec.feedback import FeedbackLog, FeedbackStoreError, SqliteFeedbackLog, open_feedback
from hybridrec.pipeline import Decision
from hybridrec.workspace import Workspace

NOW = datetime(2025, 3, 1, tzinfo=UTC).isoformat()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def open_spec(spec: tuple[str, ...]) -> FeedbackLog:
    """A log from a picklable description (what a spawned process opens)."""
    if spec[0] == "sqlite":
        return FeedbackLog(Path(spec[1]))
    from hybridrec.redislog import RedisFeedbackLog

    return RedisFeedbackLog(spec[1], spec[2])


@dataclass
class Backend:
    name: str
    spec: tuple[str, ...]

    def open(self) -> FeedbackLog:
        return open_spec(self.spec)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", ("sqlite", str(tmp_path / "feedback.db")))
    server = request.getfixturevalue("redis_server")
    return Backend("redis", ("redis", server.url, f"test-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def log(backend: Backend) -> Iterator[FeedbackLog]:
    opened = backend.open()
    yield opened
    opened.close()


def decision(arm: str = "toward:a.click", activity: str = "light",
             policy: str = ADAPTIVE) -> Decision:
    return Decision(policy, arm, {OFFLINE: 0.8, "toward:a.click": 0.1, "toward:b.click": 0.1},
                    {"activity": activity}, [1.0, 0.5], {arm: ["i1", "i2"]},
                    {"i1": 0.25})


def serve(log: FeedbackLog, request_id: str, scenario: str = "shop",
          arm: str = "toward:a.click", activity: str = "light", policy: str = ADAPTIVE,
          user: str = "u1", version: str = "v1") -> None:
    chosen = None if policy is None else decision(arm, activity, policy)
    log.log_served(request_id, NOW, user, scenario, version, False, ["i1", "i2"], [1.0, None],
                   chosen)


def event(request_id: str, reward: float = 0.0, scenario: str = "shop", item: str = "i1",
          kind: str = "purchase", user: str = "u1", value: float = 1.0,
          at: str = NOW) -> dict[str, object]:
    return {"request_id": request_id, C.USER_ID: user, C.ITEM_ID: item, C.SCENARIO: scenario,
            C.EVENT_TYPE: kind, C.VALUE: value, C.EVENT_TIMESTAMP: at, "reward": reward}


def test_served_rows_list_the_events_already_recorded(log):
    serve(log, "r1")
    serve(log, "r2", policy=None)  # no decision (a cold start's fallback)
    assert log.served(["r1", "never", "r1"]) == {
        "r1": {"user_id": "u1", "scenario": "shop", "items": ["i1", "i2"], "events": []}}
    log.append([event("r1", kind="view"), event("r1", item="i2", kind="cart")], NOW)
    log.append([event("r2", kind="view")], NOW)
    served = log.served(["r1", "r2"])
    assert served["r1"]["events"] == [("i1", "view"), ("i2", "cart")]
    assert served["r2"]["events"] == [("i1", "view")]
    assert log.served([]) == {}


def test_a_reward_is_credited_once_per_list_and_only_upwards(log):
    serve(log, "r1")
    serve(log, "r2", scenario="video", arm=OFFLINE)
    assert log.policy_counts("v1", "shop") == {("light", "toward:a.click"): (1.0, 0.0)}
    assert log.append([event("r1", 0.2, kind="cart")], NOW) == 1
    assert log.append([event("r1", 1.0), event("r1", 1.0)], NOW) == 1  # raised once, to 1
    assert log.append([event("r1", 0.2, kind="cart")], NOW) == 0  # never lowered
    assert log.append([event("r1", 0.0, kind="view")], NOW) == 0
    assert log.policy_counts("v1", "shop") == {("light", "toward:a.click"): (1.0, 1.0)}
    assert log.policy_counts("v1", "video") == {("light", OFFLINE): (1.0, 0.0)}
    assert log.policy_counts("v2", "shop") == {}
    updates, history = log.policy_history("v1", "shop")
    assert updates == 2
    assert [h["reward"] for h in history] == pytest.approx([0.8, 0.2])
    assert history[0] == {"received_at": NOW, "request_id": "r1", "activity": "light",
                          "arm": "toward:a.click", "reward": pytest.approx(0.8)}
    assert log.policy_history("v1", "shop", limit=1)[1] == history[:1]
    assert log.policy_history("v1", "video") == (0, [])
    assert len(log.events()) == 5  # every event is kept, credited or not


def test_unknown_requests_and_frozen_decisions_update_nothing(log):
    serve(log, "frozen", policy=FROZEN)
    serve(log, "cold", policy=None)
    log.record_unmatched([{"request_id": "never-served", "item_id": "i1"}], NOW)
    assert log.append([event("never-served", 1.0), event("frozen", 1.0),
                       event("cold", 1.0)], NOW) == 0
    assert log.policy_counts("v1", "shop") == {}
    assert log.policy_counts("v1", "shop", window=10) == {}
    assert log.policy_history("v1", "shop") == (0, [])
    assert log.unmatched() == [{"received_at": NOW, "request_id": "never-served",
                                "event": {"request_id": "never-served", "item_id": "i1"}}]


def test_the_window_counts_the_latest_lists_with_their_current_rewards(log):
    for i in range(30):
        serve(log, f"early{i}", arm=OFFLINE)
        log.append([event(f"early{i}", 1.0)], NOW)
    for i in range(10):
        serve(log, f"late-b{i}", arm="toward:b.click")
        serve(log, f"late-o{i}", arm=OFFLINE)
        serve(log, f"heavy{i}", arm=OFFLINE, activity="heavy")
        serve(log, f"other{i}", arm=OFFLINE, scenario="video")
    for i in range(0, 10, 2):  # rewards that arrive after later lists were served
        log.append([event(f"late-b{i}", 0.5, kind="cart")], NOW)
    assert log.policy_counts("v1", "shop", window=30) == {
        ("light", OFFLINE): (10.0, 0.0), ("light", "toward:b.click"): (10.0, 2.5),
        ("heavy", OFFLINE): (10.0, 0.0)}
    assert log.policy_counts("v1", "shop") == {
        ("light", OFFLINE): (40.0, 30.0), ("light", "toward:b.click"): (10.0, 2.5),
        ("heavy", OFFLINE): (10.0, 0.0)}
    assert log.policy_counts("v1", "shop", window=10_000) == log.policy_counts("v1", "shop")
    assert log.policy_counts("v1", "shop", window=1) == {("heavy", OFFLINE): (1.0, 0.0)}


def test_operator_controls_are_per_scenario_and_bundle(log):
    assert log.policy_control("shop", "v1") == {}
    assert log.set_policy_control("shop", "v1", {"adapt": False}, NOW) == {"adapt": False}
    merged = log.set_policy_control("shop", "v1", {"exploration": 0.125}, NOW)
    assert merged == {"adapt": False, "exploration": 0.125}
    assert log.policy_control("shop", "v1") == merged
    assert log.policy_control("shop", "v2") == {}  # a new bundle starts from its config
    assert log.policy_control("video", "v1") == {}
    assert log.set_policy_control("shop", "v2", {"window": 100}, NOW) == {"window": 100}
    assert log.policy_control("shop", "v1") == {}  # the scenario now follows v2's
    assert log.policy_control("shop", "v2") == {"window": 100}


def test_decisions_come_in_the_order_served_with_their_feedback(log):
    serve(log, "a", scenario="shop")
    serve(log, "b", scenario="video", arm=OFFLINE, user="u2")
    serve(log, "c", scenario="shop", policy=None)
    log.append([event("a", 1.0, item="i2"), event("b", kind="like", scenario="video",
                                                   user="u2"), event("a", kind="view")], NOW)
    every = log.decisions()
    assert [d["request_id"] for d in every] == ["a", "b", "c"]
    first = every[0]
    assert {k: first[k] for k in ("user_id", "scenario", "bundle_version", "items")} == {
        "user_id": "u1", "scenario": "shop", "bundle_version": "v1", "items": ["i1", "i2"]}
    assert first["feedback"] == [("i2", "purchase"), ("i1", "view")]
    assert first["decision"] == {**decision().as_dict(), "lists": decision().lists,
                                 "estimates": {"i1": 0.25}}
    assert every[2]["decision"] is None and every[2]["feedback"] == []
    assert [d["request_id"] for d in log.decisions("shop")] == ["a", "c"]
    assert log.decisions("video")[0]["feedback"] == [("i1", "like")]
    assert log.decisions("ads") == []
    assert log.decision("a") == first["decision"]  # one by its request id
    assert log.decision("c") is None and log.decision("never served") is None


def test_a_users_history_is_the_latest_events_after_training(log):
    serve(log, "r1")
    for n in range(7):
        log.append([event("r1", item=f"i{n}", kind="view", value=n + 0.5,
                          at=f"2025-03-01T00:0{n}:00+00:00")], NOW)
    log.append([event("r1", scenario="video", kind="watch"),
                event("r1", user="u2", kind="view")], NOW)
    mine = log.events_of("u1", "shop")
    assert [item for item, *_ in mine] == [f"i{n}" for n in range(7)]
    assert mine[0] == ("i0", "view", "2025-03-01T00:00:00+00:00", 0.5)
    assert [item for item, *_ in log.events_of("u1", "shop", limit=3)] == ["i4", "i5", "i6"]
    ids = log.events().feedback_id.tolist()
    after = log.events_of("u1", "shop", after=ids[4])
    assert [item for item, *_ in after] == ["i5", "i6"]
    assert log.events_of("u1", "shop", after=ids[4], limit=1) == after[-1:]
    assert log.events_of("u1", "shop", after=ids[-1]) == []
    assert log.events_of("u1", "video") == [("i1", "watch", NOW, 1.0)]
    assert log.events_of("nobody", "shop") == []


def test_the_event_frame_training_reads(log):
    empty = log.events()
    assert len(empty) == 0
    assert list(empty.columns) == ["feedback_id", C.USER_ID, C.ITEM_ID, C.SCENARIO,
                                   C.EVENT_TYPE, C.VALUE, C.EVENT_TIMESTAMP]
    serve(log, "r1")
    log.append([event("r1", kind="view", value=0.25, at="2025-03-01T10:00:00+00:00"),
                event("r1", item="i2", at="2025-03-01T11:00:00+00:00")], NOW)
    log.append([event("r1", kind="cart", user="u1", at="2025-03-01T12:00:00+00:00")], NOW)
    frame = log.events()
    assert list(frame.columns) == list(empty.columns)
    assert frame.feedback_id.is_monotonic_increasing and frame.feedback_id.is_unique
    assert frame[C.ITEM_ID].tolist() == ["i1", "i2", "i1"]
    assert frame[C.EVENT_TYPE].tolist() == ["view", "purchase", "cart"]
    assert frame[C.VALUE].tolist() == [0.25, 1.0, 1.0]
    assert str(frame[C.EVENT_TIMESTAMP].dt.tz) == "UTC"
    assert frame[C.EVENT_TIMESTAMP].iloc[0] == pd.Timestamp("2025-03-01T10:00:00Z")


def test_everything_survives_closing_and_reopening(backend):
    first = backend.open()
    serve(first, "r1")
    first.append([event("r1", 1.0)], NOW)
    first.set_policy_control("shop", "v1", {"adapt": False}, NOW)
    first.record_unmatched([{"request_id": "x"}], NOW)
    first.close()
    again = backend.open()
    try:
        assert again.policy_counts("v1", "shop") == {("light", "toward:a.click"): (1.0, 1.0)}
        assert again.policy_counts("v1", "shop", window=5) == again.policy_counts("v1", "shop")
        assert again.policy_control("shop", "v1") == {"adapt": False}
        assert again.policy_history("v1", "shop")[0] == 1
        assert again.served(["r1"])["r1"]["events"] == [("i1", "purchase")]
        assert len(again.events()) == 1 and len(again.unmatched()) == 1
        serve(again, "r2")
        again.append([event("r2", kind="view")], NOW)
        assert again.events().feedback_id.is_unique  # ids go on after a reopen
    finally:
        again.close()


def _hammer(spec: tuple[str, ...], worker: int, n: int) -> None:
    log = open_spec(spec)
    for i in range(n):
        request_id = f"w{worker}-{i}"
        serve(log, request_id, arm=OFFLINE if i % 2 else "toward:a.click")
        log.append([event(request_id, 1.0)] * 2, NOW)  # the same event twice: credited once
        if i % 3 == 0:  # feedback arriving at one process for the other's requests
            log.append([event(f"w{1 - worker}-{i}", 0.2, kind="cart")], NOW)
    log.close()


def test_two_processes_lose_and_double_count_nothing(backend):
    backend.open().close()
    n = 100
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(backend.spec, w, n)) for w in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    log = backend.open()
    try:
        counts = log.policy_counts("v1", "shop")
        assert sum(p for p, _ in counts.values()) == 2 * n
        assert sum(r for _, r in counts.values()) == pytest.approx(2 * n)
        assert counts[("light", OFFLINE)][0] == counts[("light", "toward:a.click")][0] == n
        # each list once: credited by the first of its purchases, or by a cart that came
        # first and then the purchase (two updates), never more
        updates = log.policy_history("v1", "shop")[0]
        assert 2 * n <= updates <= 2 * n + 2 * len(range(0, n, 3))
        frame = log.events()
        # every event, each with its own id: two purchases per list, a cart every third
        assert len(frame) == 2 * (2 * n + len(range(0, n, 3))) and frame.feedback_id.is_unique
        assert log.policy_counts("v1", "shop", window=2 * n) == counts
    finally:
        log.close()


# Choosing the backend -----------------------------------------------------------------------
@pytest.mark.redis
def test_the_workspace_chooses_the_backend(tmp_path, redis_server, monkeypatch):
    from hybridrec.redislog import RedisFeedbackLog

    monkeypatch.setenv("HYBRIDREC_STATE_URL", redis_server.url)
    monkeypatch.setenv("HYBRIDREC_STATE_PREFIX", "chosen")
    ws = Workspace.from_env(tmp_path / "repo", tmp_path / "bundles")
    assert ws.state_url == redis_server.url and ws.state_prefix == "chosen"
    assert ws.feedback_location == f"{redis_server.url} (keys chosen:*)"
    assert open_feedback(ws, create=False) is None  # nothing logged there yet
    log = open_feedback(ws)
    assert isinstance(log, RedisFeedbackLog) and log.durable
    log.close()
    again = open_feedback(ws, create=False)
    assert isinstance(again, RedisFeedbackLog)
    again.close()
    assert not ws.feedback_db.exists()
    monkeypatch.delenv("HYBRIDREC_STATE_URL")
    sqlite = Workspace.from_env(tmp_path / "repo", tmp_path / "bundles")
    assert sqlite.state_url is None and sqlite.feedback_location == str(sqlite.feedback_db)
    assert open_feedback(sqlite, create=False) is None
    log = open_feedback(sqlite)
    assert isinstance(log, SqliteFeedbackLog) and sqlite.feedback_db.exists()
    log.close()


@pytest.mark.redis
def test_prefixes_keep_deployments_apart(redis_server):
    import redis

    from hybridrec.redislog import RedisFeedbackLog

    one, two = (RedisFeedbackLog(redis_server.url, f"apart-{n}") for n in (1, 2))
    try:
        serve(one, "r1")
        one.append([event("r1", 1.0)], NOW)
        assert two.served(["r1"]) == {} and len(two.events()) == 0
        assert two.policy_counts("v1", "shop") == {}
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        keys = set(client.scan_iter("apart-1:*"))
        assert "apart-1:served:r1" in keys and "apart-1:user:shop:u1" in keys
        assert not set(client.scan_iter("apart-2:*")) - {"apart-2:meta"}
        client.close()
    finally:
        one.close()
        two.close()


@pytest.mark.redis
def test_ids_with_separators_name_their_own_keys(redis_server):
    from hybridrec.redislog import RedisFeedbackLog

    log = RedisFeedbackLog(redis_server.url, f"sep-{uuid.uuid4().hex[:6]}")
    try:
        serve(log, "a:b", user="x:y", scenario="shop")
        serve(log, "a", user="x", scenario="shop:b")
        log.append([event("a:b", 1.0, user="x:y"), event("a", scenario="shop:b", user="x")],
                   NOW)
        assert log.events_of("x:y", "shop") == [("i1", "purchase", NOW, 1.0)]
        assert log.events_of("x", "shop:b") == [("i1", "purchase", NOW, 1.0)]
        assert log.events_of("x", "shop") == []
        assert log.served(["a:b"])["a:b"]["events"] == [("i1", "purchase")]
    finally:
        log.close()


# What only Redis has ----------------------------------------------------------------------
def test_an_unreachable_server_is_an_error_naming_the_url():
    from hybridrec.redislog import RedisFeedbackLog

    port = free_port()
    with pytest.raises(FeedbackStoreError, match=f"redis://127.0.0.1:{port}/0"):
        RedisFeedbackLog(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(FeedbackStoreError) as caught:
        RedisFeedbackLog(f"redis://app:s3cret@127.0.0.1:{port}/0")
    assert "s3cret" not in str(caught.value) and "app:***@127.0.0.1" in str(caught.value)
    with pytest.raises(FeedbackStoreError, match="not a Redis URL"):
        RedisFeedbackLog("http://127.0.0.1:6379/0")


@pytest.mark.redis
def test_a_server_that_does_not_fsync_each_write_is_named_in_a_warning(redis_server, caplog):
    import redis

    from hybridrec.redislog import RedisFeedbackLog

    client = redis.Redis.from_url(redis_server.url)
    client.config_set("appendfsync", "everysec")
    try:
        with caplog.at_level(logging.WARNING, logger="hybridrec.feedback"):
            log = RedisFeedbackLog(redis_server.url, "lax")
        assert log.durable is False
        log.close()
        assert "appendfsync everysec" in caplog.text and redis_server.url in caplog.text
    finally:
        client.config_set("appendfsync", "always")
        client.close()


@pytest.mark.redis
def test_a_command_retried_after_its_answer_was_lost_applies_once(redis_server, monkeypatch):
    """What the client does when a connection breaks after Redis ran a command: it sends the
    same command again (here, the same batch token)."""
    import hybridrec.redislog as redislog

    log = redislog.RedisFeedbackLog(redis_server.url, f"retry-{uuid.uuid4().hex[:6]}")
    try:
        serve(log, "r1")
        serve(log, "r1", arm=OFFLINE)  # the same row again: left as it was
        token = uuid.uuid4()
        monkeypatch.setattr(redislog.uuid, "uuid4", lambda: token)
        batch = [event("r1", 1.0), event("r1", kind="view")]
        assert log.append(batch, NOW) == 1
        assert log.append(batch, NOW) == 1  # the first answer, nothing written again
        assert len(log.events()) == 2
        assert log.policy_counts("v1", "shop") == {("light", "toward:a.click"): (1.0, 1.0)}
        assert log.policy_history("v1", "shop")[0] == 1
        assert [d["request_id"] for d in log.decisions()] == ["r1"]
        monkeypatch.undo()
        assert log.append(batch, NOW) == 0 and len(log.events()) == 4  # a new batch
    finally:
        log.close()


@pytest.mark.redis
def test_a_log_of_another_key_layout_is_refused(redis_server):
    import redis

    from hybridrec.redislog import RedisFeedbackLog

    client = redis.Redis.from_url(redis_server.url)
    client.hset("future:meta", "layout", "99")
    client.close()
    with pytest.raises(FeedbackStoreError, match="layout 99"):
        RedisFeedbackLog(redis_server.url, "future")


def test_importing_the_core_does_not_import_the_redis_client():
    code = ("import sys, hybridrec, hybridrec.feedback, hybridrec.workspace\n"
            "assert 'redis' not in sys.modules, 'redis imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.redis
def test_a_test_run_has_the_redis_backend(redis_server: RedisServer) -> None:
    """The module fixture is a real server with durable settings (not a stand-in)."""
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert client.info("server")["redis_version"]
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "always"}
    client.close()
