"""Planning a training run: per-scenario choices from config, and everything checked before
anything is fitted (in process, against the core's views; no Feast needed)."""

import pytest

from hybridrec.features import ViewInfo
from hybridrec.plugins import build_registry
from hybridrec.training.plan import TrainingError, make_plan

# the core's views, and those the installed plugins' scorers declare (hybridrec-llm's)
VIEWS = {"item_profile": ViewInfo({"price": True, "title": False}, "item_id"),
         "user_profile": ViewInfo({"age": True, "gender": False, "occupation": False},
                                  "user_id"),
         "item_text_embedding": ViewInfo({"embedding": False, "encoder": False,
                                          "text_hash": False}, "item_id",
                                         frozenset({"embedding"}))}


@pytest.fixture(scope="module")
def registry():
    return build_registry()


def plan(registry, config, scenarios=("shop",), scorers=None):
    return make_plan(registry, scenarios, scorers, config).resolve(VIEWS)


def test_the_built_in_scenarios_fall_back_to_popularity(registry):
    assert plan(registry, {}).plans["shop"].fallback == "popularity"


def test_scenario_choices_come_from_config(registry):
    chosen = plan(registry, {"scenarios": {"shop": {"fallback": False,
                                                    "scorers": ["popularity"]}}})
    assert chosen.plans["shop"].fallback is None
    assert chosen.plans["shop"].scorers == ["popularity"]
    assert chosen.scenarios["shop"].fallback is None


@pytest.mark.parametrize("config,message", [
    ({"scenarios": {"shp": {"fallback": False}}}, r"\[scenarios.shp\] names no registered"),
    ({"scenarios": {"shop": {"fallbak": False}}}, "fallbak: not a setting; known: fallback"),
    ({"scenarios": {"shop": {"fallback": 3}}}, "must be a name or false"),
    ({"scenarios": {"shop": {"scorers": "popularity"}}}, "must be a list of names"),
    ({"scenarios": {"shop": {"blender": "nope"}}}, "unknown blender 'nope'"),
    ({"scenarios": {"shop": {"fallback": "nope"}}}, "falls back to 'nope'"),
])
def test_bad_scenario_choices_are_named(registry, config, message):
    with pytest.raises(TrainingError, match=message):
        plan(registry, config)


def test_a_fallback_must_support_the_scenario(registry):
    pytest.importorskip("hybridrec_als")
    assert plan(registry, {"scenarios": {"shop": {"fallback": "als"}}}).plans[
        "shop"].fallback == "als"
    with pytest.raises(TrainingError, match="'ads' falls back to 'als'.*does not support it"):
        plan(registry, {"scenarios": {"ads": {"fallback": "als"}}}, scenarios=("ads",))


def test_a_weight_typo_is_caught_for_a_scenario_not_trained_this_time(registry):
    config = {"weighted": {"weights": {"shop": {"popularity.clik": 2.0}}}}
    with pytest.raises(TrainingError, match="'popularity.clik'.*known: .*popularity.click"):
        plan(registry, config, scenarios=("video",))
    plan(registry, {"weighted": {"weights": {"shop": {"popularity.click": 2.0}}}},
         scenarios=("video",))


def test_a_declared_feature_the_registry_lacks_is_named_with_its_scenario(registry):
    import types

    from hybridrec import hookimpl
    from hybridrec.builtin.popularity import PopularityScorer

    class Pricey(PopularityScorer):
        name = "pricey"
        feature_refs = ("item_profile:cost",)

    module = types.ModuleType("pricey")
    module.register_scorers = hookimpl(lambda register: register(Pricey))
    with_pricey = build_registry(extra=[("pricey", module)])
    with pytest.raises(TrainingError, match="scenario 'shop': scorer 'pricey' declares "
                                            "feature 'item_profile:cost'"):
        plan(with_pricey, {})
