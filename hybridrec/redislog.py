"""The feedback log and the adaptive blend state in Redis, so that several server replicas,
on several machines, share one truth. Chosen by ``HYBRIDREC_STATE_URL``
(``hybridrec.workspace``); the same methods and semantics as the SQLite log
(``hybridrec.feedback.FeedbackLog``). Needs the ``redis`` client (``pip install
'hybridrec[redis]'``), imported only when a Redis URL is configured.

Keys, under the prefix (``HYBRIDREC_STATE_PREFIX``, default ``hybridrec``; ``%`` and ``:``
inside an id are escaped, so a key names one thing only):

=========================================  ================================================
``P:meta``                                 hash: the key layout's version
``P:served``                               list: request ids in the order served
``P:served:REQUEST``                       hash: the served row (``feedback.encode_served``)
``P:adaptive:VERSION:SCENARIO``            list: the served keys of its adaptive lists, in
                                           order (the policy's window reads the latest)
``P:policy:VERSION:SCENARIO``              hash: ``pulls``, ``reward`` and ``updates``, each
                                           TAB bucket TAB arm
``P:updates:VERSION:SCENARIO``             list: each reward credited, newest first
``P:control``                              hash: scenario -> what an operator changed
``P:feedback``                             stream: one entry per event, id ``0-N`` where N
                                           is its ``feedback_id``; ``P:feedback:last``: N
``P:user:SCENARIO:USER``                   list: the user's events, oldest first
``P:request:REQUEST``                      list: the events on that response
``P:unmatched``                            list: feedback for request ids never served
``P:batch:TOKEN``                          what a feedback batch credited (for a minute)
=========================================  ================================================

**Atomicity.** A served row and its arm's pull, or a feedback batch and the rewards it
credits, are one Lua script, which Redis runs alone: whichever replica takes an update, it is
applied exactly once, and a reward is credited once per list however many replicas receive
events on it. Totals are added as doubles in the script (no float drift from
``HINCRBYFLOAT``'s long doubles), so both backends count alike. A command is retried when
its connection breaks (a Redis restarted since the connection opened), never after a
timeout; a retried batch cannot be applied twice, even when Redis ran it and only the answer
was lost: each batch carries a token the script keeps for a minute
(``P:batch:TOKEN``), and a retried served row is left as it was.

**Durability.** A script's effects reach the append-only file before Redis answers; they are
on disk, and an acknowledged feedback batch survives a crash of Redis or of its machine, only
when the server runs with ``appendonly yes`` and ``appendfsync always``. The log checks
those settings when a server opens it and logs a warning naming them otherwise.

**Retention.** ``prune_served`` deletes old served rows from the head of ``P:served``, one
script per step: with a row, its id in ``P:served``, its ``P:request`` list (an index of the
events on it, which stay in the stream and the user lists) and, for an adaptive list, its key
at the head of ``P:adaptive:...``, so no list ever names a deleted row. A list among the
latest of its window stays, unless its bundle is not among the versions still kept.

One Redis server (a primary, optionally with replicas for failover), not Redis Cluster: the
scripts touch keys they derive from the rows they read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hybridrec import columns as C
from hybridrec.adaptive import Settings
from hybridrec.feedback import (
    MAX_USER_EVENTS,
    PRUNE_BATCH,
    FeedbackLog,
    FeedbackStoreError,
    encode_served,
    event_times,
    served_before,
)
from hybridrec.workspace import ENV_STATE_URL, redact_url

if TYPE_CHECKING:
    from hybridrec.pipeline import Decision

log = logging.getLogger("hybridrec.feedback")

#: The key layout's version, in ``P:meta``.
LAYOUT = "1"
#: Separates a policy field's kind, bucket and arm (the arm last: it may hold anything).
SEP = "\t"
#: Rows read per round trip when a whole log is read.
CHUNK = 2000
#: How long a feedback batch's token is kept: longer than the client's retries take.
BATCH_SECONDS = 60

# A request id already logged is left as it is (the same command, retried).
_LOG_SERVED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('RPUSH', KEYS[2], ARGV[1])
if ARGV[2] == '1' then
  redis.call('RPUSH', KEYS[3], KEYS[1])
  redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
end
return 1
"""

