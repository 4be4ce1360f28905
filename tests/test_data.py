"""The data commands: the synthetic world, MovieLens, and the derived snapshot tables."""

import pandas as pd
import pytest

from conftest import ML100K
from hybridrec import columns as C
from hybridrec.data import movielens, synthetic, tables

END = "2025-03-31T00:00:00Z"


def config(**extra):
    return synthetic.SyntheticConfig(**{"users": 400, "items": 150, "ads": 40,
                                        "events": 30_000, "seed": 3, "end": END, **extra})


@pytest.fixture(scope="module")
def world():
    return synthetic.generate(config())


def test_same_seed_same_world_other_seed_other_world(world):
    again = synthetic.generate(config())
    pd.testing.assert_frame_equal(world.events, again.events)
    pd.testing.assert_frame_equal(world.items, again.items)
    other = synthetic.generate(config(seed=4))
    assert not other.events.head(100).equals(world.events.head(100))


def test_the_world_ends_when_it_is_generated_unless_fixed(world):
    now = pd.Timestamp.now(tz="UTC")
    default = config(end=None, users=50, items=20, ads=5, events=5000)
    assert now - pd.Timedelta(hours=1) < default.end <= now
    last = synthetic.generate(default).events[C.EVENT_TIMESTAMP].max()
    assert now - pd.Timedelta(days=1) < last <= now + pd.Timedelta(minutes=10)
    assert world.events[C.EVENT_TIMESTAMP].max() <= pd.Timestamp(END) + pd.Timedelta(minutes=10)
    # a whole number of days later (ad clicks depend on the hour of day), given in +01:00
    shifted = synthetic.generate(config(end="2024-01-01T01:00:00+01:00"))
    gap = world.events[C.EVENT_TIMESTAMP] - shifted.events[C.EVENT_TIMESTAMP]
    assert (gap == pd.Timestamp(END) - pd.Timestamp("2024-01-01T00:00:00Z")).all()
    with pytest.raises(ValueError, match="ISO 8601"):
        synthetic.SyntheticConfig(end="yesterday-ish")


def test_sizes_are_configurable(world):
    assert len(world.users) == 400
    assert world.items.groupby(C.SCENARIO).size().to_dict() == {"ads": 40, "shop": 150,
                                                                "video": 150}
    ads = world.events[C.SCENARIO] == "ads"
    # the budget: shop and video about 80 % of it, the ad slot about as much again
    assert 0.8 * 24_000 < (~ads).sum() < 1.2 * 24_000
    assert 0.8 * 30_000 < ads.sum() < 1.2 * 30_000
    assert len(world.ads) == 40


def test_scenarios_and_their_events(world):
    kinds = world.events.groupby(C.SCENARIO)[C.EVENT_TYPE].unique().apply(set).to_dict()
    assert kinds == {"shop": {"view", "cart", "purchase"}, "video": {"watch", "like"},
                     "ads": {"impression", "click"}}
    ads = world.events[world.events[C.SCENARIO] == "ads"]
    ctr = (ads[C.EVENT_TYPE] == "click").sum() / (ads[C.EVENT_TYPE] == "impression").sum()
    assert 0.01 < ctr < 0.2
    span = world.events[C.EVENT_TIMESTAMP].max() - world.events[C.EVENT_TIMESTAMP].min()
    assert span > pd.Timedelta(weeks=7)


def test_titles_carry_the_category_words(world):
    for _, row in world.items.head(50).iterrows():
        words = synthetic.CATEGORY_WORDS[row[C.SCENARIO]][row["category"]]
        assert any(w in row["title"] for w in words), row["title"]


