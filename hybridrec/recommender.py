"""Serving one request at a time through the scenario's ``Pipeline``.

Used by the HTTP server and by ``hybridrec recommend``. The bundle gives the fitted
components, each scenario's plan and the users' history as of training (which read the
feedback log up to the row the manifest records); user features are read from the Feast
online store per request and item features from in-memory tables (``OnlineFeatures``);
feedback logged after that row and ``context.recent_items`` join the history.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec import columns as C
from hybridrec import history as H
from hybridrec.adaptive import AdaptiveBlender, Settings
from hybridrec.bundle import Bundle, BundleError
from hybridrec.contracts import EventSequences, Ragged, Scenario, SimilarItems, utc64, utc_now
from hybridrec.features import FeatureSet, OnlineFeatures
from hybridrec.feedback import FeedbackLog
from hybridrec.isolation import FEATURES, Degraded, Guard, Observer, store_breaker
from hybridrec.pipeline import Decision, Pipeline, Requests, ScenarioPlan, resolve_plans

#: Context key: item ids the user just interacted with, not yet sent as feedback.
RECENT_ITEMS = "recent_items"
#: At most this many of them in one request.
MAX_RECENT_ITEMS = 1000


class UnknownScenario(LookupError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown scenario {name!r}; known scenarios: {', '.join(known)}")
        self.name = name
        self.known = list(known)


class UnknownItem(LookupError):
    """An item that is not in the scenario, or has no similarity data."""


class InvalidRequest(ValueError):
    """A request that is well-formed but not acceptable (``field`` names the culprit)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class RecommendedItem:
    item_id: str
    score: float | None
    scores: dict[str, float | None]
    #: ``{scorer: explanation}`` from the scorers that explain, when asked for.
    explanation: dict[str, Any] | None = None
    #: ``{blend input: contribution}``, from a blender that can say.
    contributions: dict[str, float | None] | None = None


