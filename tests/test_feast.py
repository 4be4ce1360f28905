"""Real Feast on a temporary copy of feature_repo/: apply, materialise, online and historical
reads, declarations resolved against the applied registry, and a plugin's Feast objects picked
up by plain `feast apply`."""

import numpy as np
import pandas as pd
import pytest

from hybridrec import columns as C
from hybridrec.builtin.scenarios import ADS, SHOP
from hybridrec.features import (
    FeatureError,
    OnlineFeatures,
    applied_views,
    join_events,
    open_store,
    point_in_time,
    resolve_features,
)


@pytest.fixture(scope="module")
def store(workspace):
    return open_store(workspace.repo)


def test_apply_registered_core_and_plugin_objects(store):
    views = {v.name for v in store.list_feature_views()}
    assert {"user_profile", "user_activity", "item_profile", "item_popularity",
            "ad_profile"} <= views
    assert store.get_entity("merchant").join_key == "merchant_id"  # from the hello plugin


def test_declarations_resolve_by_join_key(store):
    views = applied_views(store)
    refs = {"scorer 'x'": ["user_profile:age", "item_profile:price", "ad_profile:bid"]}
    shop = resolve_features(views, SHOP, refs)
    assert [r.ref for r in shop.user] == ["user_profile:age"]
    assert [r.ref for r in shop.item] == ["item_profile:price"]
    assert [r.ref for r in shop.absent] == ["ad_profile:bid"]  # shop items are not ads
    ads = resolve_features(views, ADS, refs)
    assert [r.ref for r in ads.item] == ["item_profile:price", "ad_profile:bid"]


@pytest.mark.parametrize("ref,message", [
    ("item_profile:prize", "view 'item_profile' has no field 'prize'"),
    ("item_profiles:price", "has no view 'item_profiles'"),
    ("price", "not of the form 'view:feature'"),
])
def test_a_bad_declaration_names_the_component_and_the_reference(store, ref, message):
    with pytest.raises(FeatureError, match=message) as err:
        resolve_features(applied_views(store), SHOP, {"scorer 'cheapest'": [ref]})
    assert "scorer 'cheapest'" in str(err.value) and repr(ref) in str(err.value)


def test_online_store_holds_the_latest_snapshot(store, workspace):
    activity = pd.read_parquet(workspace.repo / "data" / C.USER_ACTIVITY_FILE)
    latest = activity.sort_values(C.EVENT_TIMESTAMP).groupby(C.USER_ID).tail(1)
    row = latest.iloc[len(latest) // 2]
    users = pd.read_parquet(workspace.repo / "data" / C.USERS_FILE).set_index(C.USER_ID)
    sets = {"shop": resolve_features(applied_views(store), SHOP, {"kit": [
        "user_activity:events_total", "user_profile:age"]})}
    online = OnlineFeatures(store, sets, {"shop": np.array([], dtype=str)})
    got = online.users("shop", np.array([row[C.USER_ID], "nobody-at-all"], dtype=object))
    totals = got["user_activity__events_total"]  # numeric: float, NaN where missing
    assert totals[0] == row["events_total"] and np.isnan(totals[1])
    assert got["user_profile__age"][0] == users.loc[row[C.USER_ID], "age"]


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


def test_training_frames_hold_exactly_the_declared_features(store, workspace):
    events = pd.read_parquet(workspace.repo / "data" / C.EVENTS_FILE)
    shop = events[events[C.SCENARIO] == "shop"].head(50)
    features = resolve_features(applied_views(store), SHOP, {"x": ["item_profile:price",
                                                                   "ad_profile:bid"]})
    joined = join_events(store, shop, SHOP, features)
    added = [c for c in joined.columns if "__" in c]
    assert added == ["item_profile__price", "ad_profile__bid"]
    assert joined["item_profile__price"].notna().all() and joined["ad_profile__bid"].isna().all()
    nothing = join_events(store, shop, SHOP, resolve_features(applied_views(store), SHOP, {}))
    assert list(nothing.columns) == list(shop.columns)


def test_item_features_attach_ads_only_to_ad_items(store, workspace):
    items = pd.read_parquet(workspace.repo / "data" / C.ITEMS_FILE)
    ads = pd.read_parquet(workspace.repo / "data" / C.ADS_FILE).set_index(C.AD_ID)
    views = applied_views(store)
    refs = {"x": ["item_profile:scenario", "ad_profile:advertiser"]}
    catalogue = {name: items.loc[items[C.SCENARIO] == name, C.ITEM_ID].to_numpy(str)
                 for name in ("shop", "ads")}
    online = OnlineFeatures(store, {"shop": resolve_features(views, SHOP, refs),
                                    "ads": resolve_features(views, ADS, refs)}, catalogue)
    ad, shop_item = ads.index[0], catalogue["shop"][0]
    got = online.items("ads", np.array([ad, "unknown"]))
    assert got["item_profile__scenario"].tolist() == ["ads", None]
    assert got["ad_profile__advertiser"].tolist() == [ads.loc[ad, "advertiser"], None]
    shop = online.items("shop", np.array([shop_item]))
    assert shop["item_profile__scenario"].tolist() == ["shop"]
    assert shop["ad_profile__advertiser"].tolist() == [None]  # shop items are not ads


def test_numeric_features_are_floats_with_nan_where_missing(store, workspace):
    items = pd.read_parquet(workspace.repo / "data" / C.ITEMS_FILE)
    shop = items[items[C.SCENARIO] == "shop"]
    sets = {"shop": resolve_features(applied_views(store), SHOP, {"x": [
        "item_profile:price", "item_profile:title", "user_profile:age"]})}
    online = OnlineFeatures(store, sets, {"shop": shop[C.ITEM_ID].to_numpy(str)})
    got = online.items("shop", np.array([shop[C.ITEM_ID].iloc[0], "unknown"]))
    assert got["item_profile__price"].dtype == np.float64
    assert got["item_profile__price"][0] == pytest.approx(shop["price"].iloc[0])
    assert np.isnan(got["item_profile__price"][1])
    assert got["item_profile__title"].tolist() == [shop["title"].iloc[0], None]
    ages = online.users("shop", np.array(["u00001", "nobody"], dtype=object))
    assert ages["user_profile__age"].dtype == np.float64 and np.isnan(ages["user_profile__age"][1])


def test_feast_cli_materialises_too(workspace):
    from conftest import BIN, run

    result = run([str(BIN / "feast"), "materialize", "1970-01-01T00:00:00",
                  "2100-01-01T00:00:00", "--views", "item_popularity"],
                 workspace.env, cwd=workspace.repo)
    assert "item_popularity" in result.stdout


def test_materialize_writes_no_colour_codes_into_a_pipe(workspace):
    result = workspace.cli("materialize")
    assert "\x1b[" not in result.stdout + result.stderr
    assert "leaked" not in result.stderr, result.stderr[:300]  # DuckDB's exit-time noise
    first = result.stdout.splitlines()[0]
    assert first.startswith("materialised ") and "feature views: " in first
    # the core's five views, and as many more as the installed plugins register
    views = first.split(": ", 1)[1].split(", ")
    assert int(first.split()[1]) == len(views) >= 5
    assert {"user_profile", "item_profile", "item_popularity", "ad_profile",
            "user_activity"} <= set(views)
