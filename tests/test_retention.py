"""The served log's retention, on both backends (SQLite, and Redis on a real
``redis-server``, through ``test_feedback_backends``' fixtures): old served rows go and recent
ones stay, the latest lists of every adaptive window stay however old while their bundle is
kept (so the policy's window counts the same), Redis's lists never name a deleted row,
feedback for a pruned request is treated as for one never served, the setting is checked,
and a real server prunes on its own, counting what it deleted."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import test_feedback_backends as shared
from click.testing import CliRunner
from test_feedback_backends import decision, event

from conftest import Server
from hybridrec.adaptive import ADAPTIVE, FROZEN, OFFLINE
from hybridrec.feedback import FeedbackLog, SqliteFeedbackLog
from hybridrec.workspace import ENV_SERVED_RETENTION, Workspace, served_retention_days

OLD = datetime(2025, 1, 1, tzinfo=UTC)
CUTOFF = datetime(2025, 2, 1, tzinfo=UTC)
RECENT = datetime(2025, 2, 20, tzinfo=UTC)
#: The backends' fixtures: each log test runs on SQLite and on a real redis-server.
backend, log, redis_server = shared.backend, shared.log, shared.redis_server


def serve_at(log: FeedbackLog, request_id: str, at: datetime, policy: str | None = ADAPTIVE,
             scenario: str = "shop", version: str = "v1", arm: str = OFFLINE,
             user: str = "u1") -> None:
    chosen = None if policy is None else decision(arm, "light", policy)
    log.log_served(request_id, at.isoformat(), user, scenario, version, False, ["i1", "i2"],
                   [1.0, None], chosen)


def ids(log: FeedbackLog) -> list[str]:
    return [d["request_id"] for d in log.decisions()]


def test_old_rows_go_recent_rows_stay_and_feedback_is_kept(log):
    for n in range(3):
        serve_at(log, f"old-cold{n}", OLD + timedelta(hours=n), policy=None)
        serve_at(log, f"old-frozen{n}", OLD + timedelta(hours=n, minutes=1), policy=FROZEN)
    serve_at(log, "recent", RECENT, policy=None)
    serve_at(log, "recent-frozen", RECENT + timedelta(seconds=1), policy=FROZEN)
    log.append([event("old-cold0", kind="view"), event("old-frozen1", 1.0),
                event("recent", kind="view")], RECENT.isoformat())
    log.record_unmatched([{"request_id": "never"}], RECENT.isoformat())
    events, unmatched = log.events(), log.unmatched()

    assert log.prune_served(CUTOFF) == 6
    assert ids(log) == ["recent", "recent-frozen"]
    assert set(log.served(["old-cold0", "old-frozen1", "recent"])) == {"recent"}
    assert log.events().equals(events)  # feedback is training data: all of it stays
    assert log.unmatched() == unmatched
    assert log.prune_served(CUTOFF) == 0  # idempotent
    assert log.prune_served(RECENT + timedelta(seconds=1)) == 1  # strictly before the cutoff
    assert ids(log) == ["recent-frozen"]


def test_the_adaptive_windows_lists_stay_however_old(log):
    for n in range(8):  # one bundle's scenario: the latest 3 are its window
        serve_at(log, f"shop{n}", OLD + timedelta(minutes=n), arm=OFFLINE if n % 2 else
                 "toward:a.click")
        serve_at(log, f"cold{n}", OLD + timedelta(minutes=n, seconds=30), policy=None)
    for n in range(2):  # fewer lists than the window: all stay
        serve_at(log, f"video{n}", OLD + timedelta(hours=1, minutes=n), scenario="video")
        serve_at(log, f"v2-{n}", OLD + timedelta(hours=2, minutes=n), version="v2")
    serve_at(log, "shop-recent", RECENT)
    log.append([event(f"shop{n}", 0.5 + n / 20) for n in range(8)]
               + [event("video1", 1.0, scenario="video")], RECENT.isoformat())
    pairs = [("v1", "shop"), ("v1", "video"), ("v2", "shop")]
    window = {p: log.policy_counts(*p, window=3) for p in pairs}
    totals = {p: log.policy_counts(*p) for p in pairs}
    history = {p: log.policy_history(*p) for p in pairs}

    # shop0..5 and every cold row; shop6, shop7 and shop-recent are the window
    assert log.prune_served(CUTOFF, keep_latest=3) == 6 + 8
    assert ids(log) == ["shop6", "shop7", "video0", "v2-0", "video1", "v2-1", "shop-recent"]
    assert {p: log.policy_counts(*p, window=3) for p in pairs} == window
    assert {p: log.policy_counts(*p) for p in pairs} == totals  # the totals are not rows
    assert {p: log.policy_history(*p) for p in pairs} == history
    assert log.prune_served(CUTOFF, keep_latest=0) == 6  # nothing kept: every old list goes
    assert ids(log) == ["shop-recent"]


def test_a_deleted_bundles_windows_go_with_its_other_old_rows(log):
    for n in range(3):
        serve_at(log, f"kept{n}", OLD + timedelta(minutes=n))  # v1: its bundle is there
        serve_at(log, f"gone{n}", OLD + timedelta(minutes=n, seconds=30), version="v0")
        serve_at(log, f"gone-video{n}", OLD + timedelta(hours=1, minutes=n), version="v0",
                 scenario="video")
    serve_at(log, "recent", RECENT, version="v0")  # a deleted bundle's recent list
    log.append([event("gone1", 1.0)], RECENT.isoformat())
    totals = log.policy_counts("v0", "shop")

    assert log.prune_served(CUTOFF, keep_latest=5) == 0  # every version's window stays
    assert log.prune_served(CUTOFF, keep_latest=5, versions={"v1"}) == 6
    assert ids(log) == ["kept0", "kept1", "kept2", "recent"]
    assert log.policy_counts("v0", "shop") == totals  # the totals are not rows
    assert log.policy_counts("v0", "video", window=5) == {}
    assert log.prune_served(CUTOFF, keep_latest=5, versions={"v1"}) == 0  # idempotent


def test_old_unmatched_feedback_goes_in_small_steps_recent_stays(log):
    for n in range(5):
        log.record_unmatched([{"request_id": f"old{n}", "item_id": "i1"}],
                             (OLD + timedelta(hours=n)).isoformat())
    log.record_unmatched([{"request_id": "recent", "item_id": "i1"}], RECENT.isoformat())
    log.record_unmatched([{"request_id": "late-old"}], OLD.isoformat())  # after a recent one
    assert log.prune_unmatched(CUTOFF, batch=2) == 5
    assert [u["request_id"] for u in log.unmatched()] == ["recent", "late-old"]
    assert log.prune_unmatched(CUTOFF) == 0  # the walk stops at the first recent entry
    assert log.prune_unmatched(RECENT + timedelta(seconds=1)) == 2
    assert log.unmatched() == []
    with pytest.raises(ValueError, match="time zone"):
        log.prune_unmatched(datetime(2025, 1, 1))


def test_small_steps_walk_past_the_kept_lists(log):
    for n in range(6):  # kept lists first, then rows to delete behind them
        serve_at(log, f"kept{n}", OLD + timedelta(minutes=n), scenario=f"s{n}")
    for n in range(5):
        serve_at(log, f"cold{n}", OLD + timedelta(hours=1, minutes=n), policy=None)
    serve_at(log, "recent", RECENT, policy=None)
    serve_at(log, "late-clock", OLD, policy=None)  # after a recent row: the next pass's
    assert log.prune_served(CUTOFF, keep_latest=1, batch=2) == 5
    assert ids(log) == [*(f"kept{n}" for n in range(6)), "recent", "late-clock"]
    with pytest.raises(ValueError, match="time zone"):
        log.prune_served(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="keep_latest"):
        log.prune_served(CUTOFF, keep_latest=-1)


def test_processes_pruning_at_once_delete_each_row_once(backend):
    first = backend.open()
    for n in range(300):
        serve_at(first, f"r{n}", OLD + timedelta(seconds=n),
                 policy=ADAPTIVE if n % 3 == 0 else None)
    logs = [first, backend.open()]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda lg=lg: counts.append(
        lg.prune_served(CUTOFF, keep_latest=10, batch=7))) for lg in logs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sum(counts) == 300 - 10
        assert ids(first) == [f"r{n}" for n in range(300 - 30, 300, 3)]
        assert first.policy_counts("v1", "shop", window=10) == {("light", OFFLINE): (10.0, 0.0)}
    finally:
        for lg in logs:
            lg.close()


def test_feedback_for_a_pruned_request_is_refused_as_never_served(log):
    from hybridrec.server.routes.feedback import _check_event

    serve_at(log, "gone", OLD, policy=None)
    log.prune_served(CUTOFF)
    assert log.served(["gone"]) == {}
    assert log.append([event("gone", 1.0)], RECENT.isoformat()) == 0  # credits nothing
    bounds = (OLD, RECENT)
    [message] = _check_event(_feedback("gone"), None, None, bounds, retention_days=30)
    assert message == ("request_id: unknown request id 'gone': never served, or served more "
                       "than 30 days ago and deleted since (--served-retention-days) (kept "
                       "for audit; it trains and adapts nothing)")
    [forever] = _check_event(_feedback("gone"), None, None, bounds, retention_days=0)
    assert "never served (kept for audit" in forever and "days" not in forever


def _feedback(request_id: str) -> Any:
    from hybridrec.server.models import FeedbackEvent

    return FeedbackEvent.model_validate({"request_id": request_id, "item_id": "i1",
                                         "event_type": "purchase"})


@pytest.mark.redis
def test_redis_lists_name_only_rows_that_exist(redis_server):
    import redis

    from hybridrec.redislog import RedisFeedbackLog

    prefix = f"retain-{uuid.uuid4().hex[:6]}"
    log = RedisFeedbackLog(redis_server.url, prefix)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for n in range(12):  # ids with separators name their own keys
            serve_at(log, f"a:{n}%", OLD + timedelta(minutes=n), scenario="shop:x",
                     policy=ADAPTIVE if n % 2 else None, user="u:1")
        serve_at(log, "new", RECENT, scenario="shop:x", user="u:1")
        log.append([event(f"a:{n}%", 1.0, scenario="shop:x", user="u:1") for n in range(12)],
                   RECENT.isoformat())
        stream = client.xlen(f"{prefix}:feedback")
        user = client.lrange(f"{prefix}:user:shop%3Ax:u%3A1", 0, -1)

        # the cold rows, and the adaptive ones but a:11% and new, the window
        assert log.prune_served(CUTOFF, keep_latest=2, batch=5) == 6 + 5
        order = client.lrange(f"{prefix}:served", 0, -1)
        assert order == ["a:11%", "new"]
        rows = {k for k in client.scan_iter(f"{prefix}:served:*")}
        assert rows == {f"{prefix}:served:{log_key(i)}" for i in order}
        adaptive = client.lrange(f"{prefix}:adaptive:v1:shop%3Ax", 0, -1)
        assert adaptive == [f"{prefix}:served:{log_key(i)}" for i in order]
        requests = {k for k in client.scan_iter(f"{prefix}:request:*")}
        assert requests == {f"{prefix}:request:{log_key('a:11%')}"}
        assert client.xlen(f"{prefix}:feedback") == stream  # the events stay
        assert client.lrange(f"{prefix}:user:shop%3Ax:u%3A1", 0, -1) == user
        assert log.policy_counts("v1", "shop:x", window=2) == {("light", OFFLINE): (2.0, 1.0)}
    finally:
        client.close()
        log.close()


def log_key(request_id: str) -> str:
    from hybridrec.redislog import _part

    return _part(request_id)


# The setting and the server -----------------------------------------------------------------
@pytest.mark.parametrize("value,days", [(None, 30.0), ("", 30.0), ("0", 0.0), ("7", 7.0),
                                        ("0.5", 0.5), (90, 90.0)])
def test_the_retention_setting(value, days):
    assert served_retention_days(value) == days


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf", "1e9", "7 days"])
def test_a_bad_retention_is_an_error_naming_the_setting(value, monkeypatch, tmp_path):
    from hybridrec.cli import make_cli
    from hybridrec.server.state import ServerState

    with pytest.raises(ValueError, match=f"{ENV_SERVED_RETENTION} must be a number of days "
                                         f"from 0 .* got '{value}'"):
        served_retention_days(value)
    result = CliRunner().invoke(make_cli(), ["serve", "--served-retention-days", value])
    assert result.exit_code == 2
    assert f"--served-retention-days (or {ENV_SERVED_RETENTION}) must be a number of days" \
        in result.output and repr(value) in result.output
    from_env = CliRunner().invoke(make_cli(), ["serve"], env={ENV_SERVED_RETENTION: value})
    assert from_env.exit_code == 2 and ENV_SERVED_RETENTION in from_env.output
    monkeypatch.setenv(ENV_SERVED_RETENTION, value)  # a worker process reads the variable
    with pytest.raises(ValueError, match=ENV_SERVED_RETENTION):
        ServerState(Workspace(tmp_path, tmp_path), None, 0)


def test_the_server_counts_and_logs_what_it_pruned_and_survives_a_failure(tmp_path, caplog):
    from hybridrec.server.state import ServerState

    (tmp_path / "bundles" / "v1").mkdir(parents=True)
    (tmp_path / "bundles" / "v1" / "manifest.json").write_text("{}")
    state = ServerState(Workspace(tmp_path, tmp_path / "bundles"), None, 0, retention_days=30)
    state.feedback = SqliteFeedbackLog(tmp_path / "feedback.db")
    now = datetime.now(UTC)
    serve_at(state.feedback, "old", now - timedelta(days=31), policy=None)
    serve_at(state.feedback, "kept", now - timedelta(days=31))  # the default window's
    serve_at(state.feedback, "deleted", now - timedelta(days=31), version="v0")  # its bundle's
    serve_at(state.feedback, "new", now - timedelta(days=29), policy=None)
    state.feedback.record_unmatched([{"request_id": "bogus"}],
                                    (now - timedelta(days=31)).isoformat())
    state.feedback.record_unmatched([{"request_id": "fresh"}], now.isoformat())
    with caplog.at_level(logging.INFO, logger="hybridrec.server"):
        assert state.prune_served() == 2
    assert ids(state.feedback) == ["kept", "new"]
    assert [u["request_id"] for u in state.feedback.unmatched()] == ["fresh"]
    assert counter(state, "hybridrec_served_pruned_total") == 2
    assert counter(state, "hybridrec_unmatched_pruned_total") == 1
    assert "deleted 2 served rows" in caplog.text
    assert "and 1 unmatched feedback entries" in caplog.text
    state.feedback.close()  # a log that fails: logged and counted, never raised
    assert state.prune_served() == 0
    assert counter(state, "hybridrec_served_prune_failures_total") == 2  # each prune
    assert "pruning the served rows failed" in caplog.text
    assert "pruning the unmatched feedback entries failed" in caplog.text
    state.retention_days = 0  # kept forever
    assert state.prune_served() == 0


def counter(state: Any, name: str) -> float:
    value = state.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else float(value)


@pytest.mark.slow
def test_a_real_server_prunes_by_itself(workspace_copy):
    """``hybridrec serve --served-retention-days 30``: a row older than that goes soon after
    start, the adaptive window's old list stays, and late feedback for the pruned id is
    refused, saying why, and kept for audit."""
    workspace_copy.drop_feedback_log()  # other tests' recent lists would come first
    db = Path(workspace_copy.repo) / "data" / "feedback.db"
    log = SqliteFeedbackLog(db)
    old = datetime.now(UTC) - timedelta(days=40)
    serve_at(log, "ancient", old, policy=None, user="u00001", scenario="shop")
    serving = (workspace_copy.bundles / "current").resolve().name
    serve_at(log, "ancient-adaptive", old, user="u00001", scenario="shop", version=serving)
    server = Server(workspace_copy, "--refresh-seconds", "0", "--served-retention-days", "30")
    try:
        server.wait_ready()
        deadline = time.monotonic() + 30
        while "hybridrec_served_pruned_total 1.0" not in server.call("GET", "/metrics")[1]:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.2)
        assert set(log.served(["ancient", "ancient-adaptive"])) == {"ancient-adaptive"}
        status, body = server.call("POST", "/v1/feedback", {"events": [
            {"request_id": "ancient", "item_id": "i1", "event_type": "purchase"}]})
        assert status == 422
        assert "never served, or served more than 30 days ago and deleted since" in \
            body["rejected"][0]["errors"][0]
        assert "ancient" in [u["request_id"] for u in log.unmatched()]
    finally:
        server.stop()
        log.close()
    assert "deleted 1 served rows" in server.log.read_text()
