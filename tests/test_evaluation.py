"""The evaluation protocol's edges, in process on fitted built-ins (no Feast)."""

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec.builtin.blenders import WeightedBlender
from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.evaluation import BLEND, evaluate
from hybridrec.features import FeatureSet
from hybridrec.pipeline import ScenarioPlan
from hybridrec.testing import tiny_training_data


def run(data, train, test, k=5):
    shop = data.scenarios["shop"]
    pop = PopularityScorer()
    pop.fit(data)
    catalogue = data.items.loc[data.items[C.SCENARIO] == "shop", C.ITEM_ID].to_numpy(str)
    plan = ScenarioPlan(scorers=["popularity"], candidate_sources=["popularity"],
                        blender="weighted", fallback="popularity")
    cutoff = test[C.EVENT_TIMESTAMP].min()
    return evaluate({"shop": shop}, {"shop": plan}, {"shop": FeatureSet()},
                    {"popularity": pop}, {"weighted": WeightedBlender()}, None,
                    {"shop": catalogue}, train, test, cutoff, k=k, progress=False,
                    keep_lists=True)


def split(data, fraction=0.8):
    events = data.events[data.events[C.SCENARIO] == "shop"]
    cutoff = events[C.EVENT_TIMESTAMP].quantile(fraction)
    return events[events[C.EVENT_TIMESTAMP] < cutoff], events[events[C.EVENT_TIMESTAMP] >= cutoff]


def test_test_events_on_items_outside_the_catalogue_are_left_out():
    """Feedback on an item a later data set dropped used to crash the pairwise AUC."""
    data = tiny_training_data()
    train, test = split(data)
    user = train[C.USER_ID].iloc[0]
    when = test[C.EVENT_TIMESTAMP].max()
    stray = pd.DataFrame({C.USER_ID: user, C.ITEM_ID: ["gone-1", "gone-2", "gone-1"],
                          C.SCENARIO: "shop", C.EVENT_TYPE: ["view", "view", "purchase"],
                          C.VALUE: 1.0, C.EVENT_TIMESTAMP: when})
    with_stray = run(data, train, pd.concat([test, stray], ignore_index=True))
    plain = run(data, train, test)
    assert with_stray.metrics["shop"][BLEND]["gauc"] == plain.metrics["shop"][BLEND]["gauc"]


def test_lists_hold_k_unseen_catalogue_items_per_user():
    data = tiny_training_data()
    train, test = split(data)
    result = run(data, train, test, k=5)
    seen = train[train[C.EVENT_TYPE].isin(["view", "cart", "purchase"])]
    catalogue = set(data.items[C.ITEM_ID])
    for user, lists in result.lists["shop"].items():
        mine = set(seen.loc[seen[C.USER_ID] == user, C.ITEM_ID])
        for name in ("popularity", BLEND):
            assert len(lists[name]) == 5 and set(lists[name]) <= catalogue - mine
    users = result.metrics["shop"][BLEND]["users"]
    assert users == len(result.lists["shop"]) and users > 0
    assert np.isfinite(result.metrics["shop"]["popularity"]["ndcg@5"])
