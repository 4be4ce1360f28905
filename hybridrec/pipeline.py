"""The one scoring path: candidates -> exclusions -> features -> every scorer -> blender -> top k.

Serving calls it for one request, offline evaluation for thousands of users at once; both get
the same candidates, features, scores and ranking, because there is no other code that does
it. Requests travel as arrays (``Requests``): each stage works on all of them together, so a
batch costs a few vectorised calls per component, not a loop per user.

A request whose user none of the scenario's scorers knows anything about (no history in the
scenario and none of the user features the scorers declare) is a cold start: it is ranked by
the scenario's ``fallback`` component alone, when the scenario names one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec.contracts import (
    PROBABILITY_TASKS,
    Blend,
    Blender,
    CandidateSource,
    EventSequences,
    Explainer,
    Ragged,
    RetrievalBatch,
    Scenario,
    ScoreBatch,
    Scorer,
)
from hybridrec.features import FeatureError, FeatureSet, FeatureSource, resolve_features
from hybridrec.ids import Codes, IdIndex
from hybridrec.isolation import FEATURES, Degraded, Guard
from hybridrec.ranking import top_k_groups, top_k_rows, weighted_z_terms

#: The policy of a blend that serving fell back to when the blender failed.
MEAN_BLEND = "mean"


class ScoringError(RuntimeError):
    """A component broke the contract (a wrong shape, say); the message names it."""


@dataclass
class ScenarioPlan:
    """What a scenario ranks with, by component name; recorded in the bundle manifest."""

    scorers: list[str]
    candidate_sources: list[str]
    blender: str
    fallback: str | None = None
    features: dict[str, list[str]] = field(default_factory=dict)
    sequence_length: int = 0
    #: Scenario fields the training config set (``objective_events``, ``n_candidates``...),
    #: applied wherever the bundle serves or is evaluated.
    settings: dict[str, Any] = field(default_factory=dict)
    #: The registered scenario's objective value feature (``ad_profile:bid``), if any.
    objective_value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"scorers": self.scorers, "candidate_sources": self.candidate_sources,
                "blender": self.blender, "fallback": self.fallback, "features": self.features,
                "sequence_length": self.sequence_length, "settings": self.settings,
                "objective_value": self.objective_value}

    def scenario(self, registered: Scenario) -> Scenario:
        """The registered scenario with this plan's settings."""
        from dataclasses import replace

        settings: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                    for k, v in self.settings.items()}
        return replace(registered, **settings) if settings else registered

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioPlan:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def readers(self) -> list[str]:
        """The components that score (and may read features): scorers, then the fallback."""
        return list(dict.fromkeys([*self.scorers, *([self.fallback] if self.fallback else [])]))

    def declarations(self, components: Mapping[str, Any], blender: Any
                     ) -> dict[str, tuple[str, ...]]:
        """``{component label: feature_refs}`` of what reads features (scorers, fallback,
        blender)."""
        out = {f"scorer {n!r}": tuple(components[n].feature_refs) for n in self.readers()}
        out[f"blender {self.blender!r}"] = tuple(blender.feature_refs)
        value = self.settings.get("objective_value", self.objective_value)
        if value:
            out["the scenario's objective value"] = (value,)
        return out


@dataclass
class Requests:
    """One or many recommendation requests of one scenario.

    ``history`` holds the items each user acted on, oldest first (left out of the results
    where ``exclude_seen``, and read by scorers that fold new events in). ``candidates``, when
    given, are ranked instead of retrieving candidates.
    """

    user_ids: np.ndarray
    history: Ragged
    exclude_seen: np.ndarray
    context: list[Mapping[str, Any]] = field(default_factory=list)
    candidates: Ragged | None = None
    sequences: EventSequences | None = None
    as_of: np.datetime64 | None = None

    def __post_init__(self) -> None:
        if not self.context:
            self.context = [{} for _ in range(len(self.user_ids))]

    @classmethod
    def one(cls, user_id: str, history: Sequence[str] = (), exclude_seen: bool = True,
            context: Mapping[str, Any] | None = None, candidates: Sequence[str] | None = None,
            sequences: EventSequences | None = None,
            as_of: np.datetime64 | None = None) -> Requests:
        return cls(user_ids=np.array([user_id], dtype=object),
                   history=Ragged.single(np.asarray(list(history), dtype=str)),
                   exclude_seen=np.array([exclude_seen]), context=[dict(context or {})],
                   candidates=None if candidates is None else
                   Ragged.single(np.asarray(list(candidates), dtype=str)),
                   sequences=sequences, as_of=as_of)

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, rows: np.ndarray) -> Requests:
        seq = self.sequences
        if seq is not None:
            positions = Ragged(np.arange(len(seq.item_ids.values)), seq.item_ids.offsets)
            picked = positions.take(rows).values
            seq = EventSequences(seq.item_ids.take(rows), seq.timestamps[picked],
                                 seq.event_types[picked], seq.values[picked])
        return Requests(self.user_ids[rows], self.history.take(rows), self.exclude_seen[rows],
                        [self.context[r] for r in rows],
                        None if self.candidates is None else self.candidates.take(rows), seq,
                        self.as_of)


