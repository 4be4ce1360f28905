"""The weighted blender through the conformance kit, and its configuration checks."""

import numpy as np
import pytest

from hybridrec.builtin.blenders import WeightedBlender
from hybridrec.builtin.scenarios import SHOP
from hybridrec.contracts import Ragged, ScoreBatch
from hybridrec.testing import BlenderContract, tiny_training_data


class TestWeightedBlender(BlenderContract):
    @pytest.fixture
    def blender(self):
        return WeightedBlender(weights={"shop": {"kit_a.click": 2.0}})

    @pytest.fixture
    def data(self):
        return tiny_training_data()


def test_weights_tilt_the_blend():
    batch = ScoreBatch(scenario=SHOP, user_ids=np.array(["u"], dtype=object),
                       candidates=Ragged.single(np.array(["x", "y"])))
    scores = {"a": {"click": np.array([1.0, 0.0])}, "b": {"click": np.array([0.0, 1.0])}}
    assert WeightedBlender().blend(scores, batch).tolist() == [0.0, 0.0]
    tilted = WeightedBlender(weights={"shop": {"a.click": 3.0}}).blend(scores, batch)
    assert tilted[0] > tilted[1]


def test_check_names_unknown_keys_and_scenarios():
    blender = WeightedBlender(weights={"shop": {"als.clik": 2.0}})
    with pytest.raises(ValueError, match=r"'als.clik'.*known: als.click, popularity.click"):
        blender.check({"shop": ["als.click", "popularity.click"]}, {"shop", "video"})
    blender.check({"video": ["als.click"]}, {"shop", "video"})  # shop not trained: fine
    with pytest.raises(ValueError, match="unknown scenario 'shp'"):
        WeightedBlender(weights={"shp": {}}).check({}, {"shop"})
