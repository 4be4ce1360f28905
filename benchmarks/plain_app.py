"""The reference of ``benchmarks/load.py``: a plain FastAPI app that answers
``POST /v1/recommend`` with a fixed list of ten items (the request's JSON body is read and
parsed, nothing else is done with it), served by the same uvicorn as ``hybridrec serve``.
What it costs per request is the web stack's share of ``hybridrec serve``'s figures.

    .venv/bin/uvicorn plain_app:app --app-dir benchmarks --port 8001 --workers 2
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

app = FastAPI(title="plain reference for the load benchmark")

ANSWER = {"request_id": "0" * 32, "user_id": "u00000", "scenario": "shop",
          "items": [{"item_id": f"s{i:05d}", "score": 1.0 - i / 10} for i in range(10)]}


@app.get("/readyz")
def readyz() -> dict[str, Any]:
    return {"status": "ready", "worker": os.getpid()}


@app.post("/v1/recommend")
def recommend(body: dict[str, Any]) -> dict[str, Any]:
    return ANSWER
