"""The API's routers, one module per concern; each handler reads the app's ``ServerState``."""

from __future__ import annotations

import hmac
import os
import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from hybridrec.server.state import ServerState

#: The environment variable holding the token admin endpoints require.
ENV_ADMIN_TOKEN = "HYBRIDREC_ADMIN_TOKEN"
#: What the OpenAPI document lists for an admin endpoint without the token.
UNAUTHORISED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong admin token"}}
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"]+/)+([^\s/'\"]*)")


class NotReady(Exception):
    """Answered 503 with the reason: the bundle is still loading, or failed to load."""


class Unauthorised(Exception):
    """Answered 401: an admin endpoint called without the server's admin token."""


def redact(message: str) -> str:
    """``message`` without file system paths (each absolute path becomes its last part):
    what a client may read of a server-side failure."""
    return _PATH.sub(lambda m: m.group(1) or "/", message)


def admin(request: Request) -> None:
    """Let the call through only with ``Authorization: Bearer TOKEN`` where TOKEN is the
    server's ``HYBRIDREC_ADMIN_TOKEN``; without that variable, admin endpoints are off."""
    token = os.environ.get(ENV_ADMIN_TOKEN, "")
    sent = request.headers.get("authorization", "")
    scheme, _, given = sent.partition(" ")
    if not token:
        raise Unauthorised(f"admin endpoints are off: start the server with {ENV_ADMIN_TOKEN} "
                           "set, and send it as 'Authorization: Bearer TOKEN'")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        raise Unauthorised("this endpoint needs the admin token: 'Authorization: Bearer "
                           f"TOKEN' with the server's {ENV_ADMIN_TOKEN}")


def state_of(request: Request) -> ServerState:
    return request.app.state.hybridrec  # type: ignore[no-any-return]


def ready(request: Request) -> ServerState:
    """The server's state, once a bundle is being served; NotReady before."""
    state = state_of(request)
    if state.recommender is None:
        raise NotReady(state.error or "still loading the bundle and features")
    return state


async def not_ready(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": redact(str(exc))})


async def unauthorised(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=401, content={"detail": str(exc)},
                        headers={"WWW-Authenticate": "Bearer"})


def field_error(location: str, field: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [
        {"loc": [location, field], "msg": message, "type": "value_error"}]})


def not_found(message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": {"message": message, **extra}})
