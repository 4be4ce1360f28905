"""hybridrec-als: the core's conformance kit, plus what is particular to ALS."""

import numpy as np
import pytest
from hybridrec_als import AlsScorer, choose_device, model_class
from hybridrec_als.model import confidence_matrix

from hybridrec import columns as C
from hybridrec.builtin.scenarios import ADS, SHOP, VIDEO
from hybridrec.contracts import RetrievalBatch, ScoreBatch
from hybridrec.testing import (
    CandidateSourceContract,
    ScorerContract,
    active_user,
    tiny_training_data,
)


@pytest.fixture(scope="module")
def world():
    return tiny_training_data(users=150, items=60, events=12_000, seed=1)


@pytest.fixture(scope="module")
def als(world):
    model = AlsScorer(device="cpu", tune=False, factors=8, regularization=1.0,
                      random_state=0)
    model.fit(world)
    return model


class TestAlsScorer(ScorerContract):
    @pytest.fixture
    def scorer(self):
        return AlsScorer(device="cpu", tune=False, factors=8)

    @pytest.fixture
    def data(self, world):
        return world


class TestAlsSource(CandidateSourceContract):
    @pytest.fixture
    def source(self):
        return AlsScorer(device="cpu", tune=False, factors=8)

    @pytest.fixture
    def data(self, world):
        return world


def test_device_is_decided_in_one_place(monkeypatch):
    import implicit.cpu.als
    import implicit.gpu
    import implicit.gpu.als

    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", True)
    assert choose_device("auto") == "cuda" and choose_device("cpu") == "cpu"
    assert model_class(choose_device("auto")) is implicit.gpu.als.AlternatingLeastSquares
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", False)
    assert choose_device("auto") == "cpu"
    assert model_class(choose_device("auto")) is implicit.cpu.als.AlternatingLeastSquares
    with pytest.raises(RuntimeError, match="no CUDA"):
        choose_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        choose_device("tpu")


def test_saved_factors_are_plain_float32_arrays(als, tmp_path):
    als.save(tmp_path)
    factors = np.load(tmp_path / "shop" / "item_factors.npy")
    assert factors.dtype == np.float32 and type(factors) is np.ndarray
    loaded = AlsScorer.load(tmp_path)
    np.testing.assert_array_equal(loaded.models["shop"].item_factors,
                                  als.models["shop"].item_factors)


def test_supports_preference_scenarios_unless_configured():
    assert AlsScorer().supports(SHOP) and AlsScorer().supports(VIDEO)
    assert not AlsScorer().supports(ADS)  # ranked by click-through rate
    assert AlsScorer(scenarios=["ads"]).supports(ADS)
    assert not AlsScorer(scenarios=["ads"]).supports(SHOP)


def test_confidence_weights_are_configuration(world):
    events = world.scenario_events("shop")
    users = np.unique(events[C.USER_ID].to_numpy(str))
    items = world.items.loc[world.items[C.SCENARIO] == "shop", C.ITEM_ID].to_numpy(str)
    default = confidence_matrix(events, dict(SHOP.event_weights), users, items)
    views_only = confidence_matrix(events, {"view": 1.0}, users, items)
    n_views = (events[C.EVENT_TYPE] == "view").sum()
    assert views_only.sum() == pytest.approx(n_views)
    assert default.sum() > views_only.sum()
    model = AlsScorer(weights={"shop": {"view": 1.0}})
    assert model.weights_for(SHOP) == {"view": 1.0}
    assert model.weights_for(VIDEO) == dict(VIDEO.event_weights)


def test_tuning_searches_a_grid_on_validation_and_records_the_choice(world):
    model = AlsScorer(device="cpu", grid={"factors": [4, 8], "regularization": [1.0],
                                          "alpha": [1.0, 2.0]})
    model.fit(world)
    info = model.describe()["scenarios"]["shop"]
    assert len(info["tuning"]) == 4
    assert all("val_ndcg@10" in row for row in info["tuning"])
    best = max(info["tuning"], key=lambda r: r["val_ndcg@10"])
    assert {k: info["params"][k] for k in ("factors", "regularization", "alpha")} == {
        k: best[k] for k in ("factors", "regularization", "alpha")}
    pinned = AlsScorer(device="cpu", factors=4, grid={"regularization": [1.0, 5.0],
                                                      "alpha": [1.0]})
    pinned.fit(world)
    assert {row["factors"] for row in pinned.describe()["scenarios"]["shop"]["tuning"]} == {4}


def category_items(world, scenario, category):
    items = world.items
    return items.loc[(items[C.SCENARIO] == scenario) & (items["category"] == category),
                     C.ITEM_ID].to_numpy(str)


