"""``POST /v1/feedback``: each event checked on its own, valid ones written durably before the
answer, invalid ones returned by index with their reasons."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from hybridrec import columns as C
from hybridrec.server.models import FeedbackEvent, FeedbackRequest, FeedbackResponse, Rejected
from hybridrec.server.routes import ready

router = APIRouter()
#: How far ahead of the server's clock an event's timestamp may be.
CLOCK_SKEW = timedelta(minutes=5)
#: Feedback events one user may send per minute, per server process.
USER_EVENTS_PER_MINUTE = 600


@router.post("/v1/feedback", response_model=FeedbackResponse,
             responses={422: {"description": "No event in the batch was valid"},
                        413: {"description": "Request body too large"},
                        503: {"description": "Not ready"}})
def feedback(body: FeedbackRequest, request: Request) -> Any:
    state = ready(request)
    rec, log_ = state.recommender, state.feedback
    received = datetime.now(UTC).isoformat()
    parsed, rejected = _parse(body.events)
    served = log_.served(e.request_id for _, e in parsed)
    rows, unmatched = [], []
    bounds = _time_bounds(rec, received)
    for index, event in parsed:
        problems = _check_event(event, served.get(event.request_id), rec, bounds,
                                state.retention_days)
        if not problems:
            problems = _check_limits(event, served[event.request_id], state.limits)
        if problems:
            rejected.append(Rejected(index=index, errors=problems))
            if event.request_id not in served:
                unmatched.append(event.model_dump(mode="json"))
            continue
        shown = served[event.request_id]
        ts = event.timestamp.astimezone(UTC).isoformat() if event.timestamp else received
        rows.append({"request_id": event.request_id, C.USER_ID: shown["user_id"],
                     C.ITEM_ID: event.item_id, C.SCENARIO: shown["scenario"],
                     C.EVENT_TYPE: event.event_type, C.VALUE: event.value,
                     C.EVENT_TIMESTAMP: ts, "reward": _reward(event, shown, rec)})
    if unmatched:
        log_.record_unmatched(unmatched, received)
    if rows:
        log_.append(rows, received)  # durable, with the rewards it credits, before we answer
    state.metrics.feedback_events.labels("accepted").inc(len(rows))
    state.metrics.feedback_events.labels("rejected").inc(len(rejected))
    rejected.sort(key=lambda r: r.index)
    return JSONResponse(status_code=200 if rows else 422, content=FeedbackResponse(
        accepted=len(rows), rejected=rejected).model_dump())


def _parse(events: list[Any]) -> tuple[list[tuple[int, FeedbackEvent]], list[Rejected]]:
    parsed, rejected = [], []
    for index, raw in enumerate(events):
        try:
            parsed.append((index, FeedbackEvent.model_validate(raw)))
        except ValidationError as exc:
            rejected.append(Rejected(index=index, errors=[
                f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                for e in exc.errors()]))
    return parsed, rejected


def _reward(event: FeedbackEvent, shown: dict[str, Any], rec: Any) -> float:
    """What the event earns the list it answers (its objective gain, at most 1): only an
    event on an item that list showed."""
    if event.item_id not in shown["items"]:
        return 0.0
    return min(1.0, rec.scenarios[shown["scenario"]].gains.get(event.event_type, 0.0))


def _time_bounds(rec: Any, received: str) -> tuple[datetime, datetime]:
    """The earliest and latest event time accepted: the start of the serving bundle's data,
    and ``CLOCK_SKEW`` past the receive time."""
    start = rec.bundle.manifest.get("data_window", {}).get("start")
    now = datetime.fromisoformat(received)
    earliest = datetime.fromisoformat(start) if start else now - timedelta(days=3650)
    return earliest, now + CLOCK_SKEW


def _check_limits(event: FeedbackEvent, request: dict[str, Any], limits: Any) -> list[str]:
    """Once per (item, event type) of a response, and at most ``USER_EVENTS_PER_MINUTE``
    of a user's events a minute (per server process)."""
    pair = (event.item_id, event.event_type)
    if pair in request["events"]:
        return [f"duplicate: request {event.request_id!r} already has a {event.event_type!r} "
                f"event for item {event.item_id!r}"]
    if not limits.take(request["user_id"]):
        return [f"rate limit: user {request['user_id']!r} sent more than "
                f"{USER_EVENTS_PER_MINUTE} events in the last minute; send it later"]
    request["events"].append(pair)  # a repeat later in the same batch is a duplicate too
    return []


def _check_event(event: FeedbackEvent, request: dict[str, Any] | None, rec: Any,
                 bounds: tuple[datetime, datetime], retention_days: float = 0.0) -> list[str]:
    if request is None:
        return [_unknown(event.request_id, retention_days)]
    problems = []
    if event.item_id not in request["items"]:
        problems.append(f"item_id: {event.item_id!r} was not in the response to request "
                        f"{event.request_id!r}")
    scenario = rec.scenarios.get(request["scenario"])
    if scenario is not None and event.event_type not in scenario.event_weights:
        problems.append(f"event_type: {event.event_type!r} is not an event of scenario "
                        f"{scenario.name!r} ({', '.join(scenario.event_types)})")
    if not rec.knows_item(request["scenario"], event.item_id):
        problems.append(f"item_id: unknown item {event.item_id!r} in scenario "
                        f"{request['scenario']!r}")
    if event.user_id is not None and event.user_id != request["user_id"]:
        problems.append(f"user_id: {event.user_id!r} does not match the request's user")
    if not math.isfinite(event.value):
        problems.append("value: must be a finite number")
    if event.timestamp is not None and event.timestamp.tzinfo is None:
        problems.append("timestamp: needs a time zone (for example 2025-01-31T12:00:00Z)")
    elif event.timestamp is not None and not bounds[0] <= event.timestamp <= bounds[1]:
        problems.append(f"timestamp: {event.timestamp.isoformat()} is outside "
                        f"{bounds[0].isoformat()} (the serving bundle's data) to "
                        f"{bounds[1].isoformat()} (5 minutes from now)")
    return problems


def _unknown(request_id: str, retention_days: float) -> str:
    """Why feedback for a request id the log does not have is refused: never served, or
    served before the retention and deleted since (the log cannot tell which)."""
    pruned = "" if retention_days <= 0 else (
        f", or served more than {retention_days:g} days ago and deleted since "
        "(--served-retention-days)")
    return (f"request_id: unknown request id {request_id!r}: never served{pruned} (kept for "
            "audit; it trains and adapts nothing)")


class UserLimits:
    """Per user, how many feedback events this process took in the current minute."""

    def __init__(self, per_minute: int = USER_EVENTS_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self.minute = 0
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, user: str) -> bool:
        minute = int(time.time() // 60)
        with self._lock:
            if minute != self.minute:
                self.minute, self.counts = minute, {}
            if self.counts.get(user, 0) >= self.per_minute:
                return False
            self.counts[user] = self.counts.get(user, 0) + 1
            return True
