"""Simulated users against a running server: what they like, what they do with a list, and
the feedback they send. The world of the drift benchmark (``benchmarks/drift.py``) and of the
test that the adaptive blend follows a change.

**Truth.** For each simulated user and each scorer output (``als.click``, ``llm.click``...),
the ``top`` items of the scenario's catalogue by that output, computed once from the bundle
(``Truth.from_workspace``). While an output is *informative*, a user acts positively on a
shown item with probability ``p_hit`` if it is among that output's top items for them, else
``p_miss``.

**Replay.** Each step sends a user's request to the server, draws their reactions to the
shown list, and sends them as feedback. The value of a list is its probability of at least
one positive event (the bandit's reward, whose expectation is known here); for each request
the step also computes the value of the list the offline weights would have shown (fixed
weights) and of the best of every arm's list (the oracle), read from the decision the server
logged.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridrec.adaptive import OFFLINE
from hybridrec.feedback import FeedbackLog


@dataclass
class Truth:
    """Per (user, scorer output), the items the user likes while that output is
    informative."""

    scenario: str
    liked: dict[tuple[str, str], frozenset[str]]

    @classmethod
    def from_workspace(cls, ws: Any, scenario: str, users: Sequence[str],
                       keys: Sequence[str], top: int = 15) -> Truth:
        """Rank the scenario's catalogue for every user with the current bundle's scorers
        (in this process, not through the server, so the server's state is untouched)."""
        from hybridrec.bundle import Bundle
        from hybridrec.features import open_store
        from hybridrec.pipeline import Requests
        from hybridrec.recommender import Recommender

        rec = Recommender(Bundle.load(ws.bundles), lambda: open_store(ws.feature_repo))
        pipeline = rec.pipelines[scenario]
        definition = rec.scenario(scenario)
        liked: dict[tuple[str, str], frozenset[str]] = {}
        for user in users:
            requests = Requests.one(user, rec.user_history(user, definition, [], []),
                                    exclude_seen=False,
                                    candidates=pipeline.catalogue.tolist())
            scored = pipeline.score(requests, blend=False)
            ids = scored.batch.item_ids
            for key in keys:
                scorer, _, task = key.partition(".")
                values = np.nan_to_num(scored.outputs[scorer][task], nan=-np.inf)
                liked[(user, key)] = frozenset(ids[np.argsort(-values, kind="stable")[:top]])
        return cls(scenario, liked)


def list_value(items: Sequence[str], liked: frozenset[str], p_hit: float,
               p_miss: float) -> float:
    """The probability of at least one positive event on a list."""
    miss = np.prod([1.0 - (p_hit if i in liked else p_miss) for i in items])
    return float(1.0 - miss)


@dataclass
class Step:
    request_id: str
    arm: str
    activity: str
    events: int
    served: float
    fixed: float
    oracle: float
    #: Every arm's list's value.
    values: dict[str, float]


class Replay:
    """Sends simulated users' requests and feedback to a server over one connection; reads
    the decisions it logged from ``log`` (the server's feedback log, any backend)."""

    def __init__(self, host: str, port: int, log: FeedbackLog, truth: Truth,
                 users: Sequence[str], k: int = 5, p_hit: float = 0.5, p_miss: float = 0.02,
                 event_type: str = "like", seed: int = 0) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=30)
        self.log = log
        self.truth, self.users, self.k = truth, list(users), k
        self.p_hit, self.p_miss, self.event_type = p_hit, p_miss, event_type
        self.rng = np.random.default_rng(seed)

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        self.connection.request(method, path, body=data,
                                headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = json.loads(response.read())
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {payload}")
        return payload  # type: ignore[no-any-return]

    def step(self, informative: str) -> Step:
        user = self.users[int(self.rng.integers(len(self.users)))]
        answer = self.call("POST", "/v1/recommend", {
            "user_id": user, "scenario": self.truth.scenario, "k": self.k,
            "exclude_seen": False})
        shown = [i["item_id"] for i in answer["items"]]
        liked = self.truth.liked[(user, informative)]
        acted = [i for i in shown
                 if self.rng.random() < (self.p_hit if i in liked else self.p_miss)]
        if acted:
            self.call("POST", "/v1/feedback", {"events": [
                {"request_id": answer["request_id"], "item_id": i,
                 "event_type": self.event_type} for i in acted]})
        lists = self.lists(answer["request_id"])
        values = {arm: list_value(items, liked, self.p_hit, self.p_miss)
                  for arm, items in lists.items()}
        decision = answer["decision"] or {}
        return Step(answer["request_id"], decision.get("arm", ""),
                    decision.get("context", {}).get("activity", ""), len(acted),
                    list_value(shown, liked, self.p_hit, self.p_miss),
                    values.get(OFFLINE, values.get(decision.get("arm", ""), 0.0)),
                    max(values.values(), default=0.0), values)

    def lists(self, request_id: str) -> Mapping[str, list[str]]:
        """Every arm's list for a served request, as the server logged it."""
        decision = self.log.decision(request_id)
        return dict((decision or {}).get("lists") or {})

    def greedy(self, activity: str) -> str:
        """The arm the server's policy now favours for users of ``activity``."""
        policy = self.call("GET", f"/v1/scenarios/{self.truth.scenario}/policy")
        for context in policy["contexts"]:
            if context["activity"] == activity:
                return str(max(context["arms"], key=lambda a: a["probability"])["arm"])
        return ""

    def close(self) -> None:
        self.connection.close()


def active_users(ws: Any, scenario: str, n: int, seed: int = 0, room: int = 20
                 ) -> tuple[str, list[str]]:
    """Up to ``n`` users of the scenario's most common activity bucket among users with a
    history, and that bucket's name: users whose history (as serving counts it) is at least
    ``room`` entries below the bucket's upper bound, so that the feedback they send during
    a run keeps them in it (and the policy learns one context)."""
    from hybridrec import columns as C
    from hybridrec.bundle import Bundle
    from hybridrec.objectives import BOUNDS, BUCKETS, activity_bucket

    history = Bundle.load(ws.bundles).history()
    counts = history[history[C.SCENARIO] == scenario].groupby(C.USER_ID).size()
    bucket = activity_bucket(counts.to_numpy())
    warm = bucket > 0
    if not warm.any():
        raise ValueError(f"scenario {scenario!r} has no user with a history")
    common = int(np.bincount(bucket[warm]).argmax())
    upper = BOUNDS[common + 1] if common + 1 < len(BOUNDS) else np.inf
    keep = (bucket == common) & (counts.to_numpy() <= upper - room)
    if not keep.any():
        keep = bucket == common
    users = np.asarray(counts.index[keep], dtype=str)
    rng = np.random.default_rng(seed)
    picked = rng.choice(users, size=min(n, len(users)), replace=False)
    return BUCKETS[common], sorted(picked.tolist())


def drift(replay: Replay, before: str, after: str, steps: tuple[int, int], activity: str,
          poll: int = 25) -> dict[str, Any]:
    """``steps[0]`` requests while ``before`` is informative, then ``steps[1]`` while
    ``after`` is. Per phase: the mean value of the lists served, of the fixed (offline)
    weights' lists and of the oracle's, the cumulative regrets, and the share of lists each
    arm served; and the policy's greedy arm for ``activity`` every ``poll`` requests after
    the switch, with the feedback events sent since, from which ``followed_after_events``:
    how many events passed before the greedy arm was the best arm of the new phase (in
    hindsight; None if it never was)."""
    phases: list[list[Step]] = [[], []]
    greedy: list[tuple[int, str]] = []
    events = 0
    for i in range(sum(steps)):
        phase = int(i >= steps[0])
        step = replay.step(after if phase else before)
        phases[phase].append(step)
        if phase:
            events += step.events
            if len(phases[1]) % poll == 0:
                greedy.append((events, replay.greedy(activity)))
    summaries = [_summary(p) for p in phases]
    best = summaries[1]["best_arm"]
    followed = next((n for n, arm in greedy if arm == best), None)
    return {"phases": summaries, "greedy_after_switch": greedy,
            "followed_after_events": followed, "events_after_switch": events,
            "greedy_at_end": replay.greedy(activity)}


def _summary(steps: Sequence[Step]) -> dict[str, Any]:
    served = np.array([s.served for s in steps])
    fixed = np.array([s.fixed for s in steps])
    oracle = np.array([s.oracle for s in steps])
    arms, counts = np.unique([s.arm for s in steps], return_counts=True)
    names = sorted({a for s in steps for a in s.values})
    by_arm = {a: float(np.mean([s.values.get(a, np.nan) for s in steps])) for a in names}
    best = max(by_arm, key=by_arm.__getitem__) if by_arm else ""
    tail = steps[len(steps) * 3 // 4:]
    tail_arms, tail_counts = np.unique([s.arm for s in tail], return_counts=True)
    return {"requests": len(steps), "served": float(served.mean()),
            "fixed": float(fixed.mean()), "oracle": float(oracle.mean()),
            "best_arm": best, "best_arm_value": by_arm.get(best, float("nan")),
            "arm_values": by_arm,
            "regret_adaptive": float((oracle - served).sum()),
            "regret_fixed": float((oracle - fixed).sum()),
            "regret_adaptive_vs_best_arm": float(len(steps) * by_arm.get(best, 0.0)
                                                 - served.sum()),
            "regret_fixed_vs_best_arm": float(len(steps) * by_arm.get(best, 0.0)
                                              - fixed.sum()),
            "adaptive_minus_fixed": float((served - fixed).sum()),
            "arms": {str(a): int(c) for a, c in zip(arms, counts, strict=True)},
            "arms_last_quarter": {str(a): int(c)
                                  for a, c in zip(tail_arms, tail_counts, strict=True)}}
