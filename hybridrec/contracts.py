"""The contracts plugins implement: Scorer, CandidateSource, Blender, and the records they see.

Everything is batched. A ``ScoreBatch`` holds one or many requests of one scenario: the
candidates of all of them as one flat array, request after request (``offsets`` say where each
request's rows start), so serving scores one request and offline evaluation scores thousands
of users with the same calls and no loop per user. Scorers return one float array per task
over all rows; ``NaN`` means "no opinion" (an item or user the scorer does not know) and is
never to be read as a score of zero; blenders handle it explicitly.

Scorers and blenders declare what they read: ``feature_refs`` (Feast ``view:feature``
references, user or item side; the core fetches exactly these, checked against the applied
Feast registry) and ``sequence_length`` (how many of the user's most recent events in the
scenario they want in ``ScoreBatch.sequences``). Numeric features arrive as float arrays with
NaN where missing; others as object arrays with None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from hybridrec.columns import AD_ID, ITEM_ID
from hybridrec.ids import Codes, IdIndex

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PROBABILITY_TASKS",
    "TASKS",
    "Blend",
    "BlendExamples",
    "Blender",
    "CandidateSource",
    "DerivedTable",
    "EventSequences",
    "Explainer",
    "FeatureWriter",
    "Ragged",
    "RetrievalBatch",
    "Scenario",
    "ScoreBatch",
    "ScoredRequests",
    "Scorer",
    "SimilarItems",
    "SyntheticScenario",
    "SyntheticWorld",
    "TrainingData",
    "scorer_output",
]

#: Tasks known to the core. Scorers may add their own; these are the shared vocabulary.
TASKS = ("click", "like", "purchase", "rating", "ctr", "watch")
#: Tasks whose scores are calibrated probabilities: evaluation reports their log loss and
#: calibration error on the test impressions, and they mean the same across requests.
PROBABILITY_TASKS = ("ctr",)


#: Deprecated contract methods: (contract, method) -> what to do instead. A registered class
#: that still defines one is named in one warning per plugin (``hybridrec.plugins``).
DEPRECATED_METHODS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Scenario:
    """A surface that recommends (a shop page, a video feed, an ad slot).

    ``event_weights`` lists the event types the scenario accepts and how much each one says
    about preference (a purchase says more than a view). ``positive_events`` are the events
    that count as relevant in offline evaluation. ``scorers=None`` (and likewise
    ``candidate_sources``) means every registered one whose ``supports(scenario)`` is true.
    ``item_keys`` are the Feast join keys an item id of this scenario fills: an ad slot's items
    are ads, so ad-keyed views (``ad_profile``) attach to them and to no other scenario's items.
    ``fallback`` names the component (a scorer that is also a candidate source, and supports
    the scenario) that ranks alone for a user none of the scenario's scorers knows anything
    about; ``None`` sends such users through the full blend. A training config can set it, and
    the scenario's scorers, candidate sources and blender, per scenario
    (``[scenarios.shop] fallback = "popularity"``).

    Served, the blend adapts to feedback (``hybridrec.adaptive``): ``exploration`` bounds
    the probability of serving another way of blending than the best so far, and ``adapt =
    False`` freezes it.

    What the scenario is for is its *objective*: ``objective`` lists the tasks a scorer is
    ranked by alone (its first one the scorer has), and ``objective_events`` the gain of each
    event type, so that a (user, item) is worth the largest gain among its events (purchase
    1.0 and cart 0.2, say); ``objective_value`` (a numeric item feature, ``ad_profile:bid``)
    multiplies that gain, which makes an ad slot's objective its expected value, click
    probability times bid. ``None`` events mean every positive event gains 1. The learning
    blender trains for this objective and evaluation reports it (``objective@K``, NDCG with
    these gains).
    """

    name: str
    description: str = ""
    event_weights: Mapping[str, float] = field(default_factory=lambda: {"click": 1.0})
    positive_events: tuple[str, ...] = ("click",)
    objective: tuple[str, ...] = ("click",)
    objective_events: Mapping[str, float] | None = None
    objective_value: str | None = None
    candidate_sources: tuple[str, ...] | None = None
    scorers: tuple[str, ...] | None = None
    blender: str = "learned"
    fallback: str | None = None
    item_keys: tuple[str, ...] = (ITEM_ID,)
    default_k: int = 10
    max_k: int = 100
    n_candidates: int = 300
    #: Online adaptation of the blend (``hybridrec.adaptive``): the probability of serving
    #: another arm than the best one so far, and whether to adapt at all (``False``: frozen).
    exploration: float = 0.1
    adapt: bool = True
    #: How many of the latest lists the adaptive policy learns from.
    adaptation_window: int = 5000
    #: Serving isolates each scorer (``hybridrec.isolation``): a scorer that raises, returns
    #: the wrong shape or gives no answer within ``scorer_budget_ms`` (0: no time limit) is
    #: left out of the request's blend; after ``breaker_failures`` failures in a row it is not
    #: called for ``breaker_cooldown`` seconds, then tried again.
    scorer_budget_ms: float = 250.0
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self.event_weights)

    @property
    def gains(self) -> dict[str, float]:
        """Each event type's gain towards the objective (the events that gain nothing left
        out)."""
        if self.objective_events is None:
            return {event: 1.0 for event in self.positive_events}
        return {e: float(g) for e, g in self.objective_events.items() if g > 0}


#: The join keys an ad slot's items fill (the item id is also the ad id).
AD_ITEM_KEYS = (ITEM_ID, AD_ID)


@dataclass
class TrainingData:
    """What ``fit`` receives.

    ``events`` has one row per event (``user_id``, ``item_id``, ``scenario``, ``event_type``,
    ``value``, ``event_timestamp``) with the features the scenario's components declare
    joined point-in-time correctly by Feast (columns ``view__feature``), and the optional
    context columns (``position``, ``policy``, ``propensity``) where the data has them.
    ``items`` is the catalogue (one row per item, with ``scenario``); ``users`` the user
    profiles; ``ads`` the ad table (bids, targeting), where the data has ads. ``split`` is
    how the run holds out the events it evaluates on (``temporal``, ``random`` or
    ``leave-last``, see ``hybridrec.training.data.make_split``): a component that tunes
    itself on a validation slice of ``events`` draws it the same way
    (``hybridrec.scenario_models.validation_slices``), so that it tunes for the test it gets.
    """

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    scenarios: Mapping[str, Scenario]
    ads: pd.DataFrame | None = None
    split: str = "temporal"

    def scenario_events(self, scenario: str) -> pd.DataFrame:
        from hybridrec.columns import SCENARIO

        return self.events[self.events[SCENARIO] == scenario]


@dataclass(frozen=True)
class Ragged:
    """Rows of different lengths as one flat array: row ``r`` is
    ``values[offsets[r]:offsets[r + 1]]``. Vectorised code works on ``values`` with
    ``row_index()``; ``ragged[r]`` reads one row."""

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any] | np.ndarray], dtype: Any = None) -> Ragged:
        rows = [np.asarray(r, dtype=dtype) for r in rows]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate(rows) if rows else np.array([], dtype=dtype)
        return cls(values.astype(dtype, copy=False) if dtype is not None else values, offsets)

    @classmethod
    def single(cls, values: Sequence[Any] | np.ndarray, dtype: Any = None) -> Ragged:
        values = np.asarray(values, dtype=dtype)
        return cls(values, np.array([0, len(values)], dtype=np.int64))

    @classmethod
    def empty(cls, rows: int, dtype: Any = str) -> Ragged:
        return cls(np.array([], dtype=dtype), np.zeros(rows + 1, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row]:self.offsets[row + 1]]

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_index(self) -> np.ndarray:
        """For each value, the row it belongs to."""
        return self._row_index

    @cached_property
    def _row_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def take(self, rows: np.ndarray) -> Ragged:
        """The given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[rows]
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(self.values[positions], offsets)

    def mask(self, keep: np.ndarray) -> Ragged:
        """Only the values where ``keep`` is true, rows kept (possibly empty)."""
        kept = np.bincount(self.row_index()[keep], minlength=len(self))
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(kept, out=offsets[1:])
        return Ragged(self.values[keep], offsets)


