"""The API's routers, one module per concern; each handler reads the app's ``ServerState``."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from hybridrec.server.state import ServerState


class NotReady(Exception):
    """Answered 503 with the reason: the bundle is still loading, or failed to load."""


def state_of(request: Request) -> ServerState:
    return request.app.state.hybridrec  # type: ignore[no-any-return]


def ready(request: Request) -> ServerState:
    """The server's state, once a bundle is being served; NotReady before."""
    state = state_of(request)
    if state.recommender is None:
        raise NotReady(state.error or "still loading the bundle and features")
    return state


async def not_ready(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(exc)})


def field_error(location: str, field: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [
        {"loc": [location, field], "msg": message, "type": "value_error"}]})


def not_found(message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": {"message": message, **extra}})
