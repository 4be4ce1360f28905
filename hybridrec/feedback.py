"""The durable log of what was served and what users did with it (SQLite, WAL mode).

Two tables: ``served`` (one row per recommendation response: request id, user, scenario,
bundle version, the items and their scores, so feedback can be tied to what was shown and
the logs allow off-policy evaluation later) and ``feedback`` (one row per event). A feedback
batch is committed with ``synchronous=FULL`` before the server acknowledges it, so an
acknowledged event survives a crash of the process or the machine.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hybridrec import columns as C

SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    request_id TEXT PRIMARY KEY,
    served_at TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scenario TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    cold_start INTEGER NOT NULL,
    items TEXT NOT NULL,
    scores TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    scenario TEXT NOT NULL,
    event_type TEXT NOT NULL,
    value REAL NOT NULL,
    event_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_user ON feedback (user_id, scenario);
"""


class FeedbackLog:
    """Thread-safe writer and reader over one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def log_served(self, request_id: str, served_at: str, user_id: str, scenario: str,
                   bundle_version: str, cold_start: bool, items: Sequence[str],
                   scores: Sequence[float | None]) -> None:
        """Record a response. ``synchronous=NORMAL``: durable across a process crash."""
        with self._lock:
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "INSERT INTO served VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (request_id, served_at, user_id, scenario, bundle_version, int(cold_start),
                 json.dumps(list(items)),
                 json.dumps([None if s is None else round(float(s), 6) for s in scores])),
            )

    def served(self, request_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{request_id: {user_id, scenario, items}}`` for the ids that were served."""
        ids = list(dict.fromkeys(request_ids))
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT request_id, user_id, scenario, items FROM served "
                    f"WHERE request_id IN ({marks})", chunk).fetchall()
                for request_id, user_id, scenario, items in rows:
                    out[request_id] = {"user_id": user_id, "scenario": scenario,
                                       "items": json.loads(items)}
        return out

    def append(self, events: Sequence[dict[str, Any]], received_at: str) -> None:
        """Write a batch in one transaction, flushed to disk (``synchronous=FULL``)."""
        rows = [(e["request_id"], e[C.USER_ID], e[C.ITEM_ID], e[C.SCENARIO], e[C.EVENT_TYPE],
                 float(e[C.VALUE]), e[C.EVENT_TIMESTAMP], received_at) for e in events]
        with self._lock:
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO feedback (request_id, user_id, item_id, scenario, event_type, "
                    "value, event_timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def events_of(self, user_id: str, scenario: str, after: int = 0
                  ) -> list[tuple[str, str, str, float]]:
        """The user's feedback in ``scenario`` logged after row ``after`` (what the last
        training run read), as (item, event type, ISO time, value), in the order received."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT item_id, event_type, event_timestamp, value FROM feedback "
                "WHERE user_id = ? AND scenario = ? AND id > ? ORDER BY id",
                (user_id, scenario, after)).fetchall()
        return [(r[0], r[1], r[2], float(r[3])) for r in rows]

    def events(self) -> Any:
        """All feedback as an event frame in the schema of ``events.parquet``, plus each
        row's ``feedback_id`` (ascending)."""
        import pandas as pd

        with self._lock:
            frame = pd.read_sql_query(
                "SELECT id AS feedback_id, user_id, item_id, scenario, event_type, value, "
                "event_timestamp FROM feedback ORDER BY id", self._conn)
        frame[C.EVENT_TIMESTAMP] = pd.to_datetime(frame[C.EVENT_TIMESTAMP], utc=True,
                                                  format="ISO8601")
        return frame
