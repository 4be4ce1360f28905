"""Conformance kit: the contract every scorer and candidate source must keep.

Subclass in your plugin's tests and provide two fixtures::

    from hybridrec.testing import ScorerContract, tiny_training_data

    class TestMyScorer(ScorerContract):
        @pytest.fixture
        def scorer(self):
            return MyScorer()

        @pytest.fixture
        def data(self):
            return tiny_training_data()

The kit fits the scorer on ``data`` and checks shapes, tasks, NaN for unknown items, batch
independence (scores are per item, not per batch position), and a save/load round trip.
``CandidateSourceContract`` does the same for retrieval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hybridrec import columns as C
from hybridrec.contracts import (
    CandidateSource,
    RetrievalRequest,
    Scenario,
    ScoreBatch,
    Scorer,
    TrainingData,
)

__all__ = ["CandidateSourceContract", "ScorerContract", "active_user", "events_frame",
           "tiny_training_data"]

UNKNOWN_ITEM = "no-such-item"


def tiny_training_data(users: int = 60, items: int = 40, events: int = 3000,
                       seed: int = 0) -> TrainingData:
    """A small two-scenario world from the synthetic generator, without Feast features."""
    from hybridrec.builtin.scenarios import SHOP, VIDEO
    from hybridrec.data.synthetic import SyntheticConfig, generate

    data = generate(SyntheticConfig(users=users, items=items, ads=5, events=events, seed=seed))
    keep = data.events[C.SCENARIO].isin(["shop", "video"])
    items_frame = data.items[data.items[C.SCENARIO].isin(["shop", "video"])]
    return TrainingData(events=data.events[keep].reset_index(drop=True),
                        items=items_frame.reset_index(drop=True), users=data.users,
                        scenarios={"shop": SHOP, "video": VIDEO})


def active_user(data: TrainingData, scenario: Scenario) -> tuple[str, list[str]]:
    """The scenario's most active user and the items they interacted with."""
    events = data.scenario_events(scenario.name)
    user = str(events[C.USER_ID].value_counts().index[0])
    return user, events.loc[events[C.USER_ID] == user, C.ITEM_ID].tolist()


def _request(data: TrainingData, scenario: Scenario,
             exclude: frozenset[str] = frozenset()) -> RetrievalRequest:
    user, history = active_user(data, scenario)
    return RetrievalRequest(scenario=scenario, user_id=user, history=history, exclude=exclude)


def _batch(data: TrainingData, scenario: Scenario, item_ids: np.ndarray,
           user: str | None = None) -> ScoreBatch:
    events = data.scenario_events(scenario.name)
    user = user or active_user(data, scenario)[0]
    history = events.loc[events[C.USER_ID] == user, C.ITEM_ID].tolist()
    feats = data.items.set_index(C.ITEM_ID).reindex(item_ids)
    item_features = {f"item_profile__{c}": feats[c].to_numpy(dtype=object)
                     for c in ("scenario", "category", "title", "text", "price")
                     if c in feats}
    return ScoreBatch(scenario=scenario, user_id=user, item_ids=np.asarray(item_ids, dtype=str),
                      item_features=item_features, history=history)


class _FittedFixture:
    @pytest.fixture
    def fitted(self, scorer: Any, data: TrainingData) -> Any:
        scorer.fit(data)
        return scorer

    @staticmethod
    def scenarios(model: Any, data: TrainingData) -> list[Scenario]:
        """The data's scenarios the model supports; none would make every check vacuous."""
        chosen = [s for s in data.scenarios.values() if model.supports(s)]
        assert chosen, (f"{type(model).__name__} supports none of the test data's scenarios "
                        f"({', '.join(data.scenarios)}); give the kit data it applies to")
        return chosen

    @staticmethod
    def catalogue(data: TrainingData, scenario: Scenario) -> np.ndarray:
        return data.items.loc[data.items[C.SCENARIO] == scenario.name, C.ITEM_ID].to_numpy(str)