@dataclass(frozen=True)
class EventSequences:
    """Each request's most recent events in the scenario, oldest first: the event log and the
    feedback received since training, then ``context.recent_items`` (event type ``"recent"``,
    value 1, stamped with the request time). ``timestamps`` (UTC, ``datetime64[us]``),
    ``event_types`` and ``values`` (a rating, a watch fraction) align with
    ``item_ids.values``."""

    item_ids: Ragged
    timestamps: np.ndarray
    event_types: np.ndarray
    values: np.ndarray


def utc64(when: datetime | str) -> np.datetime64:
    """A time (a datetime, a pandas Timestamp, or ISO 8601 text) as naive UTC microseconds,
    the unit of every time in a batch; a time without a zone is taken as UTC."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(when, "us")


def utc_now() -> np.datetime64:
    """The current time as naive UTC microseconds."""
    return utc64(datetime.now(UTC))


def scorer_output(scores: Mapping[str, Mapping[str, np.ndarray]], key: str
                  ) -> np.ndarray | None:
    """The scores of blend input ``key`` (``"scorer.task"``) among a batch's scorer outputs
    (``{scorer: {task: scores}}``), None where the batch has none."""
    scorer, _, task = key.partition(".")
    return scores.get(scorer, {}).get(task)


def _context_rows(context: Sequence[Mapping[str, Any]] | None, n: int) -> list[Mapping[str, Any]]:
    rows = list(context) if context is not None else [{} for _ in range(n)]
    if len(rows) != n:
        raise ValueError(f"{len(rows)} contexts for {n} requests")
    return rows


@dataclass
class ScoreBatch:
    """The candidates of one or many requests of one scenario, as arrays.

    Rows (``item_ids``, every ``item_features`` column) are the candidates of all requests,
    request after request; ``request`` gives each row's request, ``offsets`` where each
    request starts. Per-request arrays (``user_ids``, every ``user_features`` column) have one
    entry per request. ``as_of`` is when the batch is scored: the request time when serving,
    the split's cutoff when evaluating (naive UTC ``datetime64[us]``). Use
    ``ScoreBatch.one(...)`` for a single request.
    """

    scenario: Scenario
    user_ids: np.ndarray
    candidates: Ragged
    user_features: Mapping[str, np.ndarray] = field(default_factory=dict)
    item_features: Mapping[str, np.ndarray] = field(default_factory=dict)
    history: Ragged | None = None
    sequences: EventSequences | None = None
    context: Sequence[Mapping[str, Any]] | None = None
    as_of: np.datetime64 | None = None
    #: The candidates' positions in the catalogue, when the caller has them (serving and
    #: evaluation do): ``positions`` then looks candidates up by an array take.
    item_codes: Codes | None = field(default=None, repr=False)
    request: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.as_of is None:
            self.as_of = utc_now()
        if len(self.user_ids) != len(self.candidates):
            raise ValueError(f"{len(self.user_ids)} users for {len(self.candidates)} "
                             "candidate lists")
        if self.history is None:
            self.history = Ragged.empty(len(self.user_ids))
        self.context = _context_rows(self.context, len(self.user_ids))
        self.request = self.candidates.row_index()
        if self.item_codes is not None and len(self.item_codes) != len(self.candidates.values):
            raise ValueError(f"{len(self.item_codes)} item codes for "
                             f"{len(self.candidates.values)} candidates")

    @classmethod
    def one(cls, scenario: Scenario, user_id: str, item_ids: Sequence[str] | np.ndarray, *,
            user_features: Mapping[str, Any] | None = None,
            item_features: Mapping[str, np.ndarray] | None = None,
            history: Sequence[str] = (), context: Mapping[str, Any] | None = None,
            sequences: EventSequences | None = None,
            as_of: np.datetime64 | None = None) -> ScoreBatch:
        """A batch of one request; ``user_features`` maps each column to its one value."""
        return cls(scenario=scenario, user_ids=np.array([user_id], dtype=object),
                   candidates=Ragged.single(np.asarray(item_ids, dtype=str)),
                   user_features={c: np.array([v], dtype=object)
                                  for c, v in (user_features or {}).items()},
                   item_features=dict(item_features or {}),
                   history=Ragged.single(np.asarray(list(history), dtype=str)),
                   sequences=sequences, context=[dict(context or {})], as_of=as_of)

    @property
    def item_ids(self) -> np.ndarray:
        return self.candidates.values

    def positions(self, index: IdIndex) -> np.ndarray:
        """Where each candidate sits in ``index`` (-1 where it is absent): how a scorer
        finds its rows for the candidates. Same as ``index.positions(batch.item_ids)``, a
        few times faster when the batch has ``item_codes``."""
        return index.positions(self.item_ids if self.item_codes is None else self.item_codes)

    @property
    def offsets(self) -> np.ndarray:
        return self.candidates.offsets

    @property
    def n_requests(self) -> int:
        return len(self.user_ids)

    def __len__(self) -> int:
        return len(self.candidates.values)


@dataclass
class RetrievalBatch:
    """What a candidate source sees: one or many requests of one scenario, who asks, their
    history (items acted on, oldest first) and the items each request must not get back."""

    scenario: Scenario
    user_ids: np.ndarray
    history: Ragged
    exclude: Ragged
    context: Sequence[Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.context = _context_rows(self.context, len(self.user_ids))

    @classmethod
    def one(cls, scenario: Scenario, user_id: str, history: Sequence[str] = (),
            exclude: Collection[str] = (), context: Mapping[str, Any] | None = None
            ) -> RetrievalBatch:
        return cls(scenario=scenario, user_ids=np.array([user_id], dtype=object),
                   history=Ragged.single(np.asarray(list(history), dtype=str)),
                   exclude=Ragged.single(np.asarray(list(exclude), dtype=str)),
                   context=[dict(context or {})])

    def __len__(self) -> int:
        return len(self.user_ids)


class _Persistent(ABC):
    """Shared shape of everything a bundle stores: a name, config, fit, save and load."""

    name: ClassVar[str]

    def __init__(self, **config: Any) -> None:
        self.config = config

    def describe(self) -> dict[str, Any]:
        """Parameters worth recording in the bundle manifest."""
        return dict(self.config)

    def supports(self, scenario: Scenario) -> bool:
        """Whether this component applies to ``scenario`` (used when the scenario does not
        list its scorers or candidate sources by name)."""
        return True

    @abstractmethod
    def fit(self, data: TrainingData) -> None: ...

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the fitted state into the (existing, empty) directory ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self:
        """Read what ``save`` wrote. Must not depend on the device it was trained on."""


class _Reader:
    """What a scorer or blender declares it reads."""

    #: Feast features read (``view:feature``), user or item side; the core fetches exactly
    #: these into ``ScoreBatch.user_features`` / ``item_features`` (keyed ``view__feature``)
    #: and joins them onto ``TrainingData.events``. A class attribute, or set per instance.
    feature_refs: tuple[str, ...] = ()
    #: How many of the user's most recent events ``ScoreBatch.sequences`` should carry.
    sequence_length: int = 0


class Scorer(_Reader, _Persistent):
    """Scores a batch of candidates for one or more tasks.

    Subclasses set ``name`` and ``tasks`` and implement ``fit``, ``score``, ``save`` and
    ``load``; they declare the features they read in ``feature_refs``.
    """

    tasks: ClassVar[tuple[str, ...]]

    @abstractmethod
    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        """Return ``{task: float array of len(batch)}``; NaN where the scorer has no opinion.
        A row's score may depend on its request (``batch.request``) but not on the other
        rows or requests of the batch."""


class CandidateSource(_Persistent):
    """Retrieves candidate items. A class may be a Scorer and a source at once."""

    @abstractmethod
    def retrieve(self, batch: RetrievalBatch, n: int) -> Ragged:
        """Up to ``n`` item ids per request, best first, none of them in that request's
        ``batch.exclude`` row; one row per request."""


class SimilarItems(ABC):
    """Item-to-item similarity, served by ``GET /v1/items/{item_id}/similar``.

    A mix-in for a fitted component (ALS's item factors, say); any scenario or endpoint can
    reuse it.
    """

    @abstractmethod
    def similar_items(self, scenario: str, item_id: str, n: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
        """Up to ``n`` (item ids, similarities) most similar to ``item_id``, best first,
        without the item itself. KeyError if the item or scenario is unknown to it."""


class FeatureWriter(ABC):
    """A mix-in for a fitted component that writes feature values other components may read
    (an item text embedding, say), into a Feast view it registers.

    ``hybridrec train`` calls ``write_features`` on the components of a bundle after writing
    the bundle and before making it ``current``, so the online store holds values the new
    bundle's components agree with when it starts serving.
    """

    @abstractmethod
    def write_features(self, store: Any, items: pd.DataFrame, progress: bool = True
                       ) -> dict[str, int]:
        """Write values for ``items`` (the catalogue: ``item_id``, ``scenario`` and the item
        table's columns) to the offline source and the online store of ``store`` (a Feast
        ``FeatureStore``); return the rows written per feature view."""


@dataclass
class ScoredRequests:
    """Requests as the server would have scored them at some time: the batch (candidates from
    the scenario's sources, features as of that time), each scorer's outputs
    (``scores[scorer][task]``, aligned with the batch rows) and each row's ``labels``: its gain
    towards the scenario's objective (``Scenario.gains``, times ``objective_value``) from the
    events on that (user, item) in the slice that followed, 0 where there was none."""

    batch: ScoreBatch
    scores: Mapping[str, Mapping[str, np.ndarray]]
    labels: np.ndarray


@dataclass
class BlendExamples:
    """What a learning blender is fit on, per scenario: requests from a *blend slice*, a span
    of time later than the events its scorers were fit on, scored by those scorers (so every
    score is out of sample), in chunks of requests."""

    scenarios: dict[str, list[ScoredRequests]] = field(default_factory=dict)

    def rows(self, scenario: str) -> int:
        return sum(len(part.batch) for part in self.scenarios.get(scenario, []))


#: The arm of a blender that always blends the same way.
FIXED_ARM = "fixed"


@dataclass
class Blend:
    """What a blender did with a batch: the ranking score of every row, each input's term of
    it (when the blender can say), and the *decision* behind it, per request: the arm (the
    way of blending) it drew and the probability of every arm it could have drawn. A blender
    without randomness draws its one arm, ``fixed``, with probability 1.

    ``arm_scores`` holds, for each other arm with a positive probability in some request,
    the score it would have given every row: from it the pipeline works out each shown
    item's probability of being where it is, and off-policy evaluation what another
    mixture of the arms would have shown.
    """

    scores: np.ndarray
    contributions: dict[str, np.ndarray] | None
    policy: str
    arms: list[str]
    probabilities: list[dict[str, float]]
    arm_scores: dict[str, np.ndarray] = field(default_factory=dict)
    #: Per request, the context the decision was conditioned on (``{"activity": "light"}``).
    context: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def fixed(cls, policy: str, scores: np.ndarray,
              contributions: dict[str, np.ndarray] | None, n_requests: int) -> Blend:
        return cls(scores, contributions, policy, [FIXED_ARM] * n_requests,
                   [{FIXED_ARM: 1.0} for _ in range(n_requests)])

    def propensity(self, request: int) -> float:
        """The probability of the arm drawn for ``request``."""
        return self.probabilities[request][self.arms[request]]


class Blender(_Reader, _Persistent):
    """Turns per-scorer, per-task scores into one ranking score per candidate.

    A blender that learns from scores sets ``learns = True``: training then holds a blend
    slice out of the scorers' training window, scores it with scorers fit before it and hands
    those examples to ``fit``. The test slice never reaches it.
    """

    learns: ClassVar[bool] = False

    @abstractmethod
    def fit(self, data: TrainingData, examples: BlendExamples | None = None) -> None:
        """Learn from ``data`` (the events before the blend slice, when there is one) and,
        for a blender that ``learns``, from ``examples``."""

    def observe(self, data: TrainingData) -> None:
        """Called after ``fit`` each time the scorers are fit again on later events (before
        evaluation, and on the whole window for the bundle), with those events. A blender
        that keeps figures of the data (how popular an item is, how old) brings them up to
        date here; what it learned stays. The default does nothing."""

    def check(self, inputs: Mapping[str, Sequence[str]], scenarios: Collection[str]) -> None:
        """Called when training is planned: ``inputs`` maps each scenario this blender will
        blend to its ``scorer.task`` keys, ``scenarios`` lists every registered scenario.
        Raise ``ValueError`` naming what the configuration refers to that does not exist."""

    @abstractmethod
    def blend(self, scores: Mapping[str, Mapping[str, np.ndarray]],
              batch: ScoreBatch) -> np.ndarray:
        """One finite float per row of ``batch``; higher ranks first within a request.

        ``scores[scorer][task]`` aligns with the batch rows. Inputs may be NaN and any subset
        of the scorers the blender was fit with may be present; a row's result must depend
        only on its own request's rows."""

    def contributions(self, scores: Mapping[str, Mapping[str, np.ndarray]],
                      batch: ScoreBatch) -> dict[str, np.ndarray] | None:
        """Why each row scored what it did: ``{input: array}`` aligned with the rows, whose
        sum over inputs is (up to a per-request constant) what ``blend`` returns. Inputs are
        ``scorer.task`` keys, plus any context the blender reads. ``None`` when the blender
        cannot say. When it can, the pipeline calls only this, ranks by the sum and returns
        each item's terms in responses."""
        return None

    def decide(self, scores: Mapping[str, Mapping[str, np.ndarray]],
               batch: ScoreBatch) -> Blend:
        """The scores with the decision behind them. Blenders that draw at random (an
        adaptive policy over ways of blending) override this; the default blends the one
        way, through ``contributions`` where the blender gives them, with probability 1."""
        parts = self.contributions(scores, batch)
        if parts:
            parts = {key: np.asarray(v, dtype=float) for key, v in parts.items()}
            final = sum(parts.values(), np.zeros(len(batch)))
        else:
            parts, final = None, np.asarray(self.blend(scores, batch), dtype=float)
        return Blend.fixed(self.name, final, parts, batch.n_requests)


class DerivedTable(ABC):
    """A feature table derived from the event log: daily snapshots of an aggregate, say.

    Registered by a plugin (``register_derived_tables``); every data command
    (``hybridrec data ...``) writes it to ``feature_repo/data/<name>.parquet`` from the same
    events as the core's tables, and the plugin registers the Feast view that reads it. Stamp
    each row's ``event_timestamp`` with when its values became known, so a point-in-time join
    never hands a training event a value from its future.
    """

    name: ClassVar[str]

    @classmethod
    def file(cls) -> str:
        return f"{cls.name}.parquet"

    @abstractmethod
    def derive(self, events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
        """The table, from ``events`` (every scenario's, with ``event_timestamp`` in UTC and
        any context columns the data has) and ``items`` (the catalogue)."""


class Explainer(ABC):
    """A mix-in for a scorer that can say what moved a row's score: a tree model's feature
    contributions, say. ``POST /v1/recommend`` with ``"explain": true`` asks every such
    scorer of the scenario about each item the response returns."""

    @abstractmethod
    def explain(self, batch: ScoreBatch, rows: np.ndarray, top: int = 5
                ) -> list[dict[str, Any] | None]:
        """For each of ``rows`` (positions in ``batch``), a JSON-ready explanation of its
        score (at most ``top`` contributions), or None where this scorer gave no score."""

    def feature_importance(self, scenario: str) -> dict[str, float]:
        """What the model relies on overall in ``scenario``: each input's share (summing to
        1), largest first; empty when it cannot say. ``hybridrec evaluate`` prints it."""
        return {}


@dataclass(frozen=True)
class SyntheticWorld:
    """What ``hybridrec data synthetic`` hands a plugin's ``SyntheticScenario``: the world's
    users (``user_id``, ``age``, ``gender``, ``occupation``), the span its events fill
    (``start`` to ``end``, UTC ``pandas.Timestamp``), its sizes (``events``, the event budget
    of the built-in scenarios; ``items``, the size of one built-in catalogue) and its
    ``seed``."""

    users: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    events: int
    items: int
    seed: int

    def rng(self, name: str) -> np.random.Generator:
        """A random generator of its own for ``name`` (a scenario), seeded by the world's seed
        and the name: the same world gives the same draws, whichever other plugins are
        installed or draw first."""
        import zlib

        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])


class SyntheticScenario(ABC):
    """A scenario's part of the embedded synthetic world: its items and its users' events,
    generated with the core's scenarios by ``hybridrec data synthetic``.

    Registered by a plugin (``register_synthetic_scenarios``) beside the ``Scenario`` of the
    same ``name``. ``generate`` returns the two tables in the core's schema
    (``hybridrec.columns``): ``items`` with ``item_id``, ``scenario`` and optionally
    ``category``, ``title``, ``text``, ``price`` (missing ones are filled empty), columns of
    its own (kept in the item table, where its ``DerivedTable`` reads them) and
    ``event_timestamp`` (when the item was listed; when missing, with the built-in items,
    the day before the world's start);
    ``events`` with ``user_id`` (the world's users), ``item_id`` (from ``items``),
    ``scenario``, ``event_type`` (one the scenario accepts), ``value`` (a number) and
    ``event_timestamp`` (within the world's span, not before the item is listed), and
    optionally the context columns, and no other. Use ``world.rng(name)`` for every draw: the same
    world must give the same tables."""

    name: ClassVar[str]

    @abstractmethod
    def generate(self, world: SyntheticWorld) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(items, events)`` of this scenario in ``world``."""