# KEYS: the stream, its counter, the batch's token, then per event its user list, request
# list and served row. ARGV: received_at, then per event: request_id, user_id, item_id,
# scenario, event_type, value, event_timestamp, reward, the user entry after its id, the
# request entry. A batch whose token is known was applied: the same command, retried.
_APPEND = """
local done = redis.call('GET', KEYS[3])
if done then return tonumber(done) end
local at, credited = ARGV[1], 0
local n = (#KEYS - 3) / 3
local function fmt(x) return string.format('%.17g', x) end
local function credit(served, request_id, reward)
  local row = redis.call('HMGET', served, 'learns', 'reward', 'policy_key', 'updates_key',
                         'bucket', 'arm')
  if row[1] ~= '1' then return 0 end
  local old = tonumber(row[2])
  if reward <= old then return 0 end
  local field, delta = row[5] .. '\\t' .. row[6], reward - old
  redis.call('HSET', served, 'reward', fmt(reward))
  local total = tonumber(redis.call('HGET', row[3], 'reward\\t' .. field) or '0') + delta
  redis.call('HSET', row[3], 'reward\\t' .. field, fmt(total))
  redis.call('HINCRBY', row[3], 'updates\\t' .. field, 1)
  redis.call('LPUSH', row[4], at .. '\\t' .. request_id .. '\\t' .. fmt(delta) .. '\\t' .. field)
  return 1
end
for e = 0, n - 1 do
  local a = 2 + 10 * e
  local id = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], '0-' .. id, 'request_id', ARGV[a], 'user_id', ARGV[a + 1],
             'item_id', ARGV[a + 2], 'scenario', ARGV[a + 3], 'event_type', ARGV[a + 4],
             'value', ARGV[a + 5], 'event_timestamp', ARGV[a + 6], 'received_at', at)
  redis.call('RPUSH', KEYS[4 + 3 * e], '[' .. id .. ',' .. ARGV[a + 8])
  redis.call('RPUSH', KEYS[5 + 3 * e], ARGV[a + 9])
end
for e = 0, n - 1 do
  local a = 2 + 10 * e
  local reward = tonumber(ARGV[a + 7])
  if reward > 0 then credited = credited + credit(KEYS[6 + 3 * e], ARGV[a], reward) end
end
redis.call('SET', KEYS[3], credited, 'EX', ARGV[#ARGV])
return credited
"""

# The (bucket, arm) counts over the latest ARGV[1] adaptive lists of KEYS[1].
_WINDOW = """
local keys = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
local pulls, rewards, order = {}, {}, {}
for _, key in ipairs(keys) do
  local row = redis.call('HMGET', key, 'bucket', 'arm', 'reward')
  local field = row[1] .. '\\t' .. row[2]
  if pulls[field] == nil then
    pulls[field], rewards[field] = 0, 0
    order[#order + 1] = field
  end
  pulls[field] = pulls[field] + 1
  rewards[field] = rewards[field] + tonumber(row[3])
end
local out = {}
for _, field in ipairs(order) do
  out[#out + 1] = field
  out[#out + 1] = pulls[field]
  out[#out + 1] = string.format('%.17g', rewards[field])
end
return out
"""


#: Pops up to ARGV[2] entries from the head of the unmatched list while each was received
#: before ARGV[1] (ISO times in UTC compare as text); returns how many.
_PRUNE_UNMATCHED = """
local gone = 0
while gone < tonumber(ARGV[2]) do
    local head = redis.call('LINDEX', KEYS[1], 0)
    if not head or cjson.decode(head)['received_at'] >= ARGV[1] then
        break
    end
    redis.call('LPOP', KEYS[1])
    gone = gone + 1
end
return gone
"""

