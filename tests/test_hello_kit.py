"""The README's plugin through the conformance kit: a scorer that declares a feature gets it
from a real Feast repository the kit builds, and nothing else."""

import sys

import numpy as np
import pytest

from hybridrec.testing import KitWorld, ScorerContract, tiny_training_data


@pytest.fixture(scope="module")
def cheapest(hello_site):
    sys.path.insert(0, str(hello_site))
    try:
        from hybridrec_hello import CheapestScorer
    finally:
        sys.path.remove(str(hello_site))
    return CheapestScorer


class TestCheapest(ScorerContract):
    @pytest.fixture
    def scorer(self, cheapest):
        return cheapest()

    @pytest.fixture
    def data(self):
        return tiny_training_data()


def test_the_kit_fetches_exactly_the_declared_features(cheapest):
    data = tiny_training_data()
    world = KitWorld(data, cheapest())
    shop = data.scenarios["shop"]
    items = data.items.loc[data.items.scenario == "shop"].head(5)
    batch = world.batch(shop, [("u00001", items.item_id.to_numpy(str))])
    assert set(batch.item_features) == {"item_profile__price"}
    assert batch.user_features == {}
    np.testing.assert_allclose(batch.item_features["item_profile__price"].astype(float),
                               items.price.to_numpy(float), rtol=1e-6)
    joined = world.training_data().events
    assert [c for c in joined.columns if "__" in c] == ["item_profile__price"]


def test_a_declaration_the_registry_cannot_resolve_fails_naming_it(cheapest):
    from hybridrec.features import FeatureError

    class Misspelt(cheapest):
        feature_refs = ("item_profile:prize",)

    with pytest.raises(FeatureError, match="'item_profile:prize'.*no field 'prize'"):
        KitWorld(tiny_training_data(), Misspelt())
