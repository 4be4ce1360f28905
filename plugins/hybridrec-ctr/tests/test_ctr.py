"""The ctr scorer: labels, point-in-time history features, calibration, explanations,
unknown values, persistence and the conformance kit, on the synthetic ads world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hybridrec_ctr import CtrScorer
from hybridrec_ctr import features as F
from hybridrec_ctr import history as Hi
from hybridrec_ctr.calibration import sigmoid
from hybridrec_ctr.scorer import TASK

from hybridrec import columns as C
from hybridrec.builtin.scenarios import ADS
from hybridrec.contracts import ScoreBatch
from hybridrec.features import join_events
from hybridrec.impressions import labelled_impressions
from hybridrec.metrics import ece
from hybridrec.testing import KitWorld, ScorerContract, events_frame, tiny_training_data

FAST = {"max_rounds": 120, "early_stopping_rounds": 15, "min_data_in_leaf": 30}


@pytest.fixture(scope="module")
def data():
    return tiny_training_data(users=400, items=10, ads=25, events=40000, scenarios=("ads",))


@pytest.fixture(scope="module")
def world(data):
    return KitWorld(data, CtrScorer(**FAST))


@pytest.fixture(scope="module")
def trained(world):
    scorer = CtrScorer(**FAST)
    scorer.fit(world.training_data())
    return scorer


class TestConformance(ScorerContract):
    @pytest.fixture
    def scorer(self):
        return CtrScorer(**FAST)

    @pytest.fixture
    def data(self, data):
        return data


def test_only_ctr_scenarios_by_default():
    from hybridrec.builtin.scenarios import SHOP

    assert CtrScorer().supports(ADS) and not CtrScorer().supports(SHOP)
    assert CtrScorer(scenarios=["shop"]).supports(SHOP)


def test_snapshots_hold_running_counts_stamped_at_the_end_of_their_day():
    events = events_frame([
        ("u1", "a1", "ads", "impression", "2025-01-01T10:00:00"),
        ("u1", "a1", "ads", "click", "2025-01-01T10:00:05"),
        ("u1", "a2", "ads", "impression", "2025-01-02T10:00:00"),
        ("u1", "a1", "ads", "impression", "2025-01-02T11:00:00"),
    ])
    items = pd.DataFrame({C.ITEM_ID: ["a1", "a2"], C.SCENARIO: "ads",
                          "category": ["travel", "auto"]})
    snap = Hi.snapshots(events, items).set_index(C.EVENT_TIMESTAMP)
    assert len(snap) == 2
    day1, day2 = snap.iloc[0], snap.iloc[1]
    assert snap.index[0] == pd.Timestamp("2025-01-01T23:59:59.999999Z")
    assert Hi.lookup(day1[Hi.CATEGORIES], day1[Hi.IMPRESSIONS], day1[Hi.CLICKS]) == {
        "travel": (1, 1)}
    assert Hi.lookup(day2[Hi.CATEGORIES], day2[Hi.IMPRESSIONS], day2[Hi.CLICKS]) == {
        "travel": (2, 1), "auto": (1, 0)}


def test_no_history_value_from_after_an_impression_reaches_its_training_row(data):
    """Snapshot rows written just before and just after an impression: the join sees the
    earlier one only."""
    from hybridrec.features import applied_views, resolve_features
    from hybridrec.testing import feature_store

    store = feature_store(data, fresh=True)
    shown = data.events[data.events[C.EVENT_TYPE] == "impression"].iloc[[100]]
    user, when = shown[C.USER_ID].iloc[0], pd.Timestamp(shown[C.EVENT_TIMESTAMP].iloc[0])
    path = store.repo_path / "data" / Hi.UserCategoryClicks.file()
    table = pq.read_table(str(path)).to_pandas()
    extra = pd.DataFrame({C.USER_ID: [user, user],
                          Hi.CATEGORIES: [["written-before"], ["written-after"]],
                          Hi.IMPRESSIONS: [[7], [9]], Hi.CLICKS: [[1], [2]],
                          C.EVENT_TIMESTAMP: [when - pd.Timedelta(seconds=1),
                                              when + pd.Timedelta(seconds=1)]})
    extra[C.EVENT_TIMESTAMP] = extra[C.EVENT_TIMESTAMP].astype(
        table[C.EVENT_TIMESTAMP].dtype)
    pd.concat([table, extra], ignore_index=True).to_parquet(path, index=False)
    features = resolve_features(applied_views(store), ADS, {"ctr": Hi.REFS})
    joined = join_events(store, shown, ADS, features)
    assert list(joined[Hi.COLUMNS[0]].iloc[0]) == ["written-before"]
    assert list(joined[Hi.COLUMNS[1]].iloc[0]) == [7]


def test_history_features_reach_training_rows(world):
    frame = world.training_data().events
    shown = frame[frame[C.EVENT_TYPE] == "impression"]
    has = shown[Hi.COLUMNS[0]].map(lambda v: v is not None and len(v) > 0)
    assert has.mean() > 0.5, "most impressions come after the user's first day of ads"


def test_the_model_learns_the_click_signal(trained):
    info = trained.models["ads"].info
    assert info["validation"]["auc"] > 0.6, info["validation"]
    importance = info["feature_importance"]
    # the world's clicks depend on targeting and slot: the model finds them
    targeting = ("in_target", "age_in_target", "gender_match", "age", "target_age_min")
    assert sum(importance[k] for k in targeting) > 0.05, importance
    assert importance["position"] > 0.01, importance


def test_calibration_repairs_probabilities_that_sampling_distorted(data):
    """Trees trained on a quarter of the negatives overstate every click rate; the
    calibration slice (all rows, never seen by the trees) brings them back to the truth."""
    world = KitWorld(data, CtrScorer(**FAST))
    scorer = CtrScorer(negative_rate=0.25, **FAST)
    scorer.fit(world.training_data())
    model = scorer.models["ads"]
    from hybridrec_ctr.scorer import raw_columns

    rows = labelled_impressions(world.training_data().scenario_events("ads"), ADS,
                                24).iloc[-1500:]
    x = F.design(raw_columns(rows), rows[C.ITEM_ID].to_numpy(object),
                 F.utc_times(rows[C.EVENT_TIMESTAMP].to_numpy()), rows[C.POSITION].to_numpy(),
                 np.arange(len(rows)), model.vocab, model.base_rate)
    y = rows["label"].to_numpy()
    uncalibrated = sigmoid(model.booster.predict(x, raw_score=True))
    calibrated = model.predict(x)
    assert ece(y, calibrated) < ece(y, uncalibrated) / 2, (ece(y, calibrated),
                                                             ece(y, uncalibrated))
    assert abs(calibrated.mean() - y.mean()) < 0.02


def request(world, user="u00001", items=None, context=None, item_features=None):
    items = world.catalogue(ADS)[:8] if items is None else items
    batch = world.batch(ADS, [(user, items)])
    if item_features or context:
        features = dict(batch.item_features)
        features.update(item_features or {})
        batch = ScoreBatch(scenario=ADS, user_ids=batch.user_ids, candidates=batch.candidates,
                           user_features=batch.user_features, item_features=features,
                           history=batch.history, context=[context or {}], as_of=batch.as_of)
    return batch


def test_unseen_categories_get_finite_calibrated_scores(trained, world):
    batch = request(world)
    n = len(batch)
    odd = {F.CATEGORY: np.full(n, "a-category-never-seen", dtype=object),
           F.ADVERTISER: np.full(n, "NewCo", dtype=object),
           F.TARGET_GENDER: np.full(n, "??", dtype=object)}
    scores = trained.score(request(world, item_features=odd))[TASK]
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()


def test_a_lower_slot_lowers_the_click_probability(trained, world):
    top = trained.score(request(world, context={"position": 1}))[TASK]
    low = trained.score(request(world, context={"position": 3}))[TASK]
    assert low.mean() < top.mean()


def test_explanations_sum_to_the_raw_score_and_match_the_score(trained, world):
    batch = request(world)
    rows = np.arange(len(batch))
    notes = trained.explain(batch, rows, top=len(F.NAMES))
    scores = trained.score(batch)[TASK]
    for r, note in zip(rows, notes, strict=True):
        total = note["base"] + sum(c["contribution"] for c in note["contributions"])
        assert total == pytest.approx(note["raw_score"], abs=1e-6)
        assert note["probability"] == pytest.approx(scores[r], rel=1e-6)
    short = trained.explain(batch, rows[:2], top=3)
    assert [len(n["contributions"]) for n in short] == [3, 3]
    mags = [abs(c["contribution"]) for c in short[0]["contributions"]]
    assert mags == sorted(mags, reverse=True)


def test_explain_gives_none_for_an_item_it_does_not_score(trained, world):
    batch = request(world, items=np.array([world.catalogue(ADS)[0], "no-such-ad"]))
    first, unknown = trained.explain(batch, np.array([0, 1]))
    assert first is not None and unknown is None


def test_saved_and_loaded_model_explains_alike(trained, world, tmp_path):
    trained.save(tmp_path)
    loaded = CtrScorer.load(tmp_path)
    batch = request(world)
    rows = np.arange(len(batch))
    assert loaded.explain(batch, rows) == trained.explain(batch, rows)
    assert loaded.describe()["scenarios"]["ads"]["feature_importance"] == \
        trained.describe()["scenarios"]["ads"]["feature_importance"]


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="calibration"):
        CtrScorer(calibration="magic")
    with pytest.raises(ValueError, match="negative_rate"):
        CtrScorer(negative_rate=0)


def test_any_position_a_client_sends_gives_a_finite_score(trained, world):
    for position in ([1, 2], {"slot": 1}, "top", None, -3, 1e9):
        scores = trained.score(request(world, context={"position": position}))[TASK]
        assert np.isfinite(scores).all(), position


def test_times_as_the_online_store_gives_them_convert_as_pandas_does():
    """Aware datetimes in any zone, naive ones (UTC), Timestamps, None and NaT; and text,
    which goes through pandas."""
    from datetime import UTC, datetime, timedelta, timezone

    rng = np.random.default_rng(0)
    micros = rng.integers(-9_223_372_036_854_775, 9_223_372_036_854_775, 2000)  # pandas' span
    zones = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
    values = [pd.Timestamp(int(m), unit="us", tz="UTC").to_pydatetime().astimezone(
        zones[i % 3]) for i, m in enumerate(micros)]
    values += [datetime(2025, 3, 1, 12, 30, 1, 7), pd.Timestamp("2025-03-02T01:02:03.456789Z"),
               None, pd.NaT, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
               datetime(1500, 1, 1)]
    given = np.array(values, dtype=object)
    expected = pd.to_datetime(pd.Series(given, dtype=object), utc=True, errors="coerce"
                              ).dt.tz_localize(None).to_numpy("datetime64[us]")
    np.testing.assert_array_equal(F.utc_times(given), expected)
    text = np.array(["2025-03-01T00:00:00Z", None, "not a time"], dtype=object)
    np.testing.assert_array_equal(F.utc_times(text), np.array(
        ["2025-03-01T00:00:00", "NaT", "NaT"], dtype="datetime64[us]"))


@pytest.mark.parametrize("values", [[1, 2, None], [1, "x", 3.5], ["3", "4"], [True, 2.5],
                                    ["1_000", "３"], [np.int64(4), 2], []])
def test_numbers_as_objects_convert_as_pandas_does(values):
    given = np.array(values, dtype=object)
    np.testing.assert_array_equal(F.numeric(given), pd.to_numeric(
        pd.Series(given, dtype=object), errors="coerce").to_numpy(float))
