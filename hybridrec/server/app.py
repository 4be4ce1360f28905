"""The HTTP API, built by ``create_app`` so tests and deployments make it the same way.

``/healthz`` answers at once; ``/readyz`` answers 503 until the bundle and features have
loaded (and says why if loading failed). Routers: ``routes.serving`` (recommend, similar
items), ``routes.feedback``, ``routes.operations`` (health, readiness, metrics, plugins,
scenarios). Client errors are 4xx with the field or name at fault; no client input produces
a 500.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hybridrec.server.middleware import BodyLimit, JsonBodies, Observe
from hybridrec.server.models import MAX_BODY_BYTES
from hybridrec.server.routes import (
    NotReady,
    Unauthorised,
    feedback,
    not_ready,
    operations,
    serving,
    unauthorised,
)
from hybridrec.server.state import ServerState
from hybridrec.workspace import Workspace

log = logging.getLogger("hybridrec.server")


def create_app(ws: Workspace | None = None, bundle_version: str | None = None,
               refresh_seconds: float = 300.0, load_in_background: bool = True) -> FastAPI:
    """Build the app. ``refresh_seconds`` paces the item-feature refresh and bundle watch."""
    from hybridrec import __version__

    state = ServerState(ws or Workspace.from_env(), bundle_version, refresh_seconds)
    state.limits = feedback.UserLimits()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        if os.environ.get(ENV_PIN_CPU) == "1":
            _pin(state.stop)
        state.scoring_slots = anyio.CapacityLimiter(state.scoring_threads)
        state.start(in_background=load_in_background)
        yield
        state.close()

    app = FastAPI(title="hybridrec", version=__version__, lifespan=lifespan,
                  description="Hybrid recommendations from pluggable scorers over Feast "
                              "features.")
    app.state.hybridrec = state
    app.add_middleware(JsonBodies)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    pages = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    json_log = os.environ.get(ENV_ACCESS_LOG, "") == "json"
    if json_log:
        _bare_lines(logging.getLogger("hybridrec.access"))
    app.add_middleware(Observe, requests=state.metrics.http_requests,
                       latency=state.metrics.latency,
                       fixed_paths=frozenset(p for p in pages if p), json_log=json_log)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(NotReady, not_ready)
    app.add_exception_handler(Unauthorised, unauthorised)
    for module in (serving, feedback, operations):
        app.include_router(module.router)
    return app


#: How ``hybridrec serve --workers N`` hands its choices to each worker process.
ENV_SERVE_BUNDLE, ENV_REFRESH = "HYBRIDREC_SERVE_BUNDLE", "HYBRIDREC_REFRESH_SECONDS"
#: ``json``: one JSON line per request on the ``hybridrec.access`` logger.
ENV_ACCESS_LOG = "HYBRIDREC_ACCESS_LOG"
#: ``1``: each worker pins itself to a free CPU (``hybridrec serve --cpu-affinity auto``).
ENV_PIN_CPU = "HYBRIDREC_PIN_CPU"


#: A worker that found no CPU free tries again this often (seconds), this many times: a
#: restarted worker starts before the one it replaces has gone.
PIN_RETRY_SECONDS, PIN_RETRIES = 2.0, 60


def _pin(stop: threading.Event) -> None:
    """Pin this worker to a free CPU; when none is free, keep trying a while in the
    background."""
    from hybridrec.system import pin_to_free_cpu

    def attempt() -> bool:
        cpu = pin_to_free_cpu()
        if cpu is not None:
            log.info("worker %d pinned to CPU %d", os.getpid(), cpu)
        return cpu is not None

    def retry() -> None:
        for _ in range(PIN_RETRIES):
            if stop.wait(PIN_RETRY_SECONDS) or attempt():
                return
        log.info("worker %d not pinned: no CPU free of other hybridrec servers (or the "
                 "platform cannot pin)", os.getpid())

    if not attempt():
        threading.Thread(target=retry, name="hybridrec-pin", daemon=True).start()


def create_app_from_env() -> FastAPI:
    """The app of one worker of ``hybridrec serve --workers N`` (an app factory: each worker
    process builds its own, with its own copy of the bundle and features; they share the
    workspace's feedback log and adaptive state)."""
    return create_app(Workspace.from_env(), os.environ.get(ENV_SERVE_BUNDLE) or None,
                      float(os.environ.get(ENV_REFRESH, "300")))


def _bare_lines(logger: logging.Logger) -> None:
    """``logger`` writes its messages alone (JSON lines) to stderr, at INFO."""
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's errors as they are, except FastAPI's 400 for a body it cannot decode (not
    UTF-8): that is malformed JSON, a 422 like any other."""
    if exc.status_code == 400:
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": ["body"], "msg": "the body is not JSON (not even UTF-8 text)",
             "type": "json_invalid"}]})
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail},
                        headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
               "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})
