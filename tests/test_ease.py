"""EASE through the conformance kit, plus what makes it EASE."""

import numpy as np
import pandas as pd
import pytest

from hybridrec.builtin.ease import EaseScorer, gram, interactions, item_weights
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


def world(rows, items, video_items=()):
    catalogue = pd.DataFrame({"item_id": [*items, *video_items],
                              "scenario": ["shop"] * len(items) + ["video"] * len(video_items)})
    return TrainingData(events=events_frame(rows), items=catalogue, users=pd.DataFrame(),
                        scenarios={"shop": SHOP, "video": VIDEO})


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
    b = item_weights(gram(matrix), lam).astype(np.float64)
    assert np.abs(b).max() > 0.01
    assert np.all(np.diag(b) == 0)
    gradient = dense.T @ (dense @ b - dense) + lam * b
    off = ~np.eye(12, dtype=bool)
    np.testing.assert_allclose(gradient[off], 0.0, atol=1e-3)
    assert np.abs(gradient).max() > 0  # not the trivial B = 0 (the diagonal is constrained)


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
    rows = baskets([("a", "b")]) + [("u0", "0", "shop", "purchase", "2025-01-03T00:00:00Z"),
                                     ("v", "d", "video", "watch", "2025-01-03T00:00:00Z")]
    data = world(rows, ["0", "a", "b"], video_items=["d"])
    model = EaseScorer(lam=1.0, max_items=2, weights={"video": {"watch": 0.0, "like": 1.0}})
    model.fit(data)
    assert model.models["shop"].item_ids.tolist() == ["a", "b"]  # "0" has one user
    assert "video" not in model.models  # its one event is weighed zero
    model = EaseScorer(lam=1.0, max_items=3)
    model.fit(data)
    assert model.models["video"].item_ids.tolist() == ["d"]
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


def test_a_saved_model_is_mapped_read_only(tmp_path):
    model = EaseScorer(lam=1.0)
    model.fit(world(baskets([("a", "b"), ("c", "d")]), ["a", "b", "c", "d"]))
    model.save(tmp_path)
    loaded = EaseScorer.load(tmp_path)
    weights = loaded.models["shop"].weights
    assert isinstance(weights, np.memmap) and not weights.flags.writeable
    batch = ScoreBatch.one(SHOP, "u0", ["b", "c", "d"])
    np.testing.assert_array_equal(model.score(batch)["click"], loaded.score(batch)["click"])


def test_no_validation_user_means_the_default_penalty_without_fitting_the_grid(caplog):
    same_day = [(u, i, "shop", "purchase", "2025-01-01T00:00:00Z")
                for u, i in [("x", "a"), ("x", "b"), ("y", "a")]]
    model = EaseScorer(grid=[1.0, 10.0])
    model.fit(world(same_day, ["a", "b"]))
    info = model.describe()["scenarios"]["shop"]
    assert info["tuning"] == [] and info["params"]["lam"] == 400.0
    assert "no validation users" in caplog.text


def test_the_validation_slice_is_held_out_as_the_run_holds_out_its_test():
    from hybridrec.scenario_models import validation_slices

    # users 0-9 act in January, users 10-19 in March: ten items each, one a day
    rows = [(f"u{u}", f"i{(u + d) % 30}", "shop", "purchase",
             f"2025-{1 if u < 10 else 3:02d}-{d + 1:02d}T00:00:00Z")
            for u in range(20) for d in range(10)]
    events = events_frame(rows)
    users = np.array(sorted({r[0] for r in rows}))
    items = np.array(sorted({r[1] for r in rows}))

    def build(part):
        return interactions(part, dict(SHOP.event_weights), users, items)

    def held_out_users(split):
        _, valid = validation_slices(events, build, 0.3, split)
        return set(users[np.diff(valid.indptr) > 0])

    assert held_out_users("temporal") <= {f"u{u}" for u in range(10, 20)}  # the latest
    for split in ("random", "leave-last"):  # across the window, as those tests are
        assert held_out_users(split) & {f"u{u}" for u in range(10)}
    # leave-last: every user's own latest events
    assert held_out_users("leave-last") == set(users)
