"""The scoring pipeline on fitted built-in components, in process (no Feast: nothing here
declares features)."""

import numpy as np
import pytest

from hybridrec import columns as C
from hybridrec.builtin.blenders import WeightedBlender
from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.builtin.scenarios import SHOP
from hybridrec.contracts import CandidateSource, Ragged, Scorer
from hybridrec.features import FeatureSet, FeatureSource
from hybridrec.isolation import Guard
from hybridrec.pipeline import MEAN_BLEND, Pipeline, Requests, ScoringError
from hybridrec.testing import active_user, tiny_training_data


class Reverse(Scorer, CandidateSource):
    """Ranks items by id, descending; knows every item but 's00000'."""

    name = "reverse"
    tasks = ("click",)

    def fit(self, data):
        self.items = np.sort(data.items.loc[data.items[C.SCENARIO] == "shop", C.ITEM_ID]
                             .to_numpy(str))

    def score(self, batch):
        out = np.array([float(int(i[1:])) if i in self.items else np.nan
                        for i in batch.item_ids])
        out[batch.item_ids == "s00000"] = np.nan
        return {"click": out}

    def retrieve(self, batch, n):
        rows = [[i for i in self.items[::-1] if i not in set(batch.exclude[r])][:n]
                for r in range(len(batch))]
        return Ragged.from_rows(rows, dtype=str)

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls()


@pytest.fixture(scope="module")
def data():
    return tiny_training_data(users=80, items=30, events=4000)


@pytest.fixture(scope="module")
def pipeline(data):
    pop, rev = PopularityScorer(), Reverse()
    pop.fit(data)
    rev.fit(data)
    catalogue = data.items.loc[data.items[C.SCENARIO] == "shop", C.ITEM_ID].to_numpy(str)
    features = FeatureSource({"shop": FeatureSet()})
    return Pipeline(SHOP, {"popularity": pop, "reverse": rev},
                    {"reverse": rev, "popularity": pop}, WeightedBlender(), features,
                    catalogue, fallback=pop)


def seen(data, user):
    events = data.scenario_events("shop")
    return events.loc[(events[C.USER_ID] == user)
                      & (events[C.EVENT_TYPE].map(SHOP.event_weights) > 0), C.ITEM_ID].tolist()


def test_candidates_come_from_every_source_in_order_without_repeats(pipeline, data):
    user = active_user(data, SHOP)[0]
    scored = pipeline.score(Requests.one(user, seen(data, user)))
    ids = scored.batch.item_ids.tolist()
    assert len(ids) == len(set(ids)) and not set(ids) & set(seen(data, user))
    unseen = [i for i in np.sort(pipeline.catalogue)[::-1] if i not in seen(data, user)]
    assert ids[:5] == unseen[:5]  # the first source's order comes first
    assert set(ids) == set(unseen)
    assert scored.codes.tolist() == [pipeline.index.get(i) for i in ids]


def test_explicit_candidates_report_unknown_ones_and_leave_out_seen_ones(pipeline, data):
    user = active_user(data, SHOP)[0]
    history = seen(data, user)
    unseen = [i for i in pipeline.catalogue if i not in history]
    asked = [unseen[0], "nope", history[0], "nada", unseen[0], "nope", unseen[1]]
    [answer] = pipeline.recommend(Requests.one(user, history, candidates=asked), k=10)
    assert answer.item_ids == sorted(unseen[:2], reverse=True)
    assert answer.unknown_candidates == ["nope", "nada"]
    [kept] = pipeline.recommend(Requests.one(user, history, exclude_seen=False,
                                             candidates=asked), k=10)
    assert history[0] in kept.item_ids


def test_a_user_with_nothing_known_goes_to_the_fallback(pipeline):
    [answer] = pipeline.recommend(Requests.one("stranger"), k=5)
    assert answer.cold_start
    assert all(set(s) == {"popularity.click"} for s in answer.scorer_scores)
    [warm] = pipeline.recommend(Requests.one("stranger", ["s00003"]), k=5)
    assert not warm.cold_start and "reverse.click" in warm.scorer_scores[0]


def test_a_batch_ranks_every_request_as_it_would_alone(pipeline, data):
    users = data.scenario_events("shop")[C.USER_ID].value_counts().index[:12].tolist()
    users += ["stranger", "someone-else"]
    histories = [seen(data, u) for u in users]
    batch = Requests(user_ids=np.array(users, dtype=object),
                     history=Ragged.from_rows(histories, dtype=str),
                     exclude_seen=np.ones(len(users), dtype=bool))
    together = pipeline.recommend(batch, k=7)
    for user, history, answer in zip(users, histories, together, strict=True):
        [alone] = pipeline.recommend(Requests.one(user, history), k=7)
        assert answer == alone


def test_a_component_breaking_the_contract_is_named(pipeline, data):
    class Short(Reverse):
        name = "short"

        def score(self, batch):
            return {"click": np.zeros(len(batch) + 1)}

    broken = Pipeline(SHOP, {"short": Short()}, pipeline.sources, pipeline.blender,
                      pipeline.features, pipeline.catalogue)
    broken.scorers["short"].fit(data)
    with pytest.raises(ScoringError, match="scorer 'short' returned 'click' with shape"):
        broken.score(Requests.one("u00001", ["s00003"]))


def test_when_serving_a_failing_blender_gives_way_to_the_mean_standardised_score(pipeline,
                                                                               data):
    class Failing(WeightedBlender):
        name = "failing"

        def blend(self, scores, batch):
            raise RuntimeError("cannot blend")

        def contributions(self, scores, batch):
            raise RuntimeError("cannot blend")

    serving = Pipeline(SHOP, pipeline.scorers, pipeline.sources, Failing(), pipeline.features,
                       pipeline.catalogue, fallback=pipeline.fallback)
    user, _ = active_user(data, SHOP)
    request = Requests.one(user, candidates=["s00000", "s00001", "s00002", "s00003", "s00004"],
                           exclude_seen=False)
    with pytest.raises(RuntimeError, match="cannot blend"):  # training, evaluation: an error
        serving.score(request)
    serving.guard = Guard("shop", budget_ms=0, threshold=5, cooldown=60)
    scored = serving.score(request)
    assert [(d.component, d.reason) for d in scored.degraded] == [
        ("blender 'failing'", "raised RuntimeError; ranked by the mean standardised score")]
    assert scored.blend is not None and scored.blend.policy == MEAN_BLEND
    expected = WeightedBlender().blend(scored.outputs, scored.batch)  # equal weights
    np.testing.assert_allclose(scored.final, expected)
    z = np.array([(v - np.nanmean(v)) / np.nanstd(v) for t in scored.outputs.values()
                  for v in t.values()])
    np.testing.assert_allclose(scored.final, np.nanmean(z, axis=0))  # by hand
