"""The durable log of what was served and what users did with it, and the adaptive blend
state that both drive, behind one interface (``FeedbackLog``) with two backends: one SQLite
file in the workspace (the default, WAL mode, ``SqliteFeedbackLog``) and Redis
(``hybridrec.redislog``, chosen by ``HYBRIDREC_STATE_URL``), so that several server replicas
on several machines share one truth. ``open_feedback`` opens the workspace's.

What is kept: one row per recommendation response (request id, user, scenario, bundle
version, the items and their scores, and the blend ``decision``: policy, arm drawn, every
arm's probability, context, each position's propensity and every arm's list, which is what
off-policy evaluation reads); one row per feedback event; per bundle, scenario, activity
bucket and arm the lists served and the reward earned (``hybridrec.adaptive``); each reward
credited (the policy's history); what operators changed of a scenario's adaptation; and
feedback naming a request id that was never served (kept for audit, applied to nothing).

Served rows are the bulk (~2.7 KB each) and the server deletes them after a retention
(``FeedbackLog.prune_served``, ``--served-retention-days``), except the latest lists the
adaptive policy's window reads; feedback events, the totals and the history stay.

A served row and its arm's pull, or a feedback batch and the rewards it credits, are applied
together or not at all: an update is applied exactly once, whichever of several server
processes took it, and a feedback batch is durable before the server acknowledges it, so an
acknowledged event survives a crash of the process (SQLite: committed with
``synchronous=FULL``, so also of the machine; Redis: see ``hybridrec.redislog``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import takewhile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridrec import columns as C
from hybridrec.adaptive import ADAPTIVE, Settings

if TYPE_CHECKING:
    from hybridrec.pipeline import Decision
    from hybridrec.workspace import Workspace

SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    request_id TEXT PRIMARY KEY,
    served_at TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scenario TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    cold_start INTEGER NOT NULL,
    items TEXT NOT NULL,
    scores TEXT NOT NULL,
    decision TEXT,
    learns INTEGER NOT NULL DEFAULT 0,
    reward REAL NOT NULL DEFAULT 0,
    bucket TEXT,
    arm TEXT
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
CREATE INDEX IF NOT EXISTS feedback_user ON feedback (user_id, scenario, id);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
CREATE TABLE IF NOT EXISTS policy_state (
    bundle_version TEXT NOT NULL,
    scenario TEXT NOT NULL,
    bucket TEXT NOT NULL,
    arm TEXT NOT NULL,
    pulls REAL NOT NULL DEFAULT 0,
    reward REAL NOT NULL DEFAULT 0,
    updates INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bundle_version, scenario, bucket, arm)
);
CREATE TABLE IF NOT EXISTS policy_updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    scenario TEXT NOT NULL,
    bucket TEXT NOT NULL,
    arm TEXT NOT NULL,
    reward REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS policy_updates_scenario
    ON policy_updates (bundle_version, scenario);
CREATE TABLE IF NOT EXISTS policy_control (
    scenario TEXT PRIMARY KEY,
    bundle_version TEXT NOT NULL,
    control TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unmatched (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    event TEXT NOT NULL
);
"""
#: Columns added to ``served`` since the first release (added to older logs on open).
SERVED_COLUMNS = {"decision": "TEXT", "learns": "INTEGER NOT NULL DEFAULT 0",
                  "reward": "REAL NOT NULL DEFAULT 0", "bucket": "TEXT", "arm": "TEXT"}


def _use_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch to write-ahead logging. SQLite answers "database is locked" at once, without
    waiting out ``busy_timeout``, when another process holds the file while it switches (two
    workers opening a new log together), so retry for a few seconds."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


class FeedbackStoreError(RuntimeError):
    """The configured feedback store cannot be opened (unreachable, misconfigured)."""


