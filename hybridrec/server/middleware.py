"""Plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs about a millisecond a
request)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse

log = logging.getLogger("hybridrec.server")
access = logging.getLogger("hybridrec.access")


class Observe:
    """Counts requests by route template and status, and times them. A handler that raises
    still answers a JSON 500, so the failure is counted and the client gets a body."""

    def __init__(self, app: Any, requests: Any, latency: Any,
                 fixed_paths: frozenset[str] = frozenset(), json_log: bool = False) -> None:
        self.app, self.requests, self.latency = app, requests, latency
        self.fixed_paths = fixed_paths
        #: One JSON line per request on the ``hybridrec.access`` logger (off by default).
        self.json_log = json_log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500, "started": False}

        request_id = {"id": dict(scope["headers"]).get(b"x-request-id", b"").decode(
            "latin-1")[:256]}

        async def observe(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        request_id["id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not status["started"]:
                await JSONResponse(status_code=500, content={"detail": "internal error"})(
                    scope, receive, send)
        finally:
            # The router records the matched route in this same scope dict; middleware below
            # must edit the scope in place, never replace it, or the label is lost. FastAPI's
            # own pages (/openapi.json, /docs) record none and are labelled by their fixed
            # path; anything else unmatched (404s, slash redirects) shares one label.
            route = getattr(scope.get("route"), "path", None)
            path = route or (scope["path"] if scope["path"] in self.fixed_paths
                             else "unmatched")
            seconds = time.perf_counter() - start
            self.requests.labels(scope["method"], path, str(status["code"])).inc()
            self.latency.labels(path).observe(seconds)
            if self.json_log:
                access.info(json.dumps({
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "method": scope["method"], "route": path, "status": status["code"],
                    "ms": round(seconds * 1000, 2), "request_id": request_id["id"] or None,
                    "client": (scope.get("client") or ("",))[0]}))


class JsonBodies:
    """Read POST bodies sent without a JSON content type (``curl -d``) as JSON.

    Every POST endpoint here takes JSON only; without this, such a body fails with a
    confusing "valid dictionary" error instead of being read.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            declared = dict(scope["headers"]).get(b"content-type", b"")
            if not declared.startswith(b"application/json"):
                scope["headers"] = [*(h for h in scope["headers"] if h[0] != b"content-type"),
                                    (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes with a 413 naming the limit, before any
    handler reads them (by their declared length, or as they arrive)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(int(declared), scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the handler sees an empty body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(size, scope, receive, send)
                return
            if not message.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Any:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    async def _too_large(self, size: int, scope: dict[str, Any], receive: Any,
                         send: Any) -> None:
        await JSONResponse(status_code=413, content={
            "detail": f"request body of {size} bytes or more is larger than the limit of "
                      f"{self.limit} bytes"})(scope, receive, send)