def test_ad_clicks_depend_on_targeting(world):
    ads = world.events[world.events[C.SCENARIO] == "ads"]
    shown = ads[ads[C.EVENT_TYPE] == "impression"].merge(
        world.ads.rename(columns={C.AD_ID: C.ITEM_ID}), on=C.ITEM_ID).merge(
        world.users, on=C.USER_ID)
    clicks = ads[ads[C.EVENT_TYPE] == "click"][[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    shown = shown.merge(clicks.assign(clicked=1), how="left", on=[C.USER_ID, C.ITEM_ID])
    match = ((shown["target_gender"] == "any") | (shown["target_gender"] == shown["gender"])) & (
        shown["age"].between(shown["target_age_min"], shown["target_age_max"]))
    rate = shown["clicked"].fillna(0).groupby(match).mean()
    assert rate[True] > 2 * rate[False]


def test_ads_carry_slot_policy_propensity_and_known_click_probabilities(world):
    ads = world.events[world.events[C.SCENARIO] == "ads"]
    shown = ads[ads[C.EVENT_TYPE] == "impression"]
    assert set(shown[C.POSITION].astype(int)) == {1, 2, 3}
    assert (shown[C.POLICY] == "random").all()
    # uniformly random among the ads live at the time
    assert (shown[C.PROPENSITY] >= 1 / len(world.ads)).all() and (shown[C.PROPENSITY] <= 1).all()
    live = world.ads.set_index(C.AD_ID)["launched_at"]
    assert (shown[C.EVENT_TIMESTAMP].to_numpy() >= live.loc[shown[C.ITEM_ID]].to_numpy()).all()
    truth = world.truth
    assert len(truth) == len(shown) and truth["p_click"].between(0, 1).all()
    clicks = ads[ads[C.EVENT_TYPE] == "click"]
    assert abs(truth["p_click"].mean() - len(clicks) / len(shown)) < 0.01
    for slot in (1, 3):  # a lower slot is clicked less
        assert clicks[C.POSITION].eq(slot).sum() / shown[C.POSITION].eq(slot).sum() > 0
    top = clicks[C.POSITION].eq(1).sum() / shown[C.POSITION].eq(1).sum()
    low = clicks[C.POSITION].eq(3).sum() / shown[C.POSITION].eq(3).sum()
    assert top > low


def test_written_tables_and_snapshots(world, tmp_path):
    counts = tables.write_dataset(world, tmp_path)
    from hybridrec.plugins import get_registry

    derived = {cls.file() for cls in get_registry().kind("derived_tables").values()}
    assert set(counts) == {C.EVENTS_FILE, C.USERS_FILE, C.ITEMS_FILE, C.ADS_FILE,
                           C.USER_ACTIVITY_FILE, C.ITEM_POPULARITY_FILE, C.USER_SEGMENTS_FILE,
                           C.ITEM_ATTRIBUTES_FILE} | derived
    events_written = pd.read_parquet(tmp_path / C.EVENTS_FILE)
    assert {C.POSITION, C.POLICY, C.PROPENSITY} <= set(events_written.columns)
    events = pd.read_parquet(tmp_path / C.EVENTS_FILE)
    assert str(events[C.EVENT_TIMESTAMP].dtype) == "datetime64[us, UTC]"
    activity = pd.read_parquet(tmp_path / C.USER_ACTIVITY_FILE)
    user = activity[C.USER_ID].iloc[0]
    snap = activity[activity[C.USER_ID] == user].iloc[-1]
    mine = events[(events[C.USER_ID] == user) & (events[C.EVENT_TIMESTAMP]
                                                 <= snap[C.EVENT_TIMESTAMP])]
    assert snap["events_total"] == len(mine)
    assert snap["items_total"] == mine[C.ITEM_ID].nunique()
    week = mine[mine[C.EVENT_TIMESTAMP] > snap[C.EVENT_TIMESTAMP].floor("D") - pd.Timedelta(days=6)]
    assert snap["events_7d"] == len(week)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="users"):
        synthetic.SyntheticConfig(users=0)
    with pytest.raises(ValueError, match="ad_traffic"):
        synthetic.SyntheticConfig(ad_traffic=0)


def test_ad_traffic_scales_the_impressions_alone(world):
    light = synthetic.generate(config(ad_traffic=0.2))
    ads = world.events[C.SCENARIO] == "ads"
    light_ads = light.events[C.SCENARIO] == "ads"
    assert 0.15 < light_ads.sum() / ads.sum() < 0.25
    # generated last: the content scenarios' events are the same
    pd.testing.assert_frame_equal(light.events[~light_ads].reset_index(drop=True),
                                  world.events[~ads].reset_index(drop=True))


@pytest.mark.skipif(not ML100K.exists(), reason=f"MovieLens 100K not found at {ML100K}")
def test_movielens_loads_into_the_common_schema():
    data = movielens.load(ML100K)
    assert len(data.events) == 100_000
    assert len(data.users) == 943 and len(data.items) == 1682
    assert set(data.events[C.SCENARIO]) == {"movies"}
    assert set(data.events[C.VALUE].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    toy = data.items.set_index(C.ITEM_ID).loc["m1"]
    assert "Toy Story" in toy["title"] and "Animation" in toy["text"] and "1995" in toy["text"]


def test_movielens_reports_a_wrong_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="u.data"):
        movielens.load(tmp_path)