@dataclass
class Scored:
    """A scored batch: every candidate's per-scorer outputs and blended score.

    ``codes`` are the candidates' positions in the scenario's catalogue; ``unknown`` the
    explicit candidates each request named that the catalogue does not have.
    """

    batch: ScoreBatch
    codes: np.ndarray
    outputs: dict[str, dict[str, np.ndarray]]
    final: np.ndarray
    unknown: Ragged
    #: Each blend input's term of ``final`` per row, when the blender says
    #: (``Blender.contributions``).
    contributions: dict[str, np.ndarray] | None = None
    #: The blender's decision per request (None before the blender is fit).
    blend: Blend | None = None
    #: What serving left out of this batch's answers, and why (``hybridrec.isolation``).
    degraded: list[Degraded] = field(default_factory=list)

    def top(self, k: int, values: np.ndarray | None = None) -> Ragged:
        """Per request, the row positions of its ``k`` best candidates by ``values``
        (default: the blended score)."""
        return top_k_groups(self.final if values is None else values, self.batch.offsets, k)


@dataclass
class Ranked:
    """One request's answer."""

    item_ids: list[str]
    scores: list[float | None]
    scorer_scores: list[dict[str, float | None]]
    cold_start: bool
    unknown_candidates: list[str]
    #: Per item, each explaining scorer's explanation (when asked for).
    explanations: list[dict[str, Any] | None] | None = None
    #: Per item, each blend input's contribution to its score (when the blender says).
    contributions: list[dict[str, float | None]] | None = None
    #: How the blend was decided (``Blend``): what a log needs for off-policy evaluation.
    decision: Decision | None = None
    #: What was left out of this answer (a failed scorer, unread features), and why.
    degraded: list[Degraded] = field(default_factory=list)


@dataclass
class Decision:
    """One request's blend decision: the policy, the arm drawn, every arm's probability, the
    context it depended on, and, per shown position, the probability that the item shown
    there would have been shown there (over the arms' draws)."""

    policy: str
    arm: str
    probabilities: dict[str, float]
    context: dict[str, str]
    positions: list[float]
    #: Per arm, the items it would have shown (for off-policy evaluation of other mixtures
    #: of the arms).
    lists: dict[str, list[str]]
    #: Per item of any list, a scorer's calibrated probability for it (``PROBABILITY_TASKS``;
    #: the direct method's reward model), when the scenario has one.
    estimates: dict[str, float] = field(default_factory=dict)

    @property
    def propensity(self) -> float:
        """The probability of the list shown: of the arm drawn."""
        return self.probabilities[self.arm]

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "arm": self.arm, "propensity": self.propensity,
                "probabilities": self.probabilities, "context": self.context,
                "positions": self.positions}


def arm_tops(arm_scores: Mapping[str, np.ndarray], offsets: np.ndarray, k: int
             ) -> dict[str, Ragged]:
    """Each arm's ``k`` best rows per request; a single request's arms in one call."""
    if len(offsets) != 2 or len(arm_scores) < 2:
        return {arm: top_k_groups(values, offsets, k) for arm, values in arm_scores.items()}
    start, stop = int(offsets[0]), int(offsets[1])
    names = list(arm_scores)
    rows = top_k_rows(np.stack([np.asarray(arm_scores[a], dtype=float)[start:stop]
                                for a in names]), k)
    return {arm: Ragged(rows[i] + start, np.array([0, rows.lengths[i]], dtype=np.int64))
            for i, arm in enumerate(names)}


