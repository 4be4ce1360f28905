"""The contracts plugins implement: Scorer, CandidateSource, Blender, and the Scenario record.

Scoring is vectorised: a scorer receives every candidate of a request at once as arrays and
returns one float array per task. ``NaN`` means "no opinion" (an item or user the scorer does
not know) and is never to be read as a score of zero; blenders handle it explicitly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Blender",
    "CandidateSource",
    "RetrievalRequest",
    "Scenario",
    "ScoreBatch",
    "Scorer",
    "SimilarItems",
    "TrainingData",
    "TASKS",
]

#: Tasks known to the core. Scorers may add their own; these are the shared vocabulary.
TASKS = ("click", "like", "purchase", "rating", "ctr", "watch")


@dataclass(frozen=True)
class Scenario:
    """A surface that recommends (a shop page, a video feed, an ad slot).

    ``event_weights`` lists the event types the scenario accepts and how much each one says
    about preference (a purchase says more than a view). ``positive_events`` are the events
    that count as relevant in offline evaluation. ``scorers=None`` means every registered
    scorer whose ``supports(scenario)`` is true.
    """

    name: str
    description: str = ""
    event_weights: Mapping[str, float] = field(default_factory=lambda: {"click": 1.0})
    positive_events: tuple[str, ...] = ("click",)
    objective: tuple[str, ...] = ("click",)
    candidate_sources: tuple[str, ...] | None = None
    scorers: tuple[str, ...] | None = None
    blender: str = "weighted"
    feature_service: str | None = None
    default_k: int = 10
    max_k: int = 100
    n_candidates: int = 300

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self.event_weights)

    @property
    def feature_service_name(self) -> str:
        return self.feature_service or f"{self.name}_features"


@dataclass
class TrainingData:
    """What ``fit`` receives.

    ``events`` has one row per event (``user_id``, ``item_id``, ``scenario``, ``event_type``,
    ``value``, ``event_timestamp``) with the scenario's features joined point-in-time correctly
    by Feast. ``items`` is the catalogue (one row per item, with ``scenario``); ``users`` the
    user profiles.
    """

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    scenarios: Mapping[str, Scenario]

    def scenario_events(self, scenario: str) -> pd.DataFrame:
        from hybridrec.columns import SCENARIO

        return self.events[self.events[SCENARIO] == scenario]


@dataclass
class ScoreBatch:
    """All candidates of one request, as arrays aligned with ``item_ids``."""

    scenario: Scenario
    user_id: str
    item_ids: np.ndarray
    user_features: Mapping[str, Any] = field(default_factory=dict)
    item_features: Mapping[str, np.ndarray] = field(default_factory=dict)
    history: Sequence[str] = ()
    context: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass
class RetrievalRequest:
    """What a candidate source sees: who asks, where, and what to leave out."""

    scenario: Scenario
    user_id: str
    history: Sequence[str] = ()
    exclude: frozenset[str] = frozenset()
    context: Mapping[str, Any] = field(default_factory=dict)


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


class Scorer(_Persistent):
    """Scores a request's candidates for one or more tasks.

    Subclasses set ``name`` and ``tasks`` and implement ``fit``, ``score``, ``save`` and
    ``load``. ``feature_refs`` lists the item features (``view:feature``) the scorer reads from
    ``ScoreBatch.item_features`` (keyed ``view__feature``); the server passes only the declared
    ones. ``user_features`` always carries the user's online features.
    """

    tasks: ClassVar[tuple[str, ...]]
    feature_refs: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        """Return ``{task: float array of len(batch)}``; NaN where the scorer has no opinion."""


class CandidateSource(_Persistent):
    """Retrieves candidate items for a request. A class may be a Scorer and a source at once."""

    @abstractmethod
    def retrieve(self, request: RetrievalRequest, n: int) -> np.ndarray:
        """Return up to ``n`` item ids, best first, none of them in ``request.exclude``."""


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


class Blender(_Persistent):
    """Turns per-scorer, per-task scores into one ranking score per candidate."""

    @abstractmethod
    def blend(
        self,
        scores: Mapping[str, Mapping[str, np.ndarray]],
        scenario: Scenario,
        context: Mapping[str, Any],
    ) -> np.ndarray:
        """Return one float per candidate; higher ranks first. Must tolerate NaN inputs."""
