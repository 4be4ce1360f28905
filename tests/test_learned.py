"""The learned blender: the conformance kit, and constructed worlds where the right answer is
known (one scorer informative and one noise; text for cold users, CF for heavy ones)."""

import numpy as np
import pytest

from hybridrec.builtin.blenders import WeightedBlender
from hybridrec.builtin.learned import LearnedBlender
from hybridrec.builtin.scenarios import ADS, SHOP, VIDEO
from hybridrec.contracts import BlendExamples, Ragged, ScoreBatch, ScoredRequests
from hybridrec.objectives import BUCKETS
from hybridrec.testing import BlenderContract, tiny_training_data

COLD, HEAVY = BUCKETS.index("cold"), BUCKETS.index("heavy")


class TestLearnedBlender(BlenderContract):
    @pytest.fixture
    def blender(self):
        return LearnedBlender()

    @pytest.fixture
    def data(self):
        return tiny_training_data()


def world(scenario, n_requests=300, n_candidates=30, seed=0, history=(60,), informative=None):
    """Requests with one relevant candidate each; ``informative(history_length)`` names the
    scorer whose score carries the label there (the other is noise)."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice(history, size=n_requests)
    candidates = Ragged.from_rows([[f"i{j}" for j in range(n_candidates)]] * n_requests)
    histories = Ragged.from_rows([[f"h{j}" for j in range(n)] for n in lengths])
    batch = ScoreBatch(scenario=scenario, user_ids=np.array([f"u{r}" for r in range(n_requests)],
                                                             dtype=object),
                       candidates=candidates, history=histories)
    labels = np.zeros(len(batch))
    labels[batch.offsets[:-1] + rng.integers(0, n_candidates, n_requests)] = 1.0
    signal = labels * 1.5 + rng.normal(size=len(batch))
    noise = rng.normal(size=len(batch))
    pick = np.array([informative(n) for n in lengths])[batch.request]
    text = np.where(pick == "text", signal, noise)
    cf = np.where(pick == "cf", signal, rng.normal(size=len(batch)))
    scores = {"text": {"click": text}, "cf": {"click": cf}}
    return batch, scores, labels


def fitted(*parts, **config):
    examples = BlendExamples()
    for batch, scores, labels in parts:
        examples.scenarios.setdefault(batch.scenario.name, []).append(
            ScoredRequests(batch, scores, labels))
    blender = LearnedBlender(**config)
    blender.fit(tiny_training_data(), examples)
    return blender


def hit_rate(blend, batch, labels):
    best = np.array([batch.offsets[r] + np.argmax(blend[batch.offsets[r]:batch.offsets[r + 1]])
                     for r in range(batch.n_requests)])
    return labels[best].mean()


def column(blender, key):
    return blender.columns.index(key)


def test_it_prefers_the_informative_scorer_over_noise():
    blender = fitted(world(SHOP, informative=lambda n: "cf"))
    w = blender.weights("shop", HEAVY)
    assert w[column(blender, "cf.click")] > 5 * abs(w[column(blender, "text.click")])
    batch, scores, labels = world(SHOP, seed=1, informative=lambda n: "cf")
    learned = hit_rate(blender.blend(scores, batch), batch, labels)
    equal = hit_rate(WeightedBlender().blend(scores, batch), batch, labels)
    assert learned > equal + 0.05


def test_it_trusts_text_for_cold_users_and_cf_for_heavy_ones():
    def informative(n):
        return "text" if n < 5 else "cf"

    blender = fitted(world(SHOP, history=(1, 2, 60, 80), informative=informative, n_requests=600))
    text, cf = column(blender, "text.click"), column(blender, "cf.click")
    cold, heavy = blender.weights("shop", COLD), blender.weights("shop", HEAVY)
    assert cold[text] > cold[cf] and heavy[cf] > heavy[text]
    batch, scores, labels = world(SHOP, history=(1, 2, 60, 80), informative=informative,
                                  seed=3, n_requests=600)
    assert hit_rate(blender.blend(scores, batch), batch, labels) > hit_rate(
        WeightedBlender().blend(scores, batch), batch, labels) + 0.05


def test_without_examples_it_ranks_as_equal_weights_do():
    blender = LearnedBlender()
    blender.fit(tiny_training_data(), None)
    batch, scores, _ = world(SHOP, n_requests=20, informative=lambda n: "cf")
    blender.keys = ["cf.click", "text.click"]  # as if fit with these inputs and no examples
    blender.shared = blender.prior()
    blender.per_bucket = np.zeros((len(BUCKETS), len(blender.columns)))
    ours, equal = blender.blend(scores, batch), WeightedBlender().blend(scores, batch)
    for r in range(batch.n_requests):
        rows = slice(batch.offsets[r], batch.offsets[r + 1])
        assert np.argsort(-ours[rows]).tolist() == np.argsort(-equal[rows]).tolist()


def test_a_scenario_with_little_data_stays_near_the_shared_weights():
    big = world(SHOP, n_requests=600, informative=lambda n: "cf")
    small = world(VIDEO, n_requests=6, seed=5, informative=lambda n: "text")
    blender = fitted(big, small)
    shop, video = blender.weights("shop", HEAVY), blender.weights("video", HEAVY)
    cf, text = column(blender, "cf.click"), column(blender, "text.click")
    # six requests are not enough to overturn what 600 say: video still leans on cf
    assert video[cf] > video[text]
    deviation = {n: np.abs(blender.per_scenario[blender.scenarios.index(n)]).sum()
                 for n in ("shop", "video")}
    assert deviation["video"] < deviation["shop"]
    assert shop[cf] > video[cf] > 0.5


def test_an_ad_slot_starts_from_expected_value():
    """With a value objective (bid) and a probability input, the prior ranks by p x bid."""
    blender = LearnedBlender()
    blender.fit(tiny_training_data(), None)
    blender.keys = ["ctr.ctr"]
    blender.shared = blender.prior()
    blender.per_bucket = np.zeros((len(BUCKETS), len(blender.columns)))
    p, bid = np.array([0.01, 0.02, 0.05]), np.array([3.0, 1.0, 0.5])
    batch = ScoreBatch.one(ADS, "u", ["a", "b", "c"],
                           item_features={"ad_profile__bid": bid})
    out = blender.blend({"ctr": {"ctr": p}}, batch)
    assert np.argsort(-out).tolist() == np.argsort(-(p * bid)).tolist()
    parts = blender.contributions({"ctr": {"ctr": p}}, batch)
    assert set(parts) >= {"ctr.ctr", "objective value"}


def test_an_input_the_scenario_does_not_have_is_not_shown_as_a_contribution():
    """A shop answer names no contribution of the ad scorer: absent from every row, its
    term is the same for all of them and moves no item."""
    blender = LearnedBlender()
    blender.fit(tiny_training_data(), None)
    blender.keys = ["als.click", "ctr.ctr"]
    blender.shared = blender.prior() + 0.3  # the absent input's indicator weighs too
    blender.per_bucket = np.zeros((len(BUCKETS), len(blender.columns)))
    cf = np.array([0.3, -1.0, 2.0, 0.1])
    batch = ScoreBatch.one(SHOP, "u", ["a", "b", "c", "d"])
    parts = blender.contributions({"als": {"click": cf}}, batch)
    assert "ctr.ctr" not in parts and "als.click" in parts
    out = blender.blend({"als": {"click": cf}}, batch)
    np.testing.assert_allclose(out, sum(parts.values()))
    assert np.argsort(-out).tolist() == np.argsort(-cf).tolist()


def test_the_check_keeps_an_input_alone_that_ranks_held_out_requests_better(tmp_path):
    """Weights held at equal (huge penalties, no refinement) mix a noise input in; on the
    held-out quarter the informative input alone ranks better, so the scenario keeps it."""
    frozen = {"l2_shared": 1e9, "l2_scenario": 1e9, "refine": False}
    blender = fitted(world(SHOP, n_requests=400, informative=lambda n: "cf"), **frozen)
    check = blender.describe()["fit"]["check"]["shop"]
    assert check["chosen"] == "cf.click"
    assert check["cf.click"] > check["learned"]
    alone = np.zeros(len(blender.columns))
    alone[column(blender, "cf.click")] = 1.0
    for bucket in range(len(BUCKETS)):
        assert np.array_equal(blender.weights("shop", bucket), alone)
    batch, scores, labels = world(SHOP, seed=1, informative=lambda n: "cf")
    assert hit_rate(blender.blend(scores, batch), batch, labels) == hit_rate(
        scores["cf"]["click"], batch, labels)
    blender.save(tmp_path)
    again = LearnedBlender.load(tmp_path)
    assert np.array_equal(again.blend(scores, batch), blender.blend(scores, batch))

    unchecked = fitted(world(SHOP, n_requests=400, informative=lambda n: "cf"), check=False,
                       **frozen)
    assert unchecked.fixed == {} and "check" not in unchecked.describe()["fit"]
    assert unchecked.weights("shop", HEAVY)[column(unchecked, "text.click")] > 0.5


def test_the_check_keeps_the_fit_when_it_ranks_held_out_requests_best():
    def informative(n):
        return "text" if n < 5 else "cf"

    blender = fitted(world(SHOP, history=(1, 2, 60, 80), informative=informative, n_requests=600))
    check = blender.describe()["fit"]["check"]["shop"]
    assert check["chosen"] == "learned"
    assert blender.fixed == {}


def test_the_check_needs_a_gain_beyond_the_noise():
    """A mean gain of a few thousandths over a few hundred requests whose differences
    scatter by a tenth is noise: the fit stays; a steady gain is not."""
    from hybridrec.builtin.learned import _clearly_above

    rng = np.random.default_rng(0)
    fit = rng.random(250)
    noisy = fit + 0.002 + rng.normal(scale=0.1, size=250)
    assert not _clearly_above(noisy, fit)
    assert _clearly_above(fit + 0.05 + rng.normal(scale=0.1, size=250), fit)
    assert not _clearly_above(fit, fit)


def test_a_scenario_too_small_to_check_is_not_checked():
    blender = fitted(world(SHOP, n_requests=600, informative=lambda n: "cf"),
                     world(VIDEO, n_requests=20, seed=5, informative=lambda n: "text"))
    assert "video" not in blender.describe()["fit"]["check"]
    assert "video" not in blender.fixed


def test_item_context_counts_what_the_scenario_weighs_and_follows_the_latest_fit(tmp_path):
    """An ad's popularity is its clicks, not the impressions a logging policy chose to show;
    and ``observe`` (called when the scorers are fit again) brings the counts up to date."""
    import pandas as pd

    from hybridrec import columns as C

    data = tiny_training_data(scenarios=("ads",), ads=5, events=2000)
    blender = LearnedBlender()
    blender.fit(data, None)
    events = data.events
    clicks = events[events[C.EVENT_TYPE] == "click"].groupby(C.ITEM_ID).size()
    table = blender.items["ads"]
    assert table["count"].reindex(clicks.index).tolist() == clicks.astype(float).tolist()
    shown_only = set(events[C.ITEM_ID]) - set(clicks.index)
    assert all(table.loc[i, "count"] == 0.0 for i in shown_only)

    early = events[events[C.EVENT_TIMESTAMP] < events[C.EVENT_TIMESTAMP].quantile(0.5)]
    blender.fit(type(data)(events=early, items=data.items, users=data.users,
                           scenarios=data.scenarios, ads=data.ads), None)
    before = blender.items["ads"]["count"].sum()
    blender.observe(data)
    assert blender.items["ads"]["count"].sum() == float(len(events[events[C.EVENT_TYPE]
                                                                   == "click"])) > before
    assert pd.Timestamp(int(blender.items["ads"]["last"].max()), unit="us") == \
        pd.Timestamp(events[C.EVENT_TIMESTAMP].max()).tz_localize(None).floor("us")
    blender.save(tmp_path)
    again = LearnedBlender.load(tmp_path)
    pd.testing.assert_frame_equal(again.items["ads"], blender.items["ads"])


def ad_world(n_requests=400, n_candidates=30, seed=0):
    """Ad requests: one click each, drawn by a calibrated click probability that has nothing
    to do with the bid; the gain of a click is the ad's bid (expected value)."""
    rng = np.random.default_rng(seed)
    candidates = Ragged.from_rows([[f"a{j}" for j in range(n_candidates)]] * n_requests)
    bid = rng.uniform(0.2, 3.0, n_candidates * n_requests)
    batch = ScoreBatch(scenario=ADS, user_ids=np.array([f"u{r}" for r in range(n_requests)],
                                                       dtype=object),
                       candidates=candidates,
                       history=Ragged.from_rows([["h"]] * n_requests),
                       item_features={"ad_profile__bid": bid})
    p = 1 / (1 + np.exp(-(rng.normal(size=len(batch)) * 1.5 - 3.0)))
    labels = np.zeros(len(batch))
    for r in range(n_requests):
        rows = np.arange(batch.offsets[r], batch.offsets[r + 1])
        labels[rng.choice(rows, p=p[rows] / p[rows].sum())] = 1.0
    return batch, {"ctr": {"ctr": p}}, labels * bid


def pooled_ndcg(blend, batch, gains, k=10):
    from hybridrec.builtin.learned import _Ndcg

    return _Ndcg(gains, batch.offsets, k, pooled=True)(blend)


def test_an_ad_slot_learns_for_the_value_at_stake():
    """Clicks say nothing of bids, so a fit that weighs every request alike would learn to
    ignore the bid; weighing each request by its value keeps p x bid, which ranks better on
    the pooled objective."""
    blender = fitted(ad_world(), check=False)
    assert blender.pooled == {"ads"}
    w = blender.weights("ads", COLD)
    assert w[column(blender, "objective value")] > 0.8
    assert w[column(blender, "ctr.ctr")] > 0.5
    batch, scores, gains = ad_world(seed=1)
    assert pooled_ndcg(blender.blend(scores, batch), batch, gains) > pooled_ndcg(
        scores["ctr"]["ctr"], batch, gains)