# One step of pruning: the ids at ARGV[4].. of KEYS[1] (P:served), ARGV[5] of them, oldest
# first, up to the first served at or after ARGV[2]. A row goes with its P:request list; an
# adaptive row only from the head of its list, and only while that list holds more than
# ARGV[3] (the latest ARGV[3] are the policy's window). Ids that go are overwritten with the
# step's own marker ARGV[6], then removed together; an id whose row is missing goes too.
# Returns the rows deleted, where the next step starts, and 1 when the walk is over.
_PRUNE = """
local function part(s) return (string.gsub((string.gsub(s, '%%', '%%25')), ':', '%%3A')) end
local prefix, cutoff, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
local start, count, marker = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
-- ARGV[7] '1': only the versions ARGV[8..] keep their windows ('0': every version does)
local every, live = ARGV[7] ~= '1', {}
for i = 8, #ARGV do live[ARGV[i]] = true end
local ids = redis.call('LRANGE', KEYS[1], start, start + count - 1)
local deleted, removed, kept, done = 0, 0, 0, #ids < count
for i, id in ipairs(ids) do
  local key = prefix .. ':served:' .. part(id)
  local row = redis.call('HMGET', key, 'served_at', 'learns', 'bundle_version', 'scenario')
  if row[1] and row[1] >= cutoff then
    done = true
    break
  end
  local drop = true
  if row[1] and row[2] == '1' then
    local list = prefix .. ':adaptive:' .. part(row[3]) .. ':' .. part(row[4])
    drop = redis.call('LINDEX', list, 0) == key and
      (not (every or live[row[3]]) or redis.call('LLEN', list) > keep)
    if drop then redis.call('LPOP', list) end
  end
  if drop then
    if row[1] then
      redis.call('DEL', key, prefix .. ':request:' .. part(id))
      deleted = deleted + 1
    end
    redis.call('LSET', KEYS[1], start + i - 1, marker)
    removed = removed + 1
  else
    kept = kept + 1
  end
end
if removed > 0 then redis.call('LREM', KEYS[1], removed, marker) end
return {deleted, start + kept, done and 1 or 0}
"""


def _part(text: str) -> str:
    """One part of a key, with ``%`` and ``:`` escaped."""
    return str(text).replace("%", "%25").replace(":", "%3A")


