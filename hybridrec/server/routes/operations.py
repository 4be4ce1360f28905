"""Liveness, readiness, metrics, and what is being served."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from hybridrec.recommender import UnknownScenario
from hybridrec.server.models import PolicyControl
from hybridrec.server.routes import not_found, ready, state_of

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Any:
    rec = ready(request).recommender
    refreshed = datetime.fromtimestamp(rec.features.loaded_at, UTC).isoformat()
    return {"status": "ready", "bundle_version": rec.version, "worker": os.getpid(),
            "scenarios": sorted(rec.scenarios), "items_cached": rec.features.items_cached,
            "items_refreshed_at": refreshed}


@router.get("/metrics")
def metrics(request: Request) -> PlainTextResponse:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    state = state_of(request)
    if state.recommender is not None:
        state.metrics.observe_policies(state.recommender)
    registry = state.metrics.registry
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/plugins")
def plugins() -> list[dict[str, Any]]:
    from hybridrec.plugins import get_registry

    return get_registry().as_dict()


@router.get("/v1/scenarios")
def scenarios(request: Request) -> Any:
    rec = ready(request).recommender
    return [{"name": name, "description": s.description, "event_types": list(s.event_types),
             "objective": list(s.objective), "default_k": s.default_k, "max_k": s.max_k,
             "items": len(rec.catalogue[name]), **rec.plans[name]}
            for name, s in sorted(rec.scenarios.items())]


@router.get("/v1/scenarios/{name}/policy",
            responses={404: {"description": "Unknown scenario"},
                       503: {"description": "Not ready"}})
def policy(name: str, request: Request) -> Any:
    """The scenario's blend policy: arms, their probabilities and counts per activity
    bucket, the offline prior, how many rewards were credited, the latest of them."""
    rec = ready(request).recommender
    try:
        return rec.policy(name)
    except UnknownScenario as exc:
        return not_found(str(exc), known_scenarios=exc.known)


@router.post("/v1/admin/scenarios/{name}/policy",
             responses={404: {"description": "Unknown scenario or nothing adapts"},
                        413: {"description": "Request body too large"},
                        422: {"description": "Invalid setting"},
                        503: {"description": "Not ready"}})
def control_policy(name: str, body: PolicyControl, request: Request) -> Any:
    """Change a scenario's exploration rate, or freeze (``adapt: false``) or resume its
    adaptation, for every server process on the workspace; answers the policy after it."""
    state = ready(request)
    rec = state.recommender
    try:
        scenario = rec.scenario(name)
    except UnknownScenario as exc:
        return not_found(str(exc), known_scenarios=exc.known)
    adaptive = rec.adaptive.get(scenario.name)
    if adaptive is None:
        return not_found(f"scenario {scenario.name!r} does not adapt: the server has no "
                         "feedback log")
    change = body.model_dump(exclude_none=True)
    state.feedback.set_policy_control(scenario.name, rec.version, change,
                                      datetime.now(UTC).isoformat())
    adaptive.forget()
    return rec.policy(scenario.name)