@dataclass
class Recommendation:
    """One answer, in the shape the HTTP API and ``hybridrec recommend --json`` both return."""

    request_id: str
    user_id: str
    scenario: str
    bundle_version: str
    cold_start: bool
    fallback: str | None
    items: list[RecommendedItem]
    unknown_candidates: list[str] = field(default_factory=list)
    #: How the blend was decided; what the feedback log records for off-policy evaluation.
    decision: Decision | None = None
    #: What serving left out of this answer (a scorer that failed, features it could not
    #: read) and why; empty when nothing was.
    degraded: list[Degraded] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The answer as plain data (written out: ``dataclasses.asdict`` deep-copies every
        value, about 0.3 ms for ten items)."""
        return {"request_id": self.request_id, "user_id": self.user_id,
                "scenario": self.scenario, "bundle_version": self.bundle_version,
                "cold_start": self.cold_start, "fallback": self.fallback,
                "items": [{"item_id": i.item_id, "score": i.score, "scores": dict(i.scores),
                           "explanation": i.explanation,
                           "contributions": None if i.contributions is None
                           else dict(i.contributions)} for i in self.items],
                "unknown_candidates": list(self.unknown_candidates),
                "decision": None if self.decision is None else self.decision.as_dict(),
                "degraded": [d.as_dict() for d in self.degraded]}


class Recommender:
    """Ranks one request at a time. ``open_store`` is called only when some component of the
    bundle declares features: a deployment whose components read none never imports Feast."""

    def __init__(self, bundle: Bundle, open_store: Callable[[], Any],
                 feedback: FeedbackLog | None = None, explore: bool = False,
                 isolate: bool = False, observer: Observer | None = None,
                 reopen_store: Callable[[], Any] | None = None,
                 exploration_seed: int | None = None) -> None:
        """``isolate`` (the server): every scorer within its scenario's time budget and
        behind a breaker, features read with the same care (``hybridrec.isolation``);
        ``reopen_store`` opens the feature store afresh after a failed read;
        ``exploration_seed`` seeds the adaptive blend's draws (a reproducible run)."""
        from hybridrec.plugins import get_registry

        self.bundle, self.feedback, self.explore = bundle, feedback, explore
        self.exploration_seed = exploration_seed
        self.feedback_until = int(bundle.manifest.get("feedback_until", 0))
        registry = get_registry()
        plans = bundle.plans
        self.scenarios: dict[str, Scenario] = {
            n: p.scenario(registry.get("scenarios", n)) for n, p in plans.items()}
        catalogue = bundle.catalogue()
        self.catalogue = {n: catalogue.loc[catalogue[C.SCENARIO] == n, C.ITEM_ID].to_numpy(str)
                          for n in plans}
        self.plan_objects = dict(plans)
        self.history = _by_user(bundle.history(), C.ITEM_ID)
        sequences = bundle.sequences()
        self.sequences = {} if sequences is None else _by_user(sequences, None)
        declared = [refs for p in plans.values() for refs in p.declarations(
            bundle.components, bundle.blenders[p.blender]).values()]
        self.store = open_store() if any(declared) else None
        self.features = OnlineFeatures(self.store, self._resolve(plans), self.catalogue,
                                       reopen_store if isolate else None)
        self.store_breaker = store_breaker(min(
            (sc.breaker_failures for sc in self.scenarios.values()), default=5))
        self.guards = {n: Guard(n, sc.scorer_budget_ms, sc.breaker_failures,
                                sc.breaker_cooldown, observer,
                                shared={FEATURES: self.store_breaker})
                       for n, sc in self.scenarios.items()} if isolate else {}
        self.plans = {n: p.as_dict() for n, p in plans.items()}
        self.adaptive = self._adaptive()
        self.pipelines = self._pipelines(self.features)

    def _pipelines(self, features: OnlineFeatures,
                   catalogue: Mapping[str, np.ndarray] | None = None) -> dict[str, Pipeline]:
        catalogue = self.catalogue if catalogue is None else catalogue
        pipelines = {n: Pipeline.from_plan(self.scenarios[n], p, self.bundle.components,
                                           self.bundle.blenders, features, catalogue[n])
                     for n, p in self.plan_objects.items()}
        for name, pipeline in pipelines.items():
            pipeline.blender = self.adaptive.get(name, pipeline.blender)
            pipeline.guard = self.guards.get(name)
        return pipelines

    def probe(self) -> None:
        """Rank for a known user and for a stranger in every scenario, with no isolation:
        a bundle that cannot (shapes that disagree, a model that does not load) raises here,
        before it serves."""
        known = {scenario: user for scenario, user in self.history}
        for name, pipeline in self.pipelines.items():
            guard, pipeline.guard = pipeline.guard, None
            try:
                for user in (known.get(name), "(probe)"):
                    if user is not None:
                        self.recommend(user, name)
            except Exception as exc:
                raise BundleError(f"bundle {self.version} cannot rank scenario {name!r}: "
                                  f"{type(exc).__name__}: {exc}") from exc
            finally:
                pipeline.guard = guard

    def problems(self) -> list[dict[str, Any]]:
        """What is failing now: per scenario, each component whose latest calls failed
        (its breaker's state), and the online store when its latest read failed."""
        out = [{"scenario": name, "component": component, **state}
               for name, guard in sorted(self.guards.items())
               for component, state in sorted(guard.state().items())
               if state["failures_in_a_row"]]
        if self.features.failed or self.store_breaker.failures:
            out.append({"scenario": None, "component": "online features",
                        **self.store_breaker.state(time.monotonic())})
        return out

    def close(self) -> None:
        """Stop the isolation threads (when the server stops)."""
        for guard in self.guards.values():
            guard.close()

    def _adaptive(self) -> dict[str, AdaptiveBlender]:
        """Per scenario, the bundle's blender under the online bandit: only where there is a
        feedback log to learn from and keep the state in. It explores only where decisions
        are logged (``explore``: the server, not ``hybridrec recommend``)."""
        if self.feedback is None:
            return {}
        return {n: AdaptiveBlender(self.bundle.blenders[p.blender], n, self.version,
                                   self.feedback, Settings(
                                       exploration=self.scenarios[n].exploration,
                                       adapt=self.scenarios[n].adapt,
                                       window=self.scenarios[n].adaptation_window),
                                   explore=self.explore, seed=self.exploration_seed)
                for n, p in self.plan_objects.items()}

    def refresh(self, items: Any = None) -> int:
        """Re-read the item features; with ``items`` (the workspace's item table), first add
        the items created since the bundle was trained to each scenario's catalogue, so they
        can be ranked (by the scorers that know them through their features) without
        retraining. Returns how many items were added."""
        added = 0
        if items is not None and len(items):
            catalogue = {}
            for name, known in self.catalogue.items():
                ids = items.loc[items[C.SCENARIO] == name, C.ITEM_ID].to_numpy(str)
                new = np.setdiff1d(ids, known)
                catalogue[name] = np.concatenate([known, new]) if len(new) else known
                added += len(new)
            if added:  # built aside; requests read self.pipelines, swapped in last
                features = OnlineFeatures(self.store, self.features.sets, catalogue,
                                          self.features.reopen)
                pipelines = self._pipelines(features, catalogue)
                self.catalogue, self.features = catalogue, features
                self.pipelines = pipelines
                return added
        self.features.refresh()
        return added

    def _resolve(self, plans: Mapping[str, ScenarioPlan]) -> dict[str, FeatureSet]:
        """Each scenario's declared features, checked against the applied Feast registry."""
        from hybridrec.features import FeatureError, applied_views

        if self.store is None:
            return {n: FeatureSet() for n in plans}
        try:
            return resolve_plans(applied_views(self.store), self.scenarios, plans,
                                 self.bundle.components, self.bundle.blenders)
        except FeatureError as exc:
            raise BundleError(f"bundle {self.bundle.version}: {exc}") from None

    @property
    def version(self) -> str:
        return self.bundle.version

    def scenario(self, name: str) -> Scenario:
        if name not in self.scenarios:
            raise UnknownScenario(name, sorted(self.scenarios))
        return self.scenarios[name]

    def check_k(self, scenario: Scenario, k: Any) -> None:
        """The one rule for k: an integer between 1 and the scenario's ``max_k``."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= scenario.max_k:
            raise InvalidRequest("k", f"k must be an integer between 1 and {scenario.max_k} "
                                      f"for scenario {scenario.name!r}, got {k!r}")

    def recommend(self, user_id: str, scenario_name: str, k: int | None = None,
                  context: Mapping[str, Any] | None = None,
                  candidates: Sequence[str] | None = None, exclude_seen: bool = True,
                  request_id: str | None = None, explain: bool = False) -> Recommendation:
        scenario = self.scenario(scenario_name)
        k = scenario.default_k if k is None else k
        self.check_k(scenario, k)
        context = dict(context or {})
        pipeline = self.pipelines[scenario.name]
        recent = _recent_items(context)
        feedback = (self.feedback.events_of(user_id, scenario.name, self.feedback_until)
                    if self.feedback is not None else [])
        now = utc_now()
        requests = Requests.one(
            user_id, self.user_history(user_id, scenario, feedback, recent), exclude_seen,
            context, candidates,
            self._sequence(user_id, scenario, feedback, recent, pipeline.sequence_length, now),
            as_of=now)
        [ranked] = pipeline.recommend(requests, k, explain)
        return Recommendation(
            request_id=request_id or uuid.uuid4().hex, user_id=user_id, scenario=scenario.name,
            bundle_version=self.version, cold_start=ranked.cold_start,
            fallback=pipeline.fallback.name if ranked.cold_start and pipeline.fallback else None,
            items=[RecommendedItem(i, s, d, e, c) for i, s, d, e, c in zip(
                ranked.item_ids, ranked.scores, ranked.scorer_scores,
                ranked.explanations or [None] * len(ranked.item_ids),
                _or_nothing(ranked.contributions, len(ranked.item_ids)), strict=True)],
            unknown_candidates=ranked.unknown_candidates, decision=ranked.decision,
            degraded=ranked.degraded)

    def user_history(self, user_id: str, scenario: Scenario,
                     feedback: Sequence[tuple[str, str, str, float]], recent: Sequence[str]
                     ) -> list[str]:
        """Items the user acted on, oldest first: as of training, then feedback logged since
        (events with a positive weight, as in training), then ``recent``."""
        seen = list(self.history.get((scenario.name, user_id), ()))
        weights = scenario.event_weights
        seen.extend(item for item, kind, _, _ in feedback if weights.get(kind, 0.0) > 0)
        seen.extend(recent)
        return seen

    def _sequence(self, user_id: str, scenario: Scenario,
                  feedback: Sequence[tuple[str, str, str, float]], recent: Sequence[str],
                  length: int, now: np.datetime64) -> EventSequences | None:
        """The user's last ``length`` events: stored and new feedback merged by time (a
        client may stamp feedback in the past), then the request's recent items."""
        if length <= 0:
            return None
        logged = [*self.sequences.get((scenario.name, user_id), []),
                  *((i, k, utc64(t), v) for i, k, t, v in feedback)]
        logged.sort(key=lambda event: event[2])  # stable: ties keep their order
        events = [*logged, *((i, H.RECENT_EVENT, now, 1.0) for i in recent)][-length:]
        return EventSequences(Ragged.single(np.array([e[0] for e in events], dtype=str)),
                              np.array([e[2] for e in events], dtype="datetime64[us]"),
                              np.array([e[1] for e in events], dtype=str),
                              np.array([e[3] for e in events], dtype=float))

    def similar(self, scenario_name: str, item_id: str, k: Any) -> tuple[str, list[str],
                                                                        list[float]]:
        """Items like ``item_id`` from the first component of the scenario that offers
        similarity; returns (component name, item ids, similarities)."""
        scenario = self.scenario(scenario_name)
        self.check_k(scenario, k)
        if not self.knows_item(scenario.name, item_id):
            raise UnknownItem(f"unknown item {item_id!r} in scenario {scenario.name!r}")
        plan = self.plans[scenario.name]
        for name in dict.fromkeys([*plan["candidate_sources"], *plan["scorers"]]):
            component = self.bundle.components.get(name)
            if isinstance(component, SimilarItems):
                try:
                    ids, sims = component.similar_items(scenario.name, item_id, k)
                except KeyError:
                    continue
                return name, [str(i) for i in ids], [float(s) for s in sims]
        raise UnknownItem(f"no component of scenario {scenario.name!r} knows items similar "
                          f"to {item_id!r} (install a plugin that offers item similarity, "
                          "such as hybridrec-als)")

    def policy(self, scenario_name: str) -> dict[str, Any]:
        """The scenario's blend policy now (``AdaptiveBlender.state``); a bare description
        of the blender where nothing adapts (no feedback log)."""
        scenario = self.scenario(scenario_name)
        adaptive = self.adaptive.get(scenario.name)
        pipeline = self.pipelines[scenario.name]
        if adaptive is None or self.feedback is None:
            return {"scenario": scenario.name, "bundle_version": self.version,
                    "policy": pipeline.blender.name, "arms": [], "contexts": [],
                    "offline_prior": {"blender": pipeline.blender.name,
                                      **pipeline.blender.describe()},
                    "updates": 0, "history": []}
        keys = [f"{n}.{t}" for n, s in pipeline.scorers.items() for t in s.tasks]
        return adaptive.state(keys, self.feedback.policy_history(self.version, scenario.name))

    def knows_item(self, scenario: str, item_id: str) -> bool:
        pipeline = self.pipelines.get(scenario)
        return pipeline is not None and item_id in pipeline.index


