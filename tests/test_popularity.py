"""Popularity through the conformance kit, plus what makes it popularity."""

import numpy as np
import pytest

from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.builtin.scenarios import SHOP
from hybridrec.contracts import RetrievalRequest, ScoreBatch, TrainingData
from hybridrec.testing import (
    CandidateSourceContract,
    ScorerContract,
    events_frame,
    tiny_training_data,
)


class TestPopularityScorer(ScorerContract):
    @pytest.fixture
    def scorer(self):
        return PopularityScorer()

    @pytest.fixture
    def data(self):
        return tiny_training_data()


class TestPopularitySource(CandidateSourceContract):
    @pytest.fixture
    def source(self):
        return PopularityScorer()

    @pytest.fixture
    def data(self):
        return tiny_training_data()


def test_weights_events_by_scenario_and_ranks_accordingly():
    import pandas as pd

    events = events_frame([
        ("u1", "a", "shop", "view", "2025-01-01"),
        ("u2", "a", "shop", "view", "2025-01-01"),
        ("u3", "a", "shop", "view", "2025-01-01"),
        ("u1", "b", "shop", "purchase", "2025-01-01"),  # one purchase outweighs three views
        ("u1", "c", "shop", "cart", "2025-01-01"),
    ])
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "scenario": "shop"})
    model = PopularityScorer(half_life_days=None)
    model.fit(TrainingData(events=events, items=items, users=pd.DataFrame(),
                           scenarios={"shop": SHOP}))
    ranked = model.retrieve(RetrievalRequest(scenario=SHOP, user_id="x"), 4)
    assert ranked.tolist() == ["b", "c", "a", "d"]
    scores = model.score(ScoreBatch(scenario=SHOP, user_id="x",
                                    item_ids=np.array(["d", "a", "zz"])))["click"]
    assert scores[0] == 0.0 and scores[1] == pytest.approx(np.log1p(3.0))
    assert np.isnan(scores[2])


def test_recent_events_count_more_with_a_half_life():
    import pandas as pd

    events = events_frame([
        ("u1", "old", "shop", "view", "2025-01-01"),
        ("u2", "old", "shop", "view", "2025-01-01"),
        ("u1", "new", "shop", "view", "2025-03-01"),
    ])
    items = pd.DataFrame({"item_id": ["old", "new"], "scenario": "shop"})
    model = PopularityScorer(half_life_days=7)
    model.fit(TrainingData(events=events, items=items, users=pd.DataFrame(),
                           scenarios={"shop": SHOP}))
    assert model.retrieve(RetrievalRequest(scenario=SHOP, user_id="x"), 2).tolist() == [
        "new", "old"]


def test_the_kit_refuses_to_pass_vacuously():
    class Nowhere(PopularityScorer):
        def supports(self, scenario):
            return False

    with pytest.raises(AssertionError, match="supports none"):
        ScorerContract.scenarios(Nowhere(), tiny_training_data(users=20, items=10,
                                                               events=300))
