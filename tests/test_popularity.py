"""Popularity through the conformance kit, plus what makes it popularity."""

import numpy as np
import pandas as pd
import pytest

from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.builtin.scenarios import SHOP
from hybridrec.contracts import RetrievalBatch, ScoreBatch, TrainingData
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


def fitted(rows, items, half_life_days=None):
    model = PopularityScorer(half_life_days=half_life_days)
    model.fit(TrainingData(events=events_frame(rows),
                           items=pd.DataFrame({"item_id": items, "scenario": "shop"}),
                           users=pd.DataFrame(), scenarios={"shop": SHOP}))
    return model


def ranking(model, n):
    return model.retrieve(RetrievalBatch.one(SHOP, "x"), n)[0].tolist()


def test_weights_events_by_scenario_and_ranks_accordingly():
    model = fitted([
        ("u1", "a", "shop", "view", "2025-01-01"),
        ("u2", "a", "shop", "view", "2025-01-01"),
        ("u3", "a", "shop", "view", "2025-01-01"),
        ("u1", "b", "shop", "purchase", "2025-01-01"),  # one purchase outweighs three views
        ("u1", "c", "shop", "cart", "2025-01-01"),
    ], ["a", "b", "c", "d"])
    assert ranking(model, 4) == ["b", "c", "a", "d"]
    scores = model.score(ScoreBatch.one(SHOP, "x", ["d", "a", "zz"]))["click"]
    assert scores[0] == 0.0 and scores[1] == pytest.approx(np.log1p(3.0))
    assert np.isnan(scores[2])


def test_recent_events_count_more_with_a_half_life():
    model = fitted([
        ("u1", "old", "shop", "view", "2025-01-01"),
        ("u2", "old", "shop", "view", "2025-01-01"),
        ("u1", "new", "shop", "view", "2025-03-01"),
    ], ["old", "new"], half_life_days=7)
    assert ranking(model, 2) == ["new", "old"]


def test_one_event_far_from_the_log_does_not_take_over():
    """A feedback event stamped 20 months after the log used to age every other event to
    nothing, so the one fed-back item topped every cold user's list."""
    rng = np.random.default_rng(0)
    items = [f"i{n}" for n in range(20)]
    days = pd.date_range("2025-02-01", "2025-03-31", freq="D")
    rows = [(f"u{n}", items[min(int(rng.exponential(4)), 19)], "shop", "view",
             str(days[rng.integers(len(days))].date())) for n in range(400)]
    before = ranking(fitted(rows, items, half_life_days=30), 5)
    stray = [*rows, ("u0", "i19", "shop", "purchase", "2026-11-25")]
    after = ranking(fitted(stray, items, half_life_days=30), 5)
    assert "i19" not in after
    assert after == before


def test_exclusions_are_per_request():
    model = fitted([("u1", "a", "shop", "view", "2025-01-01"),
                    ("u1", "a", "shop", "view", "2025-01-01"),
                    ("u1", "b", "shop", "view", "2025-01-01")], ["a", "b", "c"])
    from hybridrec.contracts import Ragged

    batch = RetrievalBatch(scenario=SHOP, user_ids=np.array(["x", "y"], dtype=object),
                           history=Ragged.empty(2),
                           exclude=Ragged.from_rows([["a"], []], dtype=str))
    got = model.retrieve(batch, 2)
    assert got[0].tolist() == ["b", "c"] and got[1].tolist() == ["a", "b"]


def test_a_bad_half_life_is_refused():
    with pytest.raises(ValueError, match="half_life_days"):
        PopularityScorer(half_life_days=0)


def test_the_kit_refuses_to_pass_vacuously():
    class Nowhere(PopularityScorer):
        def supports(self, scenario):
            return False

    with pytest.raises(AssertionError, match="supports none"):
        ScorerContract.scenarios(Nowhere(), tiny_training_data(users=20, items=10,
                                                               events=300))
