"""Real Feast on a temporary copy of feature_repo/: apply, materialise, online and historical
reads, and a plugin's Feast objects picked up by plain `feast apply`."""

import numpy as np
import pandas as pd
import pytest

from hybridrec import columns as C
from hybridrec.features import ItemCache, UserFeatures, open_store, point_in_time


@pytest.fixture(scope="module")
def store(workspace):
    return open_store(workspace.repo)


def test_apply_registered_core_and_plugin_objects(store):
    views = {v.name for v in store.list_feature_views()}
    assert {"user_profile", "user_activity", "item_profile", "item_popularity",
            "ad_profile"} <= views
    services = {s.name for s in store.list_feature_services()}
    assert {"shop_features", "video_features", "ads_features", "movies_features"} <= services
    assert store.get_entity("merchant").join_key == "merchant_id"  # from the hello plugin


def test_online_store_holds_the_latest_snapshot(store, workspace):
    activity = pd.read_parquet(workspace.repo / "data" / C.USER_ACTIVITY_FILE)
    latest = activity.sort_values(C.EVENT_TIMESTAMP).groupby(C.USER_ID).tail(1)
    row = latest.iloc[len(latest) // 2]
    users = pd.read_parquet(workspace.repo / "data" / C.USERS_FILE).set_index(C.USER_ID)
    got = UserFeatures(store).get(row[C.USER_ID])
    assert got["user_activity__events_total"] == row["events_total"]
    assert got["user_profile__age"] == users.loc[row[C.USER_ID], "age"]
    assert UserFeatures(store).get("nobody-at-all") == {}


def test_historical_join_is_point_in_time_correct(store, workspace):
    activity = pd.read_parquet(workspace.repo / "data" / C.USER_ACTIVITY_FILE)
    user = activity[C.USER_ID].iloc[0]
    snaps = activity[activity[C.USER_ID] == user].sort_values(C.EVENT_TIMESTAMP)
    first, second = snaps.iloc[0], snaps.iloc[1]
    when = [first[C.EVENT_TIMESTAMP] - pd.Timedelta(seconds=1),   # before any snapshot
            first[C.EVENT_TIMESTAMP] + pd.Timedelta(seconds=1),   # sees the first only
            second[C.EVENT_TIMESTAMP] + pd.Timedelta(seconds=1)]  # sees the second
    entity = pd.DataFrame({C.USER_ID: user, C.EVENT_TIMESTAMP: when})
    got = point_in_time(store, entity, ["user_activity:events_total"])
    values = got["user_activity__events_total"].tolist()
    assert np.isnan(values[0])
    assert values[1:] == [first["events_total"], second["events_total"]]


def test_item_cache_serves_catalogue_columns(store, workspace):
    items = pd.read_parquet(workspace.repo / "data" / C.ITEMS_FILE)
    ads = pd.read_parquet(workspace.repo / "data" / C.ADS_FILE).set_index(C.AD_ID)
    cache = ItemCache(store, items[C.ITEM_ID].tolist(), items[C.ITEM_ID].tolist())
    ad = ads.index[0]
    shop_item = items.loc[items[C.SCENARIO] == "shop", C.ITEM_ID].iloc[0]
    got = cache.take(np.array([shop_item, ad, "unknown"]))
    assert got["item_profile__scenario"].tolist() == ["shop", "ads", None]
    assert got["ad_profile__advertiser"].tolist() == [None, ads.loc[ad, "advertiser"], None]


def test_feast_cli_materialises_too(workspace):
    from conftest import BIN, run

    result = run([str(BIN / "feast"), "materialize", "1970-01-01T00:00:00",
                  "2100-01-01T00:00:00", "--views", "item_popularity"],
                 workspace.env, cwd=workspace.repo)
    assert "item_popularity" in result.stdout
