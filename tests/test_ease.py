"""EASE through the conformance kit, plus what makes it EASE."""

import numpy as np
import pandas as pd
import pytest

from hybridrec.builtin.ease import EaseScorer, interactions, item_weights
from hybridrec.builtin.scenarios import ADS, SHOP, VIDEO
from hybridrec.contracts import ScoreBatch, TrainingData
from hybridrec.testing import ScorerContract, events_frame, tiny_training_data


class TestEaseScorer(ScorerContract):
    @pytest.fixture
    def scorer(self):
        return EaseScorer(grid=[10.0, 100.0])

    @pytest.fixture
    def data(self):
        return tiny_training_data(users=80, items=40, events=4000)


def world(rows, items):
    return TrainingData(events=events_frame(rows),
                        items=pd.DataFrame({"item_id": items, "scenario": "shop"}),
                        users=pd.DataFrame(), scenarios={"shop": SHOP})


def baskets(pairs, repeat=5):
    """Users who each buy one pair of items, every pair bought by ``repeat`` users."""
    rows, day = [], 1
    for n, (a, b) in enumerate(pairs * repeat):
        for item in (a, b):
            rows.append((f"u{n}", item, "shop", "purchase", f"2025-01-{day:02d}T00:00:00Z"))
        day = day % 28 + 1
    return rows


def test_items_bought_together_score_for_each_other():
    model = EaseScorer(lam=1.0)
    model.fit(world(baskets([("a", "b"), ("c", "d")]), ["a", "b", "c", "d", "never"]))
    scores = model.score(ScoreBatch.one(SHOP, "stranger", ["b", "c", "d", "never"],
                                        history=["a"]))["click"]
    assert scores[0] > 0 and scores[0] > scores[1] and scores[0] > scores[2]
    assert np.isnan(scores[3]), "an item no one acted on has no score"


def test_the_closed_form_solves_its_objective():
    """B minimises ||X - XB||² + lam ||B||² with a zero diagonal: the gradient vanishes off
    the diagonal."""
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 12)) < 0.3).astype(np.float32)
    import scipy.sparse as sp

    matrix, lam = sp.csr_matrix(dense), 3.0
    b = item_weights(matrix, lam).astype(np.float64)
    assert np.all(np.diag(b) == 0)
    gradient = dense.T @ (dense @ b - dense) + lam * b
    off = ~np.eye(12, dtype=bool)
    np.testing.assert_allclose(gradient[off], 0.0, atol=1e-3)


def test_a_trained_user_is_scored_from_training_and_history_alike():
    model = EaseScorer(lam=1.0)
    model.fit(world(baskets([("a", "b"), ("c", "d")]), ["a", "b", "c", "d"]))
    trained = model.score(ScoreBatch.one(SHOP, "u0", ["b", "c", "d"]))["click"]
    told = model.score(ScoreBatch.one(SHOP, "someone", ["b", "c", "d"],
                                      history=["a", "b"]))["click"]
    np.testing.assert_allclose(trained, told, rtol=1e-6)  # u0 bought a and b
    none = model.score(ScoreBatch.one(SHOP, "someone", ["b", "c"]))["click"]
    assert np.isnan(none).all(), "a user with no known item gets no score"


def test_only_positive_events_and_the_most_shared_items_are_modelled():
    rows = baskets([("a", "b")]) + [("u0", "c", "shop", "purchase", "2025-01-03T00:00:00Z"),
                                     ("v", "d", "video", "like", "2025-01-03T00:00:00Z")]
    data = world(rows, ["a", "b", "c"])
    model = EaseScorer(lam=1.0, max_items=2)
    model.fit(data)
    assert model.models["shop"].item_ids.tolist() == ["a", "b"]  # c has one user
    assert "video" not in model.models
    matrix = interactions(events_frame([("x", "a", "shop", "view", "2025-01-01T00:00:00Z")]),
                          {"view": 0.0}, np.array(["x"]), np.array(["a"]))
    assert matrix.nnz == 0, "an event weighed zero is no interaction"


def test_the_penalty_is_chosen_on_validation_and_recorded():
    data = tiny_training_data(users=80, items=40, events=4000)
    model = EaseScorer(grid=[1.0, 100.0, 10_000.0])
    model.fit(data)
    info = model.describe()["scenarios"]["shop"]
    assert [r["lam"] for r in info["tuning"]] == [1.0, 100.0, 10_000.0]
    best = max(info["tuning"], key=lambda r: r["val_ndcg@10"])
    assert info["params"]["lam"] == best["lam"]
    fixed = EaseScorer(lam=5.0)
    fixed.fit(data)
    assert fixed.describe()["scenarios"]["shop"] == {**fixed.describe()["scenarios"]["shop"],
                                                     "params": {"lam": 5.0}, "tuning": []}


def test_supports_preference_scenarios_and_refuses_bad_settings():
    assert EaseScorer().supports(SHOP) and EaseScorer().supports(VIDEO)
    assert not EaseScorer().supports(ADS)
    assert EaseScorer(scenarios=["video"]).supports(VIDEO)
    assert not EaseScorer(scenarios=["video"]).supports(SHOP)
    for bad in ({"lam": 0}, {"grid": []}, {"grid": [1.0, -2.0]}, {"max_items": 0},
                {"validation_fraction": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EaseScorer(**bad)
