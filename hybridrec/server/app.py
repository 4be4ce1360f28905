"""The HTTP API, built by ``create_app`` so tests and deployments make it the same way.

The bundle, the Feast store and the item cache load in a background thread: ``/healthz``
answers at once, ``/readyz`` answers 503 until loading has finished (and says why if it
failed), and recommendation endpoints answer 503 meanwhile. A watcher thread refreshes the
item cache and switches to a new current bundle when ``hybridrec train`` writes one.

Client errors are 4xx with the field or name at fault; no client input produces a 500.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from hybridrec import columns as C
from hybridrec.workspace import Workspace

log = logging.getLogger(__name__)

MAX_CANDIDATES = 2000
MAX_FEEDBACK_BATCH = 1000
Id = Annotated[StrictStr, Field(min_length=1, max_length=256)]


# Request and response models ------------------------------------------------------------

class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Id
    scenario: Id
    k: int | None = Field(default=None, ge=1, le=1000,
                          description="How many items; defaults to the scenario's default_k.")
    context: dict[str, Any] | None = Field(
        default=None, description="Free-form request context (device, page, ...). "
        "`recent_items`: item ids the user just interacted with, used like history.")
    candidates: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_CANDIDATES,
                                        description="Rank these items instead of retrieving "
                                        "candidates; ids unknown to the scenario are reported.")
    exclude_seen: StrictBool = Field(default=True, description="Leave out items the user "
                                     "already interacted with in this scenario.")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    scores: dict[str, float | None] = Field(description="Per scorer and task, `scorer.task`; "
                                            "null where the scorer has no opinion.")


class RecommendResponse(BaseModel):
    request_id: str
    user_id: str
    scenario: str
    bundle_version: str
    cold_start: bool
    fallback: str | None
    items: list[RecommendedItem]
    unknown_candidates: list[str]


class SimilarItem(BaseModel):
    item_id: str
    similarity: float


class SimilarResponse(BaseModel):
    item_id: str
    scenario: str
    source: str = Field(description="The component whose similarity answered.")
    bundle_version: str
    items: list[SimilarItem]


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Id
    item_id: Id
    event_type: Id
    user_id: Id | None = Field(default=None, description="Must match the request's user.")
    value: float = Field(default=1.0, description="Event strength (a rating, a watch "
                         "fraction); 1.0 when omitted.")
    timestamp: datetime | None = Field(
        default=None, strict=False,
        description="When it happened (ISO 8601 with a zone); the receive time when omitted.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[Any] = Field(min_length=1, max_length=MAX_FEEDBACK_BATCH,
                              description="Events; each is validated on its own (see "
                              "FeedbackEvent), and invalid ones are rejected by index.")


class Rejected(BaseModel):
    index: int
    errors: list[str]


class FeedbackResponse(BaseModel):
    accepted: int
    rejected: list[Rejected]


# The app --------------------------------------------------------------------------------

class _State:
    """What the loader thread fills in; swapped whole, never mutated in place."""

    def __init__(self) -> None:
        self.recommender: Any = None
        self.feedback: Any = None
        self.error: str | None = None
        self.stop = threading.Event()


def _field_error(field: str, message: str, kind: str = "value_error") -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [
        {"loc": ["body", field], "msg": message, "type": kind}]})


def create_app(
    ws: Workspace | None = None,
    bundle_version: str | None = None,
    refresh_seconds: float = 300.0,
    load_in_background: bool = True,
) -> FastAPI:
    """Build the app. ``refresh_seconds`` paces the item-cache refresh and bundle watch."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    ws = ws or Workspace.from_env()
    state = _State()
    metrics = CollectorRegistry()
    http_requests = Counter("hybridrec_http_requests", "HTTP requests",
                            ["method", "route", "status"], registry=metrics)
    latency = Histogram("hybridrec_http_request_duration_seconds", "Request latency",
                        ["route"], registry=metrics,
                        buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
    served = Counter("hybridrec_recommendations", "Recommendation responses",
                     ["scenario", "cold_start"], registry=metrics)
    feedback_events = Counter("hybridrec_feedback_events", "Feedback events",
                              ["outcome"], registry=metrics)
    bundle_info = Gauge("hybridrec_bundle_info", "The bundle being served", ["version"],
                        registry=metrics)

    def load() -> None:
        from hybridrec.bundle import Bundle
        from hybridrec.features import open_store
        from hybridrec.feedback import FeedbackLog
        from hybridrec.recommender import Recommender

        try:
            feedback = FeedbackLog(ws.feedback_db)
            bundle = Bundle.load(ws.bundles, bundle_version)
            recommender = Recommender(bundle, open_store(ws.feature_repo), feedback)
            state.feedback, state.recommender = feedback, recommender
            bundle_info.labels(recommender.version).set(1)
            log.info("serving bundle %s", recommender.version)
        except Exception as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading failed")

    def watch() -> None:
        """Refresh item features; follow ``current`` to a newly trained bundle."""
        from hybridrec.bundle import Bundle, resolve
        from hybridrec.recommender import Recommender

        while not state.stop.wait(refresh_seconds):
            rec = state.recommender
            if rec is None:
                continue
            try:
                if bundle_version is None and resolve(ws.bundles) != rec.bundle.path:
                    new = Recommender(Bundle.load(ws.bundles), rec.items.store, state.feedback)
                    bundle_info.clear()
                    bundle_info.labels(new.version).set(1)
                    state.recommender = new
                    log.info("switched to bundle %s", new.version)
                else:
                    rec.items.refresh()
            except Exception:
                log.exception("refresh failed; still serving bundle %s", rec.version)

    def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        import contextlib

        @contextlib.asynccontextmanager
        async def span(app: FastAPI):  # type: ignore[no-untyped-def]
            if load_in_background:
                threading.Thread(target=load, name="hybridrec-load", daemon=True).start()
            else:
                load()
            if refresh_seconds > 0:
                threading.Thread(target=watch, name="hybridrec-watch", daemon=True).start()
            yield
            state.stop.set()
            if state.feedback is not None:
                state.feedback.close()

        return span(app)

    app = FastAPI(title="hybridrec", version=_version(), lifespan=lifespan,
                  description="Hybrid recommendations from pluggable scorers over Feast "
                              "features.")
    app.state.hybridrec = state
    app.add_middleware(_JsonBodies)

    app.add_middleware(_Observe, requests=http_requests, latency=latency)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    def unavailable() -> JSONResponse:
        reason = state.error or "still loading the bundle and features"
        return JSONResponse(status_code=503, content={"detail": reason})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Any:
        if state.recommender is None:
            return unavailable()
        rec = state.recommender
        refreshed = datetime.fromtimestamp(rec.items.loaded_at, UTC).isoformat()
        return {"status": "ready", "bundle_version": rec.version,
                "scenarios": sorted(rec.scenarios), "items_cached": len(rec.items),
                "items_refreshed_at": refreshed}

    @app.get("/metrics")
    def metrics_endpoint() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/plugins")
    def plugins() -> list[dict[str, Any]]:
        from hybridrec.plugins import get_registry

        return get_registry().as_dict()

    @app.get("/v1/scenarios")
    def scenarios() -> Any:
        rec = state.recommender
        if rec is None:
            return unavailable()
        return [{"name": name, "description": s.description, "event_types": list(s.event_types),
                 "objective": list(s.objective), "default_k": s.default_k, "max_k": s.max_k,
                 "items": len(rec.catalogue[name]), **rec.plans[name]}
                for name, s in sorted(rec.scenarios.items())]

    @app.post("/v1/recommend", response_model=RecommendResponse,
              responses={404: {"description": "Unknown scenario"},
                         422: {"description": "Invalid request"},
                         503: {"description": "Not ready"}})
    def recommend(body: RecommendRequest) -> Any:
        from hybridrec.recommender import InvalidRequest, UnknownScenario

        rec, log_ = state.recommender, state.feedback
        if rec is None:
            return unavailable()
        try:
            result = rec.recommend(body.user_id, body.scenario, body.k, body.context,
                                   body.candidates, body.exclude_seen)
        except UnknownScenario as exc:
            return JSONResponse(status_code=404, content={"detail": {
                "message": str(exc), "known_scenarios": exc.known}})
        except InvalidRequest as exc:
            return _field_error(exc.field, str(exc))
        log_.log_served(result.request_id, _now(), result.user_id, result.scenario,
                        result.bundle_version, result.cold_start, result.item_ids,
                        result.scores)
        served.labels(result.scenario, str(result.cold_start).lower()).inc()
        return RecommendResponse(
            request_id=result.request_id, user_id=result.user_id, scenario=result.scenario,
            bundle_version=result.bundle_version, cold_start=result.cold_start,
            fallback=result.fallback, unknown_candidates=result.unknown_candidates,
            items=[RecommendedItem(item_id=i, score=s, scores=d) for i, s, d in
                   zip(result.item_ids, result.scores, result.scorer_scores, strict=True)],
        )

    @app.get("/v1/items/{item_id}/similar", response_model=SimilarResponse,
             responses={404: {"description": "Unknown scenario or item"},
                        422: {"description": "Invalid k"}, 503: {"description": "Not ready"}})
    def similar(item_id: str, scenario: str, k: int = 10) -> Any:
        from hybridrec.recommender import InvalidRequest, UnknownItem, UnknownScenario

        rec = state.recommender
        if rec is None:
            return unavailable()
        try:
            source, ids, sims = rec.similar(scenario, item_id, k)
        except UnknownScenario as exc:
            return JSONResponse(status_code=404, content={"detail": {
                "message": str(exc), "known_scenarios": exc.known}})
        except UnknownItem as exc:
            return JSONResponse(status_code=404, content={"detail": {"message": str(exc)}})
        except InvalidRequest as exc:
            return JSONResponse(status_code=422, content={"detail": [
                {"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}]})
        return SimilarResponse(item_id=item_id, scenario=scenario, source=source,
                               bundle_version=rec.version,
                               items=[SimilarItem(item_id=i, similarity=s)
                                      for i, s in zip(ids, sims, strict=True)])

    @app.post("/v1/feedback", response_model=FeedbackResponse,
              responses={422: {"description": "No event in the batch was valid"},
                         503: {"description": "Not ready"}})
    def feedback(body: FeedbackRequest) -> Any:
        rec, log_ = state.recommender, state.feedback
        if rec is None:
            return unavailable()
        received = _now()
        parsed: list[tuple[int, FeedbackEvent]] = []
        rejected: list[Rejected] = []
        for index, raw in enumerate(body.events):
            try:
                parsed.append((index, FeedbackEvent.model_validate(raw)))
            except ValidationError as exc:
                rejected.append(Rejected(index=index, errors=[
                    f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                    for e in exc.errors()]))
        served_rows = log_.served(e.request_id for _, e in parsed)
        rows = []
        for index, event in parsed:
            problems = _check_event(event, served_rows.get(event.request_id), rec)
            if problems:
                rejected.append(Rejected(index=index, errors=problems))
                continue
            request = served_rows[event.request_id]
            ts = event.timestamp.astimezone(UTC).isoformat() if event.timestamp else received
            rows.append({"request_id": event.request_id, C.USER_ID: request["user_id"],
                         C.ITEM_ID: event.item_id, C.SCENARIO: request["scenario"],
                         C.EVENT_TYPE: event.event_type, C.VALUE: event.value,
                         C.EVENT_TIMESTAMP: ts})
        if rows:
            log_.append(rows, received)  # durable before we answer
        feedback_events.labels("accepted").inc(len(rows))
        feedback_events.labels("rejected").inc(len(rejected))
        rejected.sort(key=lambda r: r.index)
        status = 200 if rows else 422
        return JSONResponse(status_code=status, content=FeedbackResponse(
            accepted=len(rows), rejected=rejected).model_dump())

    return app


class _Observe:
    """Counts requests by route template and status, and times them (plain ASGI: Starlette's
    ``BaseHTTPMiddleware`` costs about a millisecond a request). A handler that raises still
    answers a JSON 500, so the failure is counted and the client gets a body."""

    def __init__(self, app: Any, requests: Any, latency: Any) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500, "started": False}

        async def observe(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not status["started"]:
                await JSONResponse(status_code=500, content={"detail": "internal error"})(
                    scope, receive, send)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], path, str(status["code"])).inc()
            self.latency.labels(path).observe(time.perf_counter() - start)


class _JsonBodies:
    """Read POST bodies sent without a JSON content type (``curl -d``) as JSON.

    Every POST endpoint here takes JSON only; without this, such a body fails with a
    confusing "valid dictionary" error instead of being read.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            declared = dict(scope["headers"]).get(b"content-type", b"")
            if not declared.startswith(b"application/json"):
                scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)


def _check_event(event: Any, request: dict[str, Any] | None, rec: Any) -> list[str]:
    if request is None:
        return [f"request_id: unknown request id {event.request_id!r}"]
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


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _version() -> str:
    from hybridrec import __version__

    return __version__
