"""Liveness, readiness, metrics, and what is being served."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from hybridrec.recommender import UnknownScenario
from hybridrec.server.models import PolicyControl
from hybridrec.server.routes import UNAUTHORISED, admin, not_found, ready, redact, state_of
from hybridrec.system import pinned_cpu

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Any:
    """200 while a bundle serves: ``status`` is ``degraded`` (with the ``problems``: a
    scorer failing or left out by its breaker, the online store failing) when answers come
    without some part, ``ready`` otherwise. 503 before a bundle loads."""
    rec = ready(request).recommender
    refreshed = datetime.fromtimestamp(rec.features.loaded_at, UTC).isoformat()
    problems = rec.problems()
    state = state_of(request)
    if state.refused is not None:
        problems.append({"scenario": None, "component": "bundle", "state": "refused",
                         "reason": redact(state.refused["reason"])})
    changes = state.plugin_changes()
    for plugin, parts in changes.uninstalled.items():
        problems.append({"scenario": None, "component": f"plugin {plugin}",
                         "state": "uninstalled",
                         "reason": f"no longer installed; this server still serves its "
                                   f"{', '.join(parts)} from memory, until it restarts or "
                                   "switches bundles: reinstall it, or retrain without it"})
    for plugin, (loaded, installed, parts) in changes.replaced.items():
        problems.append({"scenario": None, "component": f"plugin {plugin}",
                         "state": "replaced",
                         "reason": f"{installed} installed since this server loaded {loaded}; "
                                   f"it still serves its {', '.join(parts)} with {loaded} "
                                   "until it restarts or switches bundles, and then loads "
                                   f"{installed}, or refuses it if {installed} is made for "
                                   "another plugin API (`hybridrec plugins` tells)"})
    if state.unchecked is not None:
        problems.append({"scenario": None, "component": "bundle", "state": "unchecked",
                         "reason": redact(state.unchecked)})
    return {"status": "degraded" if problems else "ready", "bundle_version": rec.version,
            "worker": os.getpid(), "cpu": pinned_cpu(), "scenarios": sorted(rec.scenarios),
            "items_cached": rec.features.items_cached, "items_refreshed_at": refreshed,
            "problems": problems}


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {
    "description": "Prometheus text exposition format",
    "content": {"text/plain": {"schema": {"type": "string"}}}}})
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


@router.post("/v1/admin/reload", dependencies=[Depends(admin)],
             responses={**UNAUTHORISED, 409: {"description": "The bundle was refused; the "
                                                             "previous one keeps serving"},
                        503: {"description": "Not ready"}})
def reload(request: Request) -> Any:
    """Serve the current bundle (or the pinned version) now, if it is not the one serving:
    it is loaded and checked on a probe request per scenario first, and refused (409, with
    the reason) if it fails, while the previous one keeps serving."""
    from hybridrec.bundle import BundleError

    state = ready(request)
    try:
        return state.reload(retry=True)
    except BundleError as exc:
        return JSONResponse(status_code=409, content={"detail": redact(str(exc)),
                                                      "bundle_version": state.recommender.version})


@router.post("/v1/admin/scenarios/{name}/policy", dependencies=[Depends(admin)],
             responses={**UNAUTHORISED,
                        404: {"description": "Unknown scenario or nothing adapts"},
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
