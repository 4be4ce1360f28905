"""The conformance kit's own checks fail where they should."""

import numpy as np
import pytest

from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.testing import KitWorld, ScenarioContract, ScorerContract, tiny_training_data


class LoopingScorer(PopularityScorer):
    """Popularity, but a few lines of Python per candidate."""

    name = "looping"

    def score(self, batch):
        scores = super().score(batch)
        bonus = np.array([sum(ord(c) for c in item) / 1e6 for item in batch.item_ids.tolist()])
        return {task: values + bonus for task, values in scores.items()}


def test_a_python_loop_per_candidate_is_caught():
    data = tiny_training_data()
    kit = ScorerContract()
    for scorer, caught in ((PopularityScorer(), False), (LoopingScorer(), True)):
        world = KitWorld(data, scorer)
        scorer.fit(world.training_data())
        if caught:
            with pytest.raises(AssertionError, match="look for a loop over candidates"):
                kit.test_no_python_loop_per_candidate(scorer, world)
        else:
            kit.test_no_python_loop_per_candidate(scorer, world)


BUILTIN_SCENARIOS = ("shop", "video", "ads", "movies", "obd_men", "obd_women")


@pytest.fixture(scope="module")
def small_world():
    return tiny_training_data(scenarios=("shop", "video", "ads"))


class TestBuiltinScenarios(ScenarioContract):
    @pytest.fixture(params=BUILTIN_SCENARIOS)
    def scenario(self, request):
        from hybridrec.plugins import get_registry

        return get_registry().scenarios[request.param]

    @pytest.fixture
    def data(self, scenario, small_world):
        return small_world if scenario.name in small_world.scenarios else None


def test_the_scenario_kit_names_what_is_wrong():
    import dataclasses

    from hybridrec.plugins import get_registry

    kit, shop = ScenarioContract(), get_registry().scenarios["shop"]
    with pytest.raises(AssertionError, match="outside event_weights"):
        kit.test_events_positives_and_objective_agree(
            dataclasses.replace(shop, positive_events=("bought",)))
    with pytest.raises(AssertionError, match="default_k"):
        kit.test_limits_are_usable(dataclasses.replace(shop, default_k=500))
    with pytest.raises(AssertionError, match="lowercase"):
        kit.test_name_fits_urls_metrics_and_configuration(dataclasses.replace(shop, name="Shop!"))