class RedisFeedbackLog(FeedbackLog):
    """The log and the state in one Redis database, shared by every replica pointed at it.
    With ``create=False`` nothing is written: ``created`` says whether a server has opened
    the log there yet."""

    def __init__(self, url: str, prefix: str = "hybridrec", create: bool = True) -> None:
        self.url, self.prefix = url, prefix
        if not prefix:
            raise FeedbackStoreError("the Redis key prefix must not be empty")
        self._client = _connect(url)
        self._log_served = self._client.register_script(_LOG_SERVED)
        self._append = self._client.register_script(_APPEND)
        self._window = self._client.register_script(_WINDOW)
        self._prune = self._client.register_script(_PRUNE)
        self._prune_unmatched = self._client.register_script(_PRUNE_UNMATCHED)
        meta = self._key("meta")
        #: Whether the server fsyncs each write before answering (checked when creating).
        self.durable: bool | None = None
        if create:
            self._client.hsetnx(meta, "layout", LAYOUT)
            self.durable = _check_durability(self._client, url)
        layout = self._client.hget(meta, "layout")
        self.created = layout is not None
        if self.created and layout != LAYOUT:
            self._client.close()
            raise FeedbackStoreError(
                f"the feedback log at {redact_url(url)} (keys {prefix}:*) has key layout "
                f"{layout}; this version of hybridrec reads layout {LAYOUT}")

    def _key(self, *parts: str) -> str:
        return ":".join([self.prefix, *map(_part, parts)])

    def close(self) -> None:
        self._client.close()

    def log_served(self, request_id: str, served_at: str, user_id: str, scenario: str,
                   bundle_version: str, cold_start: bool, items: Sequence[str],
                   scores: Sequence[float | None], decision: Decision | None = None) -> None:
        row = encode_served(items, scores, decision)
        learns = bool(row["learns"])
        fields = {"request_id": request_id, "served_at": served_at, "user_id": user_id,
                  "scenario": scenario, "bundle_version": bundle_version,
                  "cold_start": int(cold_start), "items": row["items"],
                  "scores": row["scores"], "decision": row["decision"] or "",
                  "learns": int(learns), "reward": "0", "bucket": row["bucket"] or "",
                  "arm": row["arm"] or "",
                  "policy_key": self._key("policy", bundle_version, scenario),
                  "updates_key": self._key("updates", bundle_version, scenario)}
        pulls = SEP.join(("pulls", fields["bucket"], fields["arm"]))
        self._log_served(
            keys=[self._key("served", request_id), self._key("served"),
                  self._key("adaptive", bundle_version, scenario), fields["policy_key"]],
            args=[request_id, int(learns), pulls,
                  *(v for pair in fields.items() for v in pair)])

    def served(self, request_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(request_ids))
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for request_id in chunk:
                pipe.hmget(self._key("served", request_id), "user_id", "scenario", "items")
                pipe.lrange(self._key("request", request_id), 0, -1)
            replies = pipe.execute()
            for request_id, (user_id, scenario, items), events in zip(
                    chunk, replies[::2], replies[1::2], strict=True):
                if user_id is not None:
                    out[request_id] = {"user_id": user_id, "scenario": scenario,
                                       "items": json.loads(items),
                                       "events": [tuple(json.loads(e)) for e in events]}
        return out

    def append(self, events: Sequence[dict[str, Any]], received_at: str) -> int:
        """One script: every event and the rewards it credits, or nothing."""
        if not events:
            return 0
        keys = [self._key("feedback"), self._key("feedback", "last"),
                self._key("batch", uuid.uuid4().hex)]
        args = [received_at]
        for e in events:
            value, reward = float(e[C.VALUE]), float(e.get("reward", 0.0))
            user, scenario, request = e[C.USER_ID], e[C.SCENARIO], e["request_id"]
            keys += [self._key("user", scenario, user), self._key("request", request),
                     self._key("served", request)]
            args += [request, user, e[C.ITEM_ID], scenario, e[C.EVENT_TYPE], repr(value),
                     e[C.EVENT_TIMESTAMP], repr(reward) if reward > 0 else "0",
                     json.dumps([e[C.ITEM_ID], e[C.EVENT_TYPE], e[C.EVENT_TIMESTAMP],
                                 value])[1:],
                     json.dumps([e[C.ITEM_ID], e[C.EVENT_TYPE]])]
        return int(self._append(keys=keys, args=[*args, BATCH_SECONDS]))

    def record_unmatched(self, events: Sequence[dict[str, Any]], received_at: str) -> None:
        if events:
            self._client.rpush(self._key("unmatched"), *(json.dumps(
                {"received_at": received_at, "request_id": str(e.get("request_id")),
                 "event": e}, default=str) for e in events))

    def unmatched(self) -> list[dict[str, Any]]:
        return [json.loads(row) for row in self._client.lrange(self._key("unmatched"), 0, -1)]

    def prune_unmatched(self, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
        """One script per step: pops from the head of ``P:unmatched`` (oldest first) while
        the head was received before the cutoff."""
        cutoff, deleted = served_before(older_than, 0, batch), 0
        while True:
            gone = int(self._prune_unmatched(keys=[self._key("unmatched")],
                                             args=[cutoff, batch]))
            deleted += gone
            if gone < batch:
                return deleted

    # The adaptive state ---------------------------------------------------------------
    def policy_counts(self, bundle_version: str, scenario: str, window: int | None = None
                      ) -> dict[tuple[str, str], tuple[float, float]]:
        """The window is read by one script, over the latest lists' current rewards."""
        if window is not None:
            flat = self._window(keys=[self._key("adaptive", bundle_version, scenario)],
                                args=[int(window)])
            return {_bucket_arm(f): (float(p), float(r))
                    for f, p, r in zip(flat[::3], flat[1::3], flat[2::3], strict=True)}
        totals = self._client.hgetall(self._key("policy", bundle_version, scenario))
        out = {}
        for field, pulls in totals.items():
            kind, _, rest = field.partition(SEP)
            if kind == "pulls":
                out[_bucket_arm(rest)] = (float(pulls), float(totals.get(f"reward{SEP}{rest}",
                                                                       0.0)))
        return out

    def policy_control(self, scenario: str, bundle_version: str) -> dict[str, Any]:
        row = self._client.hget(self._key("control"), scenario)
        if row is None:
            return {}
        stored = json.loads(row)
        return dict(stored["control"]) if stored["bundle_version"] == bundle_version else {}

    def set_policy_control(self, scenario: str, bundle_version: str,
                           control: Mapping[str, Any], at: str) -> dict[str, Any]:
        """Read, merge and write under ``WATCH``: retried if another replica wrote between."""
        key = self._key("control")
        merged: dict[str, Any] = {}

        def merge(pipe: Any) -> None:
            row = pipe.hget(key, scenario)
            stored = json.loads(row) if row else {}
            before = stored.get("control", {}) \
                if stored.get("bundle_version") == bundle_version else {}
            merged.clear()
            merged.update({**before, **control})
            pipe.multi()
            pipe.hset(key, scenario, json.dumps({"bundle_version": bundle_version,
                                                 "control": merged, "updated_at": at}))

        self._client.transaction(merge, key)
        return dict(merged)

    def policy_history(self, bundle_version: str, scenario: str, limit: int = 20
                       ) -> tuple[int, list[dict[str, Any]]]:
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self._key("policy", bundle_version, scenario))
        pipe.lrange(self._key("updates", bundle_version, scenario), 0, max(limit, 0) - 1)
        totals, rows = pipe.execute()
        updates = sum(int(v) for f, v in totals.items() if f.startswith("updates" + SEP))
        history = []
        for row in rows if limit > 0 else []:
            at, request_id, reward, bucket, arm = row.split(SEP, 4)
            history.append({"received_at": at, "request_id": request_id, "activity": bucket,
                            "arm": arm, "reward": float(reward)})
        return updates, history

    def decision(self, request_id: str) -> dict[str, Any] | None:
        value = self._client.hget(self._key("served", request_id), "decision")
        return dict(json.loads(value)) if value else None

    def decisions(self, scenario: str | None = None) -> list[dict[str, Any]]:
        """Read in chunks, each in one round trip."""
        out = []
        order = self._key("served")
        for start in range(0, self._client.llen(order), CHUNK):
            ids = self._client.lrange(order, start, start + CHUNK - 1)
            pipe = self._client.pipeline(transaction=False)
            for request_id in ids:
                pipe.hmget(self._key("served", request_id), "user_id", "scenario",
                           "bundle_version", "items", "decision")
                pipe.lrange(self._key("request", request_id), 0, -1)
            replies = pipe.execute()
            for request_id, row, events in zip(ids, replies[::2], replies[1::2], strict=True):
                user_id, served_in, version, items, decision = row
                if user_id is None or (scenario and served_in != scenario):
                    continue  # pruned since its id was read, or another scenario's
                out.append({"request_id": request_id, "user_id": user_id,
                            "scenario": served_in, "bundle_version": version,
                            "items": json.loads(items),
                            "decision": json.loads(decision) if decision else None,
                            "feedback": [tuple(json.loads(e)) for e in events]})
        return out

    def events_of(self, user_id: str, scenario: str, after: int = 0,
                  limit: int = MAX_USER_EVENTS) -> list[tuple[str, str, str, float]]:
        """One ``LRANGE`` of the user's latest ``limit`` events."""
        if limit <= 0:
            return []
        rows = self._client.lrange(self._key("user", scenario, user_id), -limit, -1)
        out = []
        for row in rows:
            feedback_id, item, kind, at, value = json.loads(row)
            if feedback_id > after:
                out.append((item, kind, at, float(value)))
        return out

    def events(self) -> Any:
        """``feedback_id`` is the stream entry's number."""
        import pandas as pd

        key, start, rows = self._key("feedback"), "-", []
        while True:
            entries = self._client.xrange(key, min=start, max="+", count=CHUNK)
            for entry_id, e in entries:
                rows.append((int(entry_id.partition("-")[2]), e[C.USER_ID], e[C.ITEM_ID],
                             e[C.SCENARIO], e[C.EVENT_TYPE], float(e[C.VALUE]),
                             e[C.EVENT_TIMESTAMP]))
            if len(entries) < CHUNK:
                break
            start = "(" + entries[-1][0]
        frame = pd.DataFrame(rows, columns=["feedback_id", C.USER_ID, C.ITEM_ID, C.SCENARIO,
                                            C.EVENT_TYPE, C.VALUE, C.EVENT_TIMESTAMP])
        frame[C.EVENT_TIMESTAMP] = event_times(frame[C.EVENT_TIMESTAMP])
        return frame

    def prune_served(self, older_than: datetime, keep_latest: int = Settings.window,
                     batch: int = PRUNE_BATCH, versions: Collection[str] | None = None
                     ) -> int:
        """One script per step of ``batch`` ids from the head of ``P:served``; the next
        step starts after the rows kept (the window's). Each step checks every row afresh,
        so replicas pruning at once delete each row once."""
        cutoff = served_before(older_than, keep_latest, batch)
        marker = f"\0pruned\0{uuid.uuid4().hex}"  # no request id holds a NUL
        start, deleted = 0, 0
        while True:
            gone, start, done = self._prune(
                keys=[self._key("served")],
                args=[self.prefix, cutoff, keep_latest, start, batch, marker,
                      "0" if versions is None else "1", *sorted(versions or ())])
            deleted += int(gone)
            if done:
                return deleted


