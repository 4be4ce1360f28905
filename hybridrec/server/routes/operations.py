"""Liveness, readiness, metrics, and what is being served."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from hybridrec.server.routes import ready, state_of

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Any:
    rec = ready(request).recommender
    refreshed = datetime.fromtimestamp(rec.features.loaded_at, UTC).isoformat()
    return {"status": "ready", "bundle_version": rec.version,
            "scenarios": sorted(rec.scenarios), "items_cached": rec.features.items_cached,
            "items_refreshed_at": refreshed}


@router.get("/metrics")
def metrics(request: Request) -> PlainTextResponse:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = state_of(request).metrics.registry
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
