"""The request path: candidates -> features -> every scorer, vectorised -> blender -> top-k.

Used by the HTTP server and by ``hybridrec recommend``. User features are read from the Feast
online store per request; item features come from an in-memory ``ItemCache``. A user the
system knows nothing about (no online features, no history, no feedback) is a cold start and
is ranked by scenario popularity alone, which the result says.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec import columns as C
from hybridrec.bundle import Bundle
from hybridrec.contracts import RetrievalRequest, Scenario, ScoreBatch, SimilarItems
from hybridrec.feedback import FeedbackLog

#: The scorer and candidate source every deployment has, used for cold starts.
FALLBACK = "popularity"
FALLBACK_LABEL = "scenario_popularity"
#: Context key: item ids the user just interacted with, not yet sent as feedback.
RECENT_ITEMS = "recent_items"


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
class Recommendation:
    request_id: str
    user_id: str
    scenario: str
    bundle_version: str
    item_ids: list[str]
    scores: list[float]
    scorer_scores: list[dict[str, float | None]]
    cold_start: bool
    fallback: str | None
    unknown_candidates: list[str] = field(default_factory=list)


class Recommender:
    def __init__(self, bundle: Bundle, store: Any, feedback: FeedbackLog | None = None) -> None:
        from hybridrec.features import ItemCache, UserFeatures
        from hybridrec.plugins import get_registry

        self.bundle = bundle
        self.feedback = feedback
        registry = get_registry()
        self.plans: dict[str, dict[str, Any]] = bundle.manifest["scenarios"]
        self.scenarios: dict[str, Scenario] = {
            name: registry.get("scenarios", name) for name in self.plans
        }
        catalogue = bundle.catalogue()
        self.catalogue = {
            name: catalogue.loc[catalogue[C.SCENARIO] == name, C.ITEM_ID].to_numpy(str)
            for name in self.plans
        }
        history = bundle.history().sort_values(C.EVENT_TIMESTAMP)
        self.history: dict[tuple[str, str], list[str]] = {
            (str(s), str(u)): list(items)
            for (s, u), items in history.groupby([C.SCENARIO, C.USER_ID], sort=False)[C.ITEM_ID]
        }
        ids = catalogue[C.ITEM_ID].to_numpy(str)
        self.items = ItemCache(store, ids, ad_ids=ids)
        self.user_features = UserFeatures(store)
        self._known = {name: set(items) for name, items in self.catalogue.items()}
        # Item columns a request needs: what its scorers declare in ``feature_refs``.
        self.item_columns = {
            name: sorted({ref.replace(":", "__") for s in set(plan["scorers"]) | {FALLBACK}
                          if s in bundle.scorers
                          for ref in type(bundle.scorers[s]).feature_refs})
            for name, plan in self.plans.items()
        }

    @property
    def version(self) -> str:
        return self.bundle.version

    def scenario(self, name: str) -> Scenario:
        if name not in self.scenarios:
            raise UnknownScenario(name, sorted(self.scenarios))
        return self.scenarios[name]

    def user_history(self, user_id: str, scenario: str,
                     context: Mapping[str, Any] | None = None) -> list[str]:
        """Items the user acted on, oldest first: the training window, feedback received
        since, then ``context["recent_items"]`` sent with the request."""
        seen = list(self.history.get((scenario, user_id), ()))
        if self.feedback is not None:
            seen.extend(self.feedback.items_of(user_id, scenario))
        recent = (context or {}).get(RECENT_ITEMS)
        if recent is not None:
            if not isinstance(recent, list) or not all(isinstance(i, str) for i in recent):
                raise InvalidRequest("context", f"context.{RECENT_ITEMS} must be a list of "
                                                "item id strings")
            seen.extend(recent)
        return seen

    def similar(self, scenario_name: str, item_id: str, k: int) -> tuple[str, list[str],
                                                                        list[float]]:
        """Items like ``item_id`` from the first component of the scenario that offers
        similarity; returns (component name, item ids, similarities)."""
        scenario = self.scenario(scenario_name)
        if not 1 <= k <= scenario.max_k:
            raise InvalidRequest("k", f"k must be between 1 and {scenario.max_k}, got {k}")
        if not self.knows_item(scenario.name, item_id):
            raise UnknownItem(f"unknown item {item_id!r} in scenario {scenario.name!r}")
        plan = self.plans[scenario.name]
        for name in [*plan["candidate_sources"], *plan["scorers"]]:
            component = (self.bundle.candidate_sources.get(name)
                         or self.bundle.scorers.get(name))
            if isinstance(component, SimilarItems):
                try:
                    ids, sims = component.similar_items(scenario.name, item_id, k)
                except KeyError:
                    continue
                return name, [str(i) for i in ids], [float(s) for s in sims]
        raise UnknownItem(f"no component of scenario {scenario.name!r} knows items similar "
                          f"to {item_id!r} (install a plugin that offers item similarity, "
                          "such as hybridrec-als)")

    def recommend(
        self,
        user_id: str,
        scenario_name: str,
        k: int | None = None,
        context: Mapping[str, Any] | None = None,
        candidates: Sequence[str] | None = None,
        exclude_seen: bool = True,
        request_id: str | None = None,
    ) -> Recommendation:
        scenario = self.scenario(scenario_name)
        k = scenario.default_k if k is None else k
        if not 1 <= k <= scenario.max_k:
            raise InvalidRequest("k", f"k must be between 1 and {scenario.max_k} for scenario "
                                      f"{scenario.name!r}, got {k}")
        context = dict(context or {})
        plan = self.plans[scenario.name]
        user_feats = self.user_features.get(user_id)
        history = self.user_history(user_id, scenario.name, context)
        cold = not user_feats and not history
        fallback = FALLBACK if cold and FALLBACK in self.bundle.scorers else None
        scorer_names = [fallback] if fallback else plan["scorers"]
        source_names = [fallback] if fallback else plan["candidate_sources"]
        exclude = frozenset(history) if exclude_seen else frozenset()

        unknown: list[str] = []
        if candidates is not None:
            ids = np.array(list(dict.fromkeys(candidates)), dtype=str)
            known = np.isin(ids, self.catalogue[scenario.name])
            unknown = ids[~known].tolist()
            ids = ids[known]
            if exclude:
                ids = ids[~np.isin(ids, list(exclude))]
        else:
            request = RetrievalRequest(scenario=scenario, user_id=user_id, history=history,
                                       exclude=exclude, context=context)
            pools = [self.bundle.candidate_sources[name].retrieve(request, scenario.n_candidates)
                     for name in source_names]
            ids = np.array(list(dict.fromkeys(np.concatenate(pools).tolist())), dtype=str)

        batch = ScoreBatch(scenario=scenario, user_id=user_id, item_ids=ids,
                           user_features=user_feats,
                           item_features=self.items.take(ids, self.item_columns[scenario.name]),
                           history=history, context=context)
        outputs = {name: self.bundle.scorers[name].score(batch) for name in scorer_names}
        if len(ids):
            blender = self.bundle.blenders[plan["blender"]]
            final = np.asarray(blender.blend(outputs, scenario, context), dtype=float)
            final = np.nan_to_num(final, nan=-np.inf)
            top = np.argsort(-final, kind="stable")[:k]
        else:
            final, top = np.array([]), np.array([], dtype=int)
        per_item = [
            {f"{s}.{t}": _finite(v[i]) for s, tasks in outputs.items() for t, v in tasks.items()}
            for i in top
        ]
        return Recommendation(
            request_id=request_id or uuid.uuid4().hex,
            user_id=user_id,
            scenario=scenario.name,
            bundle_version=self.version,
            item_ids=ids[top].tolist(),
            scores=[float(final[i]) if np.isfinite(final[i]) else 0.0 for i in top],
            scorer_scores=per_item,
            cold_start=cold,
            fallback=FALLBACK_LABEL if fallback else None,
            unknown_candidates=unknown,
        )

    def knows_item(self, scenario: str, item_id: str) -> bool:
        return item_id in self._known.get(scenario, ())


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
