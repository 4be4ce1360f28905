"""``POST /v1/feedback``: each event checked on its own, valid ones written durably before the
answer, invalid ones returned by index with their reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from hybridrec import columns as C
from hybridrec.server.models import FeedbackEvent, FeedbackRequest, FeedbackResponse, Rejected
from hybridrec.server.routes import ready

router = APIRouter()


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
    for index, event in parsed:
        problems = _check_event(event, served.get(event.request_id), rec)
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


def _check_event(event: FeedbackEvent, request: dict[str, Any] | None, rec: Any) -> list[str]:
    if request is None:
        return [f"request_id: unknown request id {event.request_id!r} (kept for audit; "
                "it trains and adapts nothing)"]
    problems = []
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
    return problems