def decisions(scored: Scored, top: Ragged, k: int) -> list[Decision]:
    """Each request's ``Decision``, from the blend and the rows it shows (``top``)."""
    blend = scored.blend
    assert blend is not None, "decisions come from a blended batch"
    offsets = scored.batch.offsets
    tops = arm_tops(blend.arm_scores, offsets, k)
    ids = scored.batch.item_ids
    probability = next((v for tasks in scored.outputs.values() for t, v in tasks.items()
                        if t in PROBABILITY_TASKS), None)
    out = []
    for r in range(scored.batch.n_requests):
        shown, drawn = top[r], blend.arms[r]
        probs = blend.probabilities[r]
        lists = {drawn: shown}
        lists.update({a: t[r] for a, t in tops.items() if a != drawn})
        positions = np.zeros(len(shown))
        for arm, rows in lists.items():
            same = rows[:len(shown)] == shown[:len(rows)]
            positions[:len(same)] += probs.get(arm, 0.0) * same
        estimates = {}
        if probability is not None:
            listed = np.unique(np.concatenate(list(lists.values())))
            listed = listed[np.isfinite(probability[listed])]
            estimates = dict(zip(ids[listed].tolist(),
                                 np.round(probability[listed], 6).tolist(), strict=True))
        out.append(Decision(blend.policy, drawn, dict(probs),
                            blend.context[r] if blend.context else {},
                            [float(p) for p in positions],
                            {a: ids[rows].tolist() for a, rows in lists.items()}, estimates))
    return out