class ScorerContract(_FittedFixture):
    """Tests every Scorer must pass. Needs fixtures ``scorer`` (unfitted) and ``data``."""

    def test_declares_name_and_tasks(self, scorer: Scorer) -> None:
        assert isinstance(scorer, Scorer)
        assert isinstance(scorer.name, str) and scorer.name
        assert scorer.tasks and all(isinstance(t, str) for t in scorer.tasks)

    def test_scores_every_candidate_for_its_tasks(self, fitted: Scorer,
                                                  data: TrainingData) -> None:
        for scenario in self.scenarios(fitted, data):
            items = self.catalogue(data, scenario)
            out = fitted.score(_batch(data, scenario, items))
            assert set(out) <= set(fitted.tasks) and out, f"tasks {set(out)} vs {fitted.tasks}"
            for task, values in out.items():
                values = np.asarray(values)
                assert values.shape == (len(items),), f"{task}: shape {values.shape}"
                assert np.issubdtype(values.dtype, np.floating)
                assert np.isfinite(values).any(), f"{task}: no finite score for known items"

    def test_unknown_item_has_no_score(self, fitted: Scorer, data: TrainingData) -> None:
        for scenario in self.scenarios(fitted, data):
            items = np.r_[self.catalogue(data, scenario)[:3], [UNKNOWN_ITEM]]
            for task, values in fitted.score(_batch(data, scenario, items)).items():
                assert np.isnan(values[-1]), f"{task}: unknown item scored {values[-1]}"

    def test_scores_do_not_depend_on_batch_composition(self, fitted: Scorer,
                                                       data: TrainingData) -> None:
        for scenario in self.scenarios(fitted, data):
            items = self.catalogue(data, scenario)[:20]
            whole = fitted.score(_batch(data, scenario, items))
            reversed_ = fitted.score(_batch(data, scenario, items[::-1]))
            half = fitted.score(_batch(data, scenario, items[:10]))
            for task in whole:
                np.testing.assert_allclose(whole[task][::-1], reversed_[task], rtol=1e-6)
                np.testing.assert_allclose(whole[task][:10], half[task], rtol=1e-6)

    def test_empty_batch(self, fitted: Scorer, data: TrainingData) -> None:
        scenario = self.scenarios(fitted, data)[0]
        for values in fitted.score(_batch(data, scenario, np.array([], dtype=str))).values():
            assert len(values) == 0

    def test_save_load_round_trip(self, fitted: Scorer, data: TrainingData,
                                  tmp_path: Path) -> None:
        fitted.save(tmp_path)
        loaded = type(fitted).load(tmp_path)
        for scenario in self.scenarios(fitted, data):
            batch = _batch(data, scenario, self.catalogue(data, scenario))
            before, after = fitted.score(batch), loaded.score(batch)
            assert before.keys() == after.keys()
            for task in before:
                np.testing.assert_allclose(before[task], after[task], rtol=1e-6)


class CandidateSourceContract(_FittedFixture):
    """Tests every CandidateSource must pass. Needs fixtures ``source`` and ``data``."""

    @pytest.fixture
    def scorer(self, source: CandidateSource) -> CandidateSource:
        return source

    def test_retrieves_catalogue_items_without_repeats(self, fitted: CandidateSource,
                                                       data: TrainingData) -> None:
        for scenario in self.scenarios(fitted, data):
            got = fitted.retrieve(_request(data, scenario), 10)
            assert 0 < len(got) <= 10
            assert len(set(got)) == len(got)
            assert set(got) <= set(self.catalogue(data, scenario))

    def test_respects_exclude(self, fitted: CandidateSource, data: TrainingData) -> None:
        for scenario in self.scenarios(fitted, data):
            first = fitted.retrieve(_request(data, scenario), 5)
            again = fitted.retrieve(_request(data, scenario, frozenset(first[:3])), 5)
            assert not set(first[:3]) & set(again)
            assert len(again) == 5

    def test_save_load_round_trip(self, fitted: CandidateSource, data: TrainingData,
                                  tmp_path: Path) -> None:
        fitted.save(tmp_path)
        loaded = type(fitted).load(tmp_path)
        for scenario in self.scenarios(fitted, data):
            request = _request(data, scenario)
            assert list(fitted.retrieve(request, 10)) == list(loaded.retrieve(request, 10))


def events_frame(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    """Build an event frame from ``(user, item, scenario, event_type, iso time)`` tuples."""
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.SCENARIO, C.EVENT_TYPE,
                                        C.EVENT_TIMESTAMP])
    frame[C.VALUE] = 1.0
    frame[C.EVENT_TIMESTAMP] = pd.to_datetime(frame[C.EVENT_TIMESTAMP], utc=True)
    return frame