def _bucket_arm(field: str) -> tuple[str, str]:
    bucket, _, arm = field.partition(SEP)
    return bucket, arm


def _connect(url: str) -> Any:
    """A client for ``url``, checked with a ``PING``: an unreachable or misnamed server is an
    error naming the URL (without its password), not a failure at the first request."""
    try:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise FeedbackStoreError(
            f"{ENV_STATE_URL} names a Redis server, but the redis client is not installed: "
            "pip install 'hybridrec[redis]'") from exc
    where = redact_url(url)
    try:
        client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_timeout=30,
            health_check_interval=15,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3,
                        supported_errors=(redis.exceptions.ConnectionError,)))
    except ValueError as exc:
        raise FeedbackStoreError(f"{ENV_STATE_URL}={where!r} is not a Redis URL "
                                 f"(redis://HOST:PORT/DB, rediss://... or unix://...): "
                                 f"{exc}") from exc
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        client.close()
        raise FeedbackStoreError(f"cannot reach the Redis server for the feedback log at "
                                 f"{where} ({ENV_STATE_URL}): {exc}") from exc
    return client


def _check_durability(client: Any, url: str) -> bool:
    """Whether the server fsyncs every write before it answers; a warning if not (or if it
    does not say: ``CONFIG`` may be renamed away on a managed server)."""
    import redis

    try:
        config = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
    except redis.exceptions.ResponseError:
        log.warning("cannot read the durability settings of the Redis server at %s: an "
                    "acknowledged feedback batch survives a crash only with appendonly yes "
                    "and appendfsync always", redact_url(url))
        return False
    durable = config.get("appendonly") == "yes" and config.get("appendfsync") == "always"
    if not durable:
        log.warning("the Redis server at %s runs with appendonly %s and appendfsync %s: "
                    "acknowledged feedback can be lost in a crash; set appendonly yes and "
                    "appendfsync always", redact_url(url), config.get("appendonly"),
                    config.get("appendfsync"))
    return durable
