"""The Open Bandit Dataset loader: every logged impression kept with its slot, policy and
propensity; clicks as events; hashed user and item features in their views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridrec import columns as C
from hybridrec.data import obd
from hybridrec.data.tables import write_dataset

OBD = Path(__file__).resolve().parents[2] / "shared" / "data" / "obd"
pytestmark = pytest.mark.skipif(not (OBD / "random").is_dir(),
                                reason=f"the Open Bandit Dataset sample is not at {OBD}")


@pytest.fixture(scope="module")
def data():
    return obd.load(OBD)


def raw(policy: str, campaign: str) -> pd.DataFrame:
    return pd.read_csv(OBD / policy / campaign / f"{campaign}.csv", index_col=0)


def test_every_row_is_an_impression_with_its_propensity(data):
    shown = data.events[data.events[C.EVENT_TYPE] == "impression"]
    for policy in obd.POLICIES:
        for campaign in obd.CAMPAIGNS:
            logged = raw(policy, campaign)
            mine = shown[(shown[C.POLICY] == policy)
                         & (shown[C.SCENARIO] == obd.scenario_name(campaign))]
            assert len(mine) == len(logged)
            np.testing.assert_array_equal(mine[C.PROPENSITY].to_numpy(),
                                          logged["propensity_score"].to_numpy())
            np.testing.assert_array_equal(mine[C.POSITION].to_numpy(),
                                          logged["position"].to_numpy())
            assert (mine[C.ITEM_ID] == campaign[0] + logged["item_id"].astype(str)
                    .to_numpy()).all()
            clicks = data.events[(data.events[C.EVENT_TYPE] == "click")
                                 & (data.events[C.POLICY] == policy)
                                 & (data.events[C.SCENARIO] == obd.scenario_name(campaign))]
            assert len(clicks) == int(logged["click"].sum())


def test_users_are_their_hashed_features(data):
    logged = raw("random", "men")
    combos = logged[list(obd.USER_FEATURES)].drop_duplicates()
    seg = data.user_segments.set_index(C.USER_ID)
    men = data.events[(data.events[C.SCENARIO] == "obd_men")
                      & (data.events[C.POLICY] == "random")]
    assert men[C.USER_ID].nunique() == len(combos)
    first = men.iloc[0]
    assert seg.loc[first[C.USER_ID], "segment_0"] == logged.iloc[0]["user_feature_0"]


def test_written_and_kept_through_parquet(data, tmp_path):
    counts = write_dataset(data, tmp_path)
    assert counts[C.USER_SEGMENTS_FILE] == len(data.user_segments)
    assert counts[C.ITEM_ATTRIBUTES_FILE] == 34 + 46
    events = pd.read_parquet(tmp_path / C.EVENTS_FILE)
    shown = events[events[C.EVENT_TYPE] == "impression"]
    assert len(shown) == 40_000 and shown[C.PROPENSITY].notna().all()
    assert set(shown[C.POLICY]) == {"random", "bts"}
    items = pd.read_parquet(tmp_path / C.ITEMS_FILE)
    assert items.groupby(C.SCENARIO).size().to_dict() == {"obd_men": 34, "obd_women": 46}


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="random/men/men.csv"):
        obd.load(tmp_path)