def _recent_items(context: Mapping[str, Any]) -> list[str]:
    recent = context.get(RECENT_ITEMS)
    if recent is None:
        return []
    if not isinstance(recent, list) or not all(isinstance(i, str) for i in recent):
        raise InvalidRequest("context", f"context.{RECENT_ITEMS} must be a list of item id "
                                        "strings")
    if len(recent) > MAX_RECENT_ITEMS:
        raise InvalidRequest("context", f"context.{RECENT_ITEMS} holds {len(recent)} items; "
                                        f"at most {MAX_RECENT_ITEMS}")
    return recent


def _by_user(frame: Any, column: str | None) -> dict[tuple[str, str], list[Any]]:
    """``{(scenario, user): [column values, oldest first]}``; whole (item, type, time) events
    when ``column`` is None."""
    frame = frame.sort_values(C.EVENT_TIMESTAMP, kind="stable")
    if column is None:
        stamps = frame[C.EVENT_TIMESTAMP].dt.tz_localize(None).to_numpy("datetime64[us]")
        values: Any = list(zip(frame[C.ITEM_ID], frame[C.EVENT_TYPE], stamps,
                               frame[C.VALUE].astype(float), strict=True))
    else:
        values = frame[column].tolist()
    out: dict[tuple[str, str], list[Any]] = {}
    for scenario, user, value in zip(frame[C.SCENARIO], frame[C.USER_ID], values, strict=True):
        out.setdefault((str(scenario), str(user)), []).append(value)
    return out


def _or_nothing(values: list[Any] | None, n: int) -> list[Any]:
    return values if values is not None else [None] * n