def test_fold_in_moves_a_new_user_towards_what_they_touched(als, world):
    shop_items = world.items.loc[world.items[C.SCENARIO] == "shop", C.ITEM_ID].to_numpy(str)
    category = world.items.loc[world.items[C.SCENARIO] == "shop", "category"].mode()[0]
    touched = category_items(world, "shop", category)[:4]
    stranger = als.score(ScoreBatch.one(SHOP, "new", shop_items))
    assert np.isnan(stranger["click"]).all()  # nothing known: no opinion
    folded = als.score(ScoreBatch.one(SHOP, "new", shop_items, history=list(touched)))["click"]
    assert np.isfinite(folded).all()
    same = np.isin(shop_items, category_items(world, "shop", category))
    assert folded[same].mean() > folded[~same].mean()
    top = als.retrieve(RetrievalBatch.one(SHOP, "new", history=list(touched),
                                          exclude=touched), 10)[0]
    assert np.isin(top, category_items(world, "shop", category)).mean() > same.mean()


def test_known_user_with_new_events_gets_a_refreshed_vector(als, world):
    user, history = active_user(world, SHOP)
    model = als.models["shop"]
    trained = model.user_vector(user, history)
    np.testing.assert_array_equal(trained, model.user_factors[model.user_index.get(user)])
    unseen = np.setdiff1d(model.item_ids, history)[:3]
    assert not np.allclose(model.user_vector(user, [*history, *unseen]), trained)


def test_a_batch_folds_in_only_the_requests_that_need_it(als, world, monkeypatch):
    user, history = active_user(world, SHOP)
    model = als.models["shop"]
    unseen = np.setdiff1d(model.item_ids, history)[:3].tolist()
    from hybridrec.contracts import Ragged

    folded = []
    solve = type(model).user_vector
    monkeypatch.setattr(type(model), "user_vector",
                        lambda self, u, recent: folded.append(u) or solve(self, u, recent))
    users = np.array([user, user, "new", "nobody"], dtype=object)
    histories = Ragged.from_rows([history, [*history, *unseen], unseen, []], dtype=str)
    vectors, has = model.user_vectors(users, histories)
    assert folded == [user, "new"]  # the trained user with nothing new is a row lookup
    assert has.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(vectors[0], model.user_factors[model.user_index.get(user)])
    np.testing.assert_allclose(vectors[1], model.user_vector(user, [*history, *unseen]))
    np.testing.assert_allclose(vectors[2], model.user_vector("new", unseen))


def test_unknown_and_foreign_items_get_no_score(als, world):
    user, _ = active_user(world, SHOP)
    video_item = world.items.loc[world.items[C.SCENARIO] == "video", C.ITEM_ID].iloc[0]
    ids = np.array([video_item, "nope", world.items[C.ITEM_ID].iloc[0]])
    out = als.score(ScoreBatch.one(SHOP, user, ids))["click"]
    assert np.isnan(out[:2]).all() and np.isfinite(out[2])


def test_similar_items_share_the_category(als, world):
    shop = world.items[world.items[C.SCENARIO] == "shop"].set_index(C.ITEM_ID)
    agree = []
    for item in shop.index[:20]:
        ids, sims = als.similar_items("shop", item, 5)
        assert item not in ids and len(ids) == 5
        assert np.all(np.diff(sims) <= 1e-6)
        agree.append((shop.loc[ids, "category"] == shop.loc[item, "category"]).mean())
    chance = (shop["category"].value_counts(normalize=True) ** 2).sum()
    assert np.mean(agree) > 2 * chance
    with pytest.raises(KeyError, match="unknown"):
        als.similar_items("shop", "nope", 5)
    with pytest.raises(KeyError, match="scenario"):
        als.similar_items("ads", "a00001", 5)


def test_empty_scenario_data_is_skipped(world):
    model = AlsScorer(device="cpu", tune=False)
    data = tiny_training_data(users=20, items=10, events=300)
    data.events = data.events[data.events[C.SCENARIO] == "shop"].reset_index(drop=True)
    model.fit(data)
    assert set(model.models) == {"shop"}
    video = data.items.loc[data.items[C.SCENARIO] == "video", C.ITEM_ID].to_numpy(str)
    out = model.score(ScoreBatch.one(VIDEO, "u00001", video))["click"]
    assert np.isnan(out).all()
    assert len(model.retrieve(RetrievalBatch.one(VIDEO, "u00001"), 5)[0]) == 0


def test_blas_is_single_threaded_without_the_environment_variable():
    """implicit warns (an error here) if OpenBLAS may use more than one thread while it fits."""
    import os
    import subprocess
    import sys

    code = """
import numpy as np
from hybridrec.builtin.scenarios import SHOP
from hybridrec.contracts import ScoreBatch
from hybridrec.testing import tiny_training_data
from hybridrec_als import AlsScorer
model = AlsScorer(device="cpu", grid={"factors": [4], "regularization": [1.0], "alpha": [1.0]})
model.fit(tiny_training_data(users=30, items=20, events=1500))
model.score(ScoreBatch.one(SHOP, "new", ["s00001"], history=["s00002"]))
"""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