def open_feedback(ws: Workspace, create: bool = True) -> FeedbackLog | None:
    """The workspace's feedback log and adaptive state: in Redis when the workspace names a
    state URL (``HYBRIDREC_STATE_URL``), in its SQLite file otherwise. With ``create=False``,
    None when nothing has been logged there yet (no server has opened it)."""
    if ws.state_url:
        from hybridrec.redislog import RedisFeedbackLog

        log = RedisFeedbackLog(ws.state_url, ws.state_prefix, create=create)
        if not create and not log.created:
            log.close()
            return None
        return log
    if not create and not ws.feedback_db.exists():
        return None
    return SqliteFeedbackLog(ws.feedback_db)


#: At most this many of a user's feedback events since training are read per request.
MAX_USER_EVENTS = 200
#: Served rows read, and at most deleted, per step when old ones are pruned: each step is
#: short, so a request's served row waits at most one of them.
PRUNE_BATCH = 500


class FeedbackLog(ABC):
    """The feedback log and the adaptive state, wherever they are kept; thread-safe. Every
    backend keeps these semantics (``tests/test_feedback_backends.py`` runs the same tests
    against each). ``FeedbackLog(path)`` opens the SQLite file (``SqliteFeedbackLog``), as
    ``pathlib.Path(...)`` gives the platform's path class."""

    def __new__(cls, *args: Any, **kwargs: Any) -> FeedbackLog:
        return super().__new__(SqliteFeedbackLog if cls is FeedbackLog else cls)

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def log_served(self, request_id: str, served_at: str, user_id: str, scenario: str,
                   bundle_version: str, cold_start: bool, items: Sequence[str],
                   scores: Sequence[float | None], decision: Decision | None = None) -> None:
        """Record a response and, for an adaptive decision, its arm's pull, together."""

    @abstractmethod
    def served(self, request_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{request_id: {user_id, scenario, items, events}}`` for the ids that were served;
        ``events`` lists the (item, event type) pairs already recorded for that response, in
        the order received."""

    @abstractmethod
    def append(self, events: Sequence[dict[str, Any]], received_at: str) -> int:
        """Write a batch durably, together with the rewards it credits to adaptive
        decisions: an event's ``reward`` (its objective gain, 0 to 1, set by the caller for
        items the request showed) raises its list's reward to it, once. Returns how many
        decisions' rewards rose."""

    @abstractmethod
    def record_unmatched(self, events: Sequence[dict[str, Any]], received_at: str) -> None:
        """Keep feedback for request ids never served, for audit; it trains nothing."""

    @abstractmethod
    def unmatched(self) -> list[dict[str, Any]]:
        """The feedback kept for audit: ``{received_at, request_id, event}``, oldest first."""

    @abstractmethod
    def policy_counts(self, bundle_version: str, scenario: str, window: int | None = None
                      ) -> dict[tuple[str, str], tuple[float, float]]:
        """``{(bucket, arm): (pulls, reward)}`` of a bundle's scenario: in total, or over
        its latest ``window`` adaptive lists (what the policy follows, so that it can
        follow a change)."""

    @abstractmethod
    def policy_control(self, scenario: str, bundle_version: str) -> dict[str, Any]:
        """What an operator changed of a scenario's adaptation (``exploration``, ``adapt``,
        ``window``) while serving ``bundle_version``; ``{}`` when nothing (a new bundle
        starts from its training config)."""

    @abstractmethod
    def set_policy_control(self, scenario: str, bundle_version: str,
                           control: Mapping[str, Any], at: str) -> dict[str, Any]:
        """Merge ``control`` into the scenario's for ``bundle_version`` (a control set for
        another bundle is dropped); returns it."""

    @abstractmethod
    def policy_history(self, bundle_version: str, scenario: str, limit: int = 20
                       ) -> tuple[int, list[dict[str, Any]]]:
        """How many rewards were credited to a bundle's scenario, and the latest ``limit``
        (newest first)."""

    @abstractmethod
    def decision(self, request_id: str) -> dict[str, Any] | None:
        """The decision logged with a served response (with every arm's list: ``lists``),
        or None when it was not served, is pruned or had no decision."""

    @abstractmethod
    def decisions(self, scenario: str | None = None) -> list[dict[str, Any]]:
        """Every served response with its decision, its items and the feedback on them:
        ``{request_id, user_id, scenario, bundle_version, items, decision, feedback: [(item,
        event type)]}``, in the order served (what off-policy evaluation reads)."""

    @abstractmethod
    def events_of(self, user_id: str, scenario: str, after: int = 0,
                  limit: int = MAX_USER_EVENTS) -> list[tuple[str, str, str, float]]:
        """The user's latest ``limit`` feedback events in ``scenario`` logged after row
        ``after`` (what the last training run read), as (item, event type, ISO time, value),
        in the order received. Bounded: a request's cost does not grow with a user's
        feedback."""

    @abstractmethod
    def events(self) -> Any:
        """All feedback as an event frame in the schema of ``events.parquet``, plus each
        row's ``feedback_id`` (ascending, never reused)."""

    @abstractmethod
    def prune_served(self, older_than: datetime, keep_latest: int = Settings.window,
                     batch: int = PRUNE_BATCH, versions: Collection[str] | None = None
                     ) -> int:
        """Delete the served rows served before ``older_than``, oldest first, in steps of at
        most ``batch`` rows (each its own short write); returns how many were deleted.
        Never deleted: the latest ``keep_latest`` adaptive lists of every (scenario, bundle
        version) among ``versions`` (None: of every version; a bundle deleted cannot serve
        again, and its lists go with its other old rows), which the policy's window reads
        (``policy_counts`` with a window up to ``keep_latest`` counts the same before and
        after), nor feedback events, the policy's
        totals and history, or the audit of unmatched feedback. A pruned request id is then
        unknown to ``served`` (its late feedback is unmatched, like a request never served)
        and to ``decisions``. Idempotent: several processes may prune at once. The walk
        stops at the first row not older than ``older_than`` (rows are in the order served,
        whose times follow it up to the replicas' clock skew)."""

    @abstractmethod
    def prune_unmatched(self, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
        """Delete the audit's unmatched feedback received before ``older_than``, oldest
        first, in steps of at most ``batch``; returns how many. The walk stops at the first
        entry not older, as ``prune_served``'s does. (Feedback for request ids never served
        comes from clients: without this, the audit grows without bound.)"""


def encode_served(items: Sequence[str], scores: Sequence[float | None],
                  decision: Decision | None) -> dict[str, Any]:
    """The parts of a served row every backend stores alike: the items and their scores,
    the decision (with every arm's list and the estimates, for off-policy evaluation),
    whether it updates the adaptive state, and its context bucket and arm."""
    return {
        "items": json.dumps(list(items)),
        "scores": json.dumps([None if s is None else round(float(s), 6) for s in scores]),
        "decision": None if decision is None else json.dumps({
            **decision.as_dict(), "lists": decision.lists, "estimates": decision.estimates}),
        "learns": decision is not None and decision.policy == ADAPTIVE,
        "bucket": None if decision is None else _bucket(decision.context),
        "arm": None if decision is None else decision.arm,
    }


class SqliteFeedbackLog(FeedbackLog):
    """The log and the state in one SQLite file (WAL mode), shared by the server processes
    of one machine."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=5000")
        _use_wal(self._conn)
        with self._transaction("FULL"):  # one process at a time creates or upgrades it
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            have = {row[1] for row in self._conn.execute("PRAGMA table_info(served)")}
            for column, kind in SERVED_COLUMNS.items():
                if column not in have:  # a log written before decisions were logged
                    self._conn.execute(f"ALTER TABLE served ADD COLUMN {column} {kind}")
            self._conn.execute("CREATE INDEX IF NOT EXISTS served_policy ON served "
                               "(scenario, bundle_version, learns)")
            index = [row[2] for row in self._conn.execute(
                "PRAGMA index_info(feedback_user)")]
            if index != ["user_id", "scenario", "id"]:  # a log from before bounded histories
                self._conn.execute("DROP INDEX feedback_user")
                self._conn.execute("CREATE INDEX feedback_user ON feedback "
                                   "(user_id, scenario, id)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def log_served(self, request_id: str, served_at: str, user_id: str, scenario: str,
                   bundle_version: str, cold_start: bool, items: Sequence[str],
                   scores: Sequence[float | None], decision: Decision | None = None) -> None:
        """One transaction (``synchronous=NORMAL``: durable across a process crash)."""
        row = encode_served(items, scores, decision)
        learns = row["learns"]
        values = (request_id, served_at, user_id, scenario, bundle_version, int(cold_start),
                  row["items"], row["scores"], row["decision"], int(learns), row["bucket"],
                  row["arm"])
        with self._lock, self._transaction("NORMAL"):
            self._conn.execute(
                "INSERT INTO served (request_id, served_at, user_id, scenario, bundle_version, "
                "cold_start, items, scores, decision, learns, bucket, arm) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            if learns:
                assert decision is not None
                self._conn.execute(
                    "INSERT INTO policy_state (bundle_version, scenario, bucket, arm, pulls) "
                    "VALUES (?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET pulls = pulls + 1",
                    (bundle_version, scenario, _bucket(decision.context), decision.arm))

    @contextmanager
    def _transaction(self, synchronous: str) -> Iterator[None]:
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def served(self, request_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
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
                                       "items": json.loads(items), "events": []}
                for request_id, item, kind in self._conn.execute(
                        f"SELECT request_id, item_id, event_type FROM feedback "
                        f"WHERE request_id IN ({marks}) ORDER BY id", chunk):
                    if request_id in out:  # not a pruned row's (its events stay)
                        out[request_id]["events"].append((item, kind))
        return out

    def append(self, events: Sequence[dict[str, Any]], received_at: str) -> int:
        """One transaction, flushed to disk (``synchronous=FULL``)."""
        rows = [(e["request_id"], e[C.USER_ID], e[C.ITEM_ID], e[C.SCENARIO], e[C.EVENT_TYPE],
                 float(e[C.VALUE]), e[C.EVENT_TIMESTAMP], received_at) for e in events]
        with self._lock, self._transaction("FULL"):
            self._conn.executemany(
                "INSERT INTO feedback (request_id, user_id, item_id, scenario, event_type, "
                "value, event_timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return sum(self._credit(e["request_id"], float(e.get("reward", 0.0)), received_at)
                       for e in events if e.get("reward", 0.0) > 0)

    def _credit(self, request_id: str, reward: float, received_at: str) -> int:
        """Raise an adaptive decision's reward to ``reward`` (inside a transaction)."""
        found = self._conn.execute(
            "SELECT reward, bundle_version, scenario, bucket, arm FROM served "
            "WHERE request_id = ? AND learns = 1", (request_id,)).fetchone()
        if found is None or reward <= found[0]:
            return 0
        old, *key = found
        self._conn.execute("UPDATE served SET reward = ? WHERE request_id = ?",
                           (reward, request_id))
        self._conn.execute("UPDATE policy_state SET reward = reward + ?, updates = updates + 1 "
                           "WHERE bundle_version = ? AND scenario = ? AND bucket = ? AND arm = ?",
                           (reward - old, *key))
        self._conn.execute(
            "INSERT INTO policy_updates (received_at, request_id, bundle_version, scenario, "
            "bucket, arm, reward) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (received_at, request_id, *key, reward - old))
        return 1

    def record_unmatched(self, events: Sequence[dict[str, Any]], received_at: str) -> None:
        with self._lock, self._transaction("FULL"):
            self._conn.executemany(
                "INSERT INTO unmatched (received_at, request_id, event) VALUES (?, ?, ?)",
                [(received_at, str(e.get("request_id")), json.dumps(e, default=str))
                 for e in events])

    def prune_unmatched(self, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
        """Each step reads the ``batch`` oldest entries and deletes those before the first
        one not older, in one short transaction; work and lock per step stay bounded."""
        cutoff, deleted = served_before(older_than, 0, batch), 0
        while True:
            with self._lock:
                rows = self._conn.execute("SELECT id, received_at FROM unmatched ORDER BY id "
                                          "LIMIT ?", (batch,)).fetchall()
                old = [row_id for row_id, at in takewhile(lambda r: r[1] < cutoff, rows)]
                if old:
                    with self._transaction("NORMAL"):
                        self._conn.execute("DELETE FROM unmatched WHERE id <= ?", (old[-1],))
            deleted += len(old)
            if len(old) < batch:
                return deleted
            time.sleep(0.001)  # let the requests waiting for the log in first

    def unmatched(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT received_at, request_id, event FROM unmatched ORDER BY id").fetchall()
        return [{"received_at": at, "request_id": q, "event": json.loads(e)}
                for at, q, e in rows]

    # The adaptive state ---------------------------------------------------------------
    def policy_counts(self, bundle_version: str, scenario: str, window: int | None = None
                      ) -> dict[tuple[str, str], tuple[float, float]]:
        with self._lock:
            if window is None:
                rows = self._conn.execute(
                    "SELECT bucket, arm, pulls, reward FROM policy_state "
                    "WHERE bundle_version = ? AND scenario = ?", (bundle_version, scenario)
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT bucket, arm, COUNT(*), SUM(reward) FROM (SELECT bucket, arm, "
                    "reward FROM served WHERE scenario = ? AND bundle_version = ? AND "
                    "learns = 1 ORDER BY rowid DESC LIMIT ?) GROUP BY 1, 2",
                    (scenario, bundle_version, window)).fetchall()
        return {(b, a): (float(p), float(r)) for b, a, p, r in rows}

    def policy_control(self, scenario: str, bundle_version: str) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute(
                "SELECT control FROM policy_control WHERE scenario = ? AND "
                "bundle_version = ?", (scenario, bundle_version)).fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    def set_policy_control(self, scenario: str, bundle_version: str,
                           control: Mapping[str, Any], at: str) -> dict[str, Any]:
        with self._lock, self._transaction("FULL"):
            row = self._conn.execute(
                "SELECT control FROM policy_control WHERE scenario = ? AND "
                "bundle_version = ?", (scenario, bundle_version)).fetchone()
            merged = {**(json.loads(row[0]) if row else {}), **control}
            self._conn.execute(
                "INSERT INTO policy_control VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "bundle_version = excluded.bundle_version, control = excluded.control, "
                "updated_at = excluded.updated_at",
                (scenario, bundle_version, json.dumps(merged), at))
        return merged

    def policy_history(self, bundle_version: str, scenario: str, limit: int = 20
                       ) -> tuple[int, list[dict[str, Any]]]:
        with self._lock:
            total = self._conn.execute(
                "SELECT COALESCE(SUM(updates), 0) FROM policy_state "
                "WHERE bundle_version = ? AND scenario = ?",
                (bundle_version, scenario)).fetchone()[0]
            rows = self._conn.execute(
                "SELECT received_at, request_id, bucket, arm, reward FROM policy_updates "
                "WHERE bundle_version = ? AND scenario = ? ORDER BY id DESC LIMIT ?",
                (bundle_version, scenario, limit)).fetchall()
        return int(total), [{"received_at": t, "request_id": q, "activity": b, "arm": a,
                             "reward": r} for t, q, b, a, r in rows]

    def decision(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT decision FROM served WHERE request_id = ?",
                                     (request_id,)).fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def decisions(self, scenario: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE s.scenario = ?", (scenario,)) if scenario else ("", ())
        with self._lock:
            served = self._conn.execute(
                f"SELECT s.request_id, s.user_id, s.scenario, s.bundle_version, s.items, "
                f"s.decision FROM served s {where} ORDER BY s.rowid", args).fetchall()
            events = self._conn.execute(
                "SELECT request_id, item_id, event_type FROM feedback ORDER BY id").fetchall()
        by_request: dict[str, list[tuple[str, str]]] = {}
        for request_id, item, kind in events:
            by_request.setdefault(request_id, []).append((item, kind))
        return [{"request_id": q, "user_id": u, "scenario": sc, "bundle_version": v,
                 "items": json.loads(items), "decision": json.loads(d) if d else None,
                 "feedback": by_request.get(q, [])}
                for q, u, sc, v, items, d in served]

    def events_of(self, user_id: str, scenario: str, after: int = 0,
                  limit: int = MAX_USER_EVENTS) -> list[tuple[str, str, str, float]]:
        """Indexed on (user, scenario, row)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT item_id, event_type, event_timestamp, value FROM feedback "
                "WHERE user_id = ? AND scenario = ? AND id > ? ORDER BY id DESC LIMIT ?",
                (user_id, scenario, after, limit)).fetchall()
        return [(r[0], r[1], r[2], float(r[3])) for r in reversed(rows)]

    def events(self) -> Any:
        """``feedback_id`` is the row id."""
        import pandas as pd

        with self._lock:
            frame = pd.read_sql_query(
                "SELECT id AS feedback_id, user_id, item_id, scenario, event_type, value, "
                "event_timestamp FROM feedback ORDER BY id", self._conn)
        frame[C.EVENT_TIMESTAMP] = event_times(frame[C.EVENT_TIMESTAMP])
        return frame

    def prune_served(self, older_than: datetime, keep_latest: int = Settings.window,
                     batch: int = PRUNE_BATCH, versions: Collection[str] | None = None
                     ) -> int:
        """Walks ``served`` in row order: each step reads ``batch`` rows after the last one
        kept, then deletes those to go in one transaction (``synchronous=NORMAL``)."""
        cutoff = served_before(older_than, keep_latest, batch)
        after, deleted = 0, 0
        floors: dict[tuple[str, str], int] = {}
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT rowid, served_at, learns, scenario, bundle_version FROM served "
                    "WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, batch)).fetchall()
                doomed, done = [], len(rows) < batch
                for rowid, served_at, learns, scenario, version in rows:
                    if served_at >= cutoff:
                        done = True
                        break
                    after = rowid
                    if learns and (versions is None or version in versions) and \
                            rowid >= self._window_floor(scenario, version, keep_latest, floors):
                        continue  # among the latest lists the policy reads
                    doomed.append(rowid)
                if doomed:
                    with self._transaction("NORMAL"):
                        deleted += self._conn.execute(
                            f"DELETE FROM served WHERE rowid IN ({','.join('?' * len(doomed))})",
                            doomed).rowcount
            if done:
                return deleted
            time.sleep(0.001)  # let the requests waiting for the log in first

    def _window_floor(self, scenario: str, version: str, keep_latest: int,
                      floors: dict[tuple[str, str], int]) -> int:
        """The row id from which the adaptive rows of (``scenario``, ``version``) are among
        its latest ``keep_latest`` (0: all are), cached in ``floors``. Later rows only raise
        it, so a cached floor keeps more, never less."""
        key = (scenario, version)
        if key not in floors:
            if keep_latest <= 0:
                floors[key] = 2 ** 63  # nothing kept: no row id reaches it
            else:
                row = self._conn.execute(
                    "SELECT rowid FROM served WHERE scenario = ? AND bundle_version = ? AND "
                    "learns = 1 ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                    (scenario, version, keep_latest - 1)).fetchone()
                floors[key] = 0 if row is None else int(row[0])
        return floors[key]


def served_before(older_than: datetime, keep_latest: int = 0, batch: int = 1) -> str:
    """``older_than`` as served rows' times are written (ISO 8601 in UTC, as the server
    logs them), so that the two compare as text; checks ``prune_served``'s arguments."""
    if older_than.tzinfo is None:
        raise ValueError(f"older_than needs a time zone, got {older_than.isoformat()}")
    if keep_latest < 0 or batch < 1:
        raise ValueError(f"keep_latest must be >= 0 and batch >= 1, got {keep_latest} and "
                         f"{batch}")
    return older_than.astimezone(UTC).isoformat()


def event_times(values: Any) -> Any:
    """Logged ISO times as UTC timestamps; a time pandas cannot hold (year 68, say, written
    before times were bounded) becomes NaT, which training drops, instead of an error."""
    import pandas as pd

    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")


def _bucket(context: Mapping[str, str]) -> str:
    return str(context.get("activity", ""))