class Pipeline:
    """Everything one scenario ranks with: fitted scorers, candidate sources and blender, the
    features they declare, and the catalogue."""

    def __init__(self, scenario: Scenario, scorers: Mapping[str, Scorer],
                 sources: Mapping[str, CandidateSource], blender: Blender,
                 features: FeatureSource, catalogue: np.ndarray,
                 fallback: Any | None = None) -> None:
        self.scenario = scenario
        self.scorers = dict(scorers)
        self.sources = dict(sources)
        self.blender = blender
        self.features = features
        self.catalogue = np.asarray(catalogue, dtype=str)
        self.index = IdIndex(self.catalogue)
        self.fallback = fallback  # a component that is both Scorer and CandidateSource
        #: Other blenders evaluation ranks with over the same scores, for comparison.
        self.baselines: dict[str, Blender] = {}
        self.sequence_length = sequence_length([*self.scorers.values(), blender])
        # Evidence about a user: the user features the scorers (not the blender) read.
        self.evidence = {ref.replace(":", "__") for s in self.scorers.values()
                         for ref in s.feature_refs}
        #: Set when serving: each component isolated (``hybridrec.isolation``). Without it
        #: (training, evaluation) a broken component is an error.
        self.guard: Guard | None = None

    @classmethod
    def from_plan(cls, scenario: Scenario, plan: ScenarioPlan, components: Mapping[str, Any],
                  blenders: Mapping[str, Blender], features: FeatureSource,
                  catalogue: np.ndarray) -> Pipeline:
        return cls(scenario, {n: components[n] for n in plan.scorers},
                   {n: components[n] for n in plan.candidate_sources}, blenders[plan.blender],
                   features, catalogue, components[plan.fallback] if plan.fallback else None)

    # Whole requests ---------------------------------------------------------------------
    def recommend(self, requests: Requests, k: int, explain: bool = False) -> list[Ranked]:
        """Top ``k`` per request, cold starts through the fallback; with ``explain``, what
        each scorer that can explain (``Explainer``) says about every returned item."""
        user_features, unread = self._user_features(requests)
        cold = self.cold_mask(requests, user_features)
        answers: list[Ranked | None] = [None] * len(requests)
        for is_cold in (False, True):
            rows = np.flatnonzero(cold == is_cold)
            if len(rows) == 0:
                continue
            part = requests if len(rows) == len(requests) else requests.take(rows)
            feats = {c: v[rows] for c, v in user_features.items()}
            scored = self.score(part, feats, cold=is_cold)
            if unread is not None:
                scored.degraded.insert(0, unread)
            for i, ranked in zip(rows, self._answers(scored, k, is_cold, explain),
                                 strict=True):
                answers[i] = ranked
        return [a for a in answers if a is not None]

    def _user_features(self, requests: Requests
                       ) -> tuple[dict[str, np.ndarray], Degraded | None]:
        """The requests' user features; when serving and the online store fails or is slow,
        every one of them missing, and why."""
        def read() -> dict[str, np.ndarray]:
            return self.features.users(self.scenario.name, requests.user_ids)

        if self.guard is None:
            return read(), None
        return self.guard.fetch(FEATURES, read, lambda: self.features.missing_users(
            self.scenario.name, len(requests)))

    def cold_mask(self, requests: Requests, user_features: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        if self.fallback is None:
            return np.zeros(len(requests), dtype=bool)
        known = requests.history.lengths > 0
        for column, values in user_features.items():
            if column in self.evidence:
                known |= present(values)
        return ~known

    def _answers(self, scored: Scored, k: int, cold: bool, explain: bool = False
                 ) -> list[Ranked]:
        top = scored.top(k)
        keys = [(f"{s}.{t}", v) for s, tasks in scored.outputs.items() for t, v in tasks.items()]
        notes = self._explain(scored, top.values) if explain else None
        shares = None
        if scored.contributions:
            picked = [(key, values[top.values]) for key, values in scored.contributions.items()]
            shares = [{key: _finite(v[j]) for key, v in picked}
                      for j in range(len(top.values))]
        choices = decisions(scored, top, k) if scored.blend is not None else None
        answers = []
        for r in range(scored.batch.n_requests):
            rows = top[r]
            answers.append(Ranked(
                item_ids=scored.batch.item_ids[rows].tolist(),
                scores=[_finite(scored.final[i]) for i in rows],
                scorer_scores=[{key: _finite(v[i]) for key, v in keys} for i in rows],
                cold_start=cold, unknown_candidates=scored.unknown[r].tolist(),
                explanations=None if notes is None else
                notes[top.offsets[r]:top.offsets[r + 1]],
                contributions=None if shares is None else
                shares[top.offsets[r]:top.offsets[r + 1]],
                decision=None if choices is None else choices[r],
                degraded=list(scored.degraded)))
        return answers

    def _explain(self, scored: Scored, rows: np.ndarray) -> list[dict[str, Any] | None]:
        """Per row of ``rows``, ``{scorer: explanation}`` from the scorers that explain (None
        where none does)."""
        out: list[dict[str, Any]] = [{} for _ in rows]
        for name in scored.outputs:
            scorer = self.scorers.get(name) or (self.fallback if self.fallback is not None
                                                and self.fallback.name == name else None)
            if not isinstance(scorer, Explainer) or not len(rows):
                continue
            notes = scorer.explain(scored.batch, rows)
            if len(notes) != len(rows):
                raise ScoringError(f"scorer {name!r} explained {len(notes)} rows of "
                                   f"{len(rows)}")
            for entry, note in zip(out, notes, strict=True):
                if note is not None:
                    entry[name] = note
        return [entry or None for entry in out]

    # The stages -------------------------------------------------------------------------
    def score(self, requests: Requests, user_features: Mapping[str, np.ndarray] | None = None,
              cold: bool = False, blend: bool = True) -> Scored:
        """Candidates, features, every scorer and (unless not ``blend``, when the blender is
        still to be fit) the blend for a batch of requests."""
        scorers = self._fallback() if cold else self.scorers
        if user_features is None:
            user_features = self.features.users(self.scenario.name, requests.user_ids)
        exclude = requests.history.mask(
            np.repeat(requests.exclude_seen, requests.history.lengths))
        if requests.candidates is not None:
            candidates, codes, unknown = self._known(requests.candidates)
        else:
            candidates, codes, unknown = self._retrieve(requests, exclude, cold)
        candidates, codes = self._exclude(candidates, codes, exclude)
        coded = Codes(self.index, codes)
        batch = ScoreBatch(
            scenario=self.scenario, user_ids=requests.user_ids, candidates=candidates,
            user_features=user_features,
            item_features=self.features.items(self.scenario.name, candidates.values, coded),
            history=requests.history, sequences=requests.sequences, context=requests.context,
            as_of=requests.as_of, item_codes=coded)
        left: list[Degraded] = []
        if self.guard is None:
            outputs = {name: self._checked(name, scorer.score(batch), len(batch))
                       for name, scorer in scorers.items()}
        else:
            outputs, left = self.guard.score(scorers, batch, self._checked)
        if not blend:
            return Scored(batch, codes, outputs, np.zeros(len(batch)), unknown, degraded=left)
        out = self._blend(outputs, batch, left)
        return Scored(batch, codes, outputs, out.scores, unknown, out.contributions, out, left)

    def _blend(self, outputs: Mapping[str, Mapping[str, np.ndarray]], batch: ScoreBatch,
               left: list[Degraded] | None = None) -> Blend:
        """The blender's decision, checked; when serving and the blender fails, the mean of
        the scores standardised per request (and why, in ``left``)."""
        if self.guard is None or left is None:
            return self._decide(outputs, batch)
        try:
            return self._decide(outputs, batch)
        except Exception as exc:  # a plugin's own error: named, never the request's
            reason = str(exc) if isinstance(exc, ScoringError) else \
                f"raised {type(exc).__name__}"
            left.append(Degraded(f"blender {self.blender.name!r}",
                                 f"{reason}; ranked by the mean standardised score"))
            self.guard.observer.failure(self.scenario.name, f"blender {self.blender.name}",
                                        "raised")
            terms = weighted_z_terms(outputs, batch.request, batch.n_requests)  # the mean
            scores = sum(terms.values(), np.zeros(len(batch)))
            return Blend.fixed(MEAN_BLEND, scores, None, batch.n_requests)

    def _decide(self, outputs: Mapping[str, Mapping[str, np.ndarray]], batch: ScoreBatch
                ) -> Blend:
        """The blender's scores, terms and decision (``Blender.decide``), checked: every
        array aligned with the rows, one arm per request drawn from probabilities that sum
        to 1."""
        out = self.blender.decide(outputs, batch)
        name, n = self.blender.name, len(batch)
        arrays = {"scores": out.scores, **{f"contribution {k!r}": v for k, v in
                                           (out.contributions or {}).items()},
                  **{f"arm {a!r} scores": v for a, v in out.arm_scores.items()}}
        for label, values in arrays.items():
            if np.shape(values) != (n,):
                raise ScoringError(f"blender {name!r} returned {label} with shape "
                                   f"{np.shape(values)} for {n} candidates")
        if len(out.arms) != batch.n_requests or len(out.probabilities) != batch.n_requests:
            raise ScoringError(f"blender {name!r} decided {len(out.arms)} arms for "
                               f"{batch.n_requests} requests")
        for arm, probs in zip(out.arms, out.probabilities, strict=True):
            if probs.get(arm, 0.0) <= 0 or abs(sum(probs.values()) - 1.0) > 1e-6:
                raise ScoringError(f"blender {name!r} drew arm {arm!r} with probabilities "
                                   f"{probs} (they must sum to 1, the drawn arm's above 0)")
            unscored = [a for a, p in probs.items()
                        if p > 0 and a != arm and a not in out.arm_scores]
            if unscored:
                raise ScoringError(f"blender {name!r} gave no arm_scores for the arms "
                                   f"{unscored} it could have drawn")
        return out

    def _fallback(self) -> dict[str, Any]:
        assert self.fallback is not None, "cold starts are routed only with a fallback"
        return {self.fallback.name: self.fallback}

    def _retrieve(self, requests: Requests, exclude: Ragged, cold: bool
                  ) -> tuple[Ragged, np.ndarray, Ragged]:
        sources = self._fallback() if cold else self.sources
        batch = RetrievalBatch(scenario=self.scenario, user_ids=requests.user_ids,
                               history=requests.history, exclude=exclude,
                               context=requests.context)
        pools = [source.retrieve(batch, self.scenario.n_candidates)
                 for source in sources.values()]
        for name, pool in zip(sources, pools, strict=True):
            if len(pool) != len(requests):
                raise ScoringError(f"candidate source {name!r} returned {len(pool)} lists for "
                                   f"{len(requests)} requests")
        return self._union(pools)

    def _union(self, pools: Sequence[Ragged]) -> tuple[Ragged, np.ndarray, Ragged]:
        """Each request's candidates from every pool, first occurrence kept, pool order
        (then each pool's own order) preserved; ids outside the catalogue are dropped."""
        if len(pools) == 1:
            return self._known(pools[0])
        values = np.concatenate([p.values for p in pools]).astype(str, copy=False)
        rows = np.concatenate([p.row_index() for p in pools])
        order = np.lexsort((np.arange(len(values)), rows))
        merged = Ragged(values[order], _offsets(rows, len(pools[0])))
        candidates, codes, _ = self._known(merged)
        return candidates, codes, Ragged.empty(len(pools[0]))

    def _known(self, candidates: Ragged) -> tuple[Ragged, np.ndarray, Ragged]:
        """Catalogue items, first occurrence per request, with their catalogue codes; and the
        unknown ones, each once per request."""
        codes = self.index.positions(candidates.values)
        rows = candidates.row_index()
        known = codes >= 0
        keep = np.zeros(len(codes), dtype=bool)
        keep[_first_per_row(rows, codes, known, len(self.catalogue))] = True
        if not known.all():  # unknown ids, coded among themselves
            ids, inverse = np.unique(candidates.values[~known].astype(str),
                                     return_inverse=True)
            strangers = np.zeros(len(codes), dtype=np.int64)
            strangers[~known] = inverse
            keep[_first_per_row(rows, strangers, ~known, len(ids))] = True
        return (candidates.mask(keep & known), codes[keep & known],
                candidates.mask(keep & ~known))

    def _exclude(self, candidates: Ragged, codes: np.ndarray, exclude: Ragged
                 ) -> tuple[Ragged, np.ndarray]:
        """Candidates without each request's excluded items, and their catalogue codes."""
        if len(exclude.values):
            width = len(self.catalogue) + 1
            blocked = exclude.row_index() * width + self.index.positions(exclude.values) + 1
            keep = ~np.isin(candidates.row_index() * width + codes + 1, blocked)
            if not keep.all():
                return candidates.mask(keep), codes[keep]
        return candidates, codes

    @staticmethod
    def _checked(name: str, outputs: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
        checked = {}
        for task, values in outputs.items():
            array = np.asarray(values, dtype=float)
            if array.shape != (n,):
                raise ScoringError(f"scorer {name!r} returned {task!r} with shape "
                                   f"{array.shape} for {n} candidates")
            checked[task] = array
        return checked


def _first_per_row(rows: np.ndarray, codes: np.ndarray, among: np.ndarray, width: int
                   ) -> np.ndarray:
    """The positions, of those ``among`` selects, where a code appears first in its row."""
    at = np.flatnonzero(among)
    _, first = np.unique(rows[at] * width + codes[at], return_index=True)
    return at[first]


def resolve_plans(views: Mapping[str, Any], scenarios: Mapping[str, Scenario],
                  plans: Mapping[str, ScenarioPlan], components: Mapping[str, Any],
                  blenders: Mapping[str, Blender]) -> dict[str, FeatureSet]:
    """Each scenario's declared features, resolved against the applied registry's ``views``;
    a FeatureError names the scenario, the component and the reference."""
    out = {}
    for name, plan in plans.items():
        try:
            out[name] = resolve_features(views, scenarios[name], plan.declarations(
                components, blenders[plan.blender]))
        except FeatureError as exc:
            raise FeatureError(f"scenario {name!r}: {exc}") from None
    return out


def sequence_length(readers: Sequence[Any]) -> int:
    """How many recent events a scenario keeps: the most any of its readers declares."""
    return max((int(r.sequence_length) for r in readers), default=0)


def present(values: np.ndarray) -> np.ndarray:
    """Where a feature column has a value (numeric columns mark missing with NaN)."""
    if values.dtype.kind == "f":
        return ~np.isnan(values)
    return np.array([v is not None for v in values], dtype=bool)


def _offsets(rows: np.ndarray, n: int) -> np.ndarray:
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return offsets


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None  # numpy's isfinite: ~10x the time
