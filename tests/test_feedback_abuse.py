"""What an attacker holding a request id could do with feedback, and what stops it."""

from __future__ import annotations

from conftest import Server

USER = "u00042"


def served(server: Server, scenario: str = "video") -> dict:
    status, body = server.call("POST", "/v1/recommend",
                               {"user_id": USER, "scenario": scenario, "k": 3})
    assert status == 200, body
    return body


def test_events_must_name_an_item_of_that_response_once(server):
    answer = served(server)
    rid, shown = answer["request_id"], answer["items"][0]["item_id"]
    other = served(server, "shop")["items"][0]["item_id"]  # a real item, never shown here
    status, body = server.call("POST", "/v1/feedback", {"events": [
        {"request_id": rid, "item_id": shown, "event_type": "like"},
        {"request_id": rid, "item_id": shown, "event_type": "like"},  # the same, again
        {"request_id": rid, "item_id": other, "event_type": "like"},
    ]})
    assert status == 200 and body["accepted"] == 1
    rejected = {r["index"]: " ".join(r["errors"]) for r in body["rejected"]}
    assert "duplicate" in rejected[1]
    assert "was not in the response" in rejected[2]
    status, body = server.call("POST", "/v1/feedback", {"events": [
        {"request_id": rid, "item_id": shown, "event_type": "like"}]})  # a later batch
    assert status == 422 and "duplicate" in body["rejected"][0]["errors"][0]


def test_values_and_timestamps_are_bounded(server):
    answer = served(server)
    rid, item = answer["request_id"], answer["items"][1]["item_id"]
    bad = [{"value": 1e308}, {"value": -1e308}, {"value": 1001},
           {"timestamp": "0068-01-01T00:00:00Z"}, {"timestamp": "2200-01-01T00:00:00Z"}]
    status, body = server.call("POST", "/v1/feedback", {"events": [
        {"request_id": rid, "item_id": item, "event_type": "watch", **b} for b in bad]})
    assert status == 422
    errors = [" ".join(r["errors"]) for r in sorted(body["rejected"], key=lambda r: r["index"])]
    assert all(e.startswith("value") for e in errors[:3]), errors
    assert all(e.startswith("timestamp") and "outside" in e for e in errors[3:]), errors


def test_ids_with_control_characters_or_blank_are_refused(server):
    for user in ("", " ", "a\x00b", "a\r\nb", "\t"):
        status, body = server.call("POST", "/v1/recommend",
                                   {"user_id": user, "scenario": "shop"})
        assert status == 422 and body["detail"][0]["loc"][-1] == "user_id", (user, body)


def test_a_user_over_the_rate_limit_is_refused_until_the_next_minute():
    from hybridrec.server.routes.feedback import UserLimits

    limits = UserLimits(per_minute=2)
    assert [limits.take("a") for _ in range(3)] == [True, True, False]
    assert limits.take("b")  # per user
    limits.minute -= 1  # a new minute
    assert limits.take("a")


def test_a_request_reads_only_the_latest_feedback_of_a_user(tmp_path):
    from hybridrec.feedback import MAX_USER_EVENTS, FeedbackLog

    log = FeedbackLog(tmp_path / "feedback.db")
    events = [{"request_id": f"r{i}", "user_id": "heavy", "item_id": f"i{i}",
               "scenario": "shop", "event_type": "click", "value": 1.0,
               "event_timestamp": "2025-03-30T10:00:00+00:00"} for i in range(5000)]
    log.append(events, "2025-03-30T10:00:00+00:00")
    latest = log.events_of("heavy", "shop")
    assert len(latest) == MAX_USER_EVENTS
    assert [e[0] for e in latest] == [f"i{i}" for i in range(5000 - MAX_USER_EVENTS, 5000)]
    plan = " ".join(str(r) for r in log._conn.execute(
        "EXPLAIN QUERY PLAN SELECT item_id FROM feedback WHERE user_id = ? AND scenario = ? "
        "AND id > ? ORDER BY id DESC LIMIT ?", ("heavy", "shop", 0, 10)))
    assert "feedback_user" in plan and "TEMP B-TREE" not in plan  # indexed, no sort
    log.close()


def test_training_survives_any_acknowledged_row(tmp_path):
    """Rows logged before times and values were bounded: read, and left out of training."""
    import pandas as pd
    import pytest

    from hybridrec import columns as C
    from hybridrec.feedback import FeedbackLog
    from hybridrec.training.data import usable_feedback

    log = FeedbackLog(tmp_path / "feedback.db")
    stamps = ["0068-01-01T00:00:00+00:00", "2200-01-01T00:00:00+00:00",
              "2025-03-30T10:00:00+00:00", "2025-03-30T11:00:00+00:00",
              "2019-01-01T00:00:00+00:00"]
    values = [1.0, 1.0, 1.0, float("inf"), 1.0]
    log.append([{"request_id": f"r{i}", "user_id": "u", "item_id": f"i{i}", "scenario": "shop",
                 "event_type": "purchase", "value": v, "event_timestamp": t}
                for i, (t, v) in enumerate(zip(stamps, values, strict=True))],
               "2025-03-30T12:00:00+00:00")
    extra = log.events()
    log.close()
    assert extra[C.EVENT_TIMESTAMP].isna().sum() == 1  # year 68: unreadable, not an error
    logged = pd.DataFrame({C.EVENT_TIMESTAMP: pd.to_datetime(
        ["2025-03-01T00:00:00Z", "2025-03-31T00:00:00Z"], utc=True)})
    with pytest.warns(UserWarning, match="4 feedback events left out of training"):
        kept = usable_feedback(extra, logged)
    assert kept[C.ITEM_ID].tolist() == ["i2"]
