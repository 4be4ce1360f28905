"""A scorer that declares a sequence input gets each user's recent events: from the event log
at training time, plus feedback and ``context.recent_items`` at serving time."""

import json
import types
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

import hybridrec.plugins as P
from hybridrec import columns as C
from hybridrec import history as H
from hybridrec.builtin.blenders import WeightedBlender
from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.bundle import Bundle, BundleContents, write_bundle
from hybridrec.contracts import Scorer
from hybridrec.feedback import FeedbackLog
from hybridrec.hookspecs import hookimpl
from hybridrec.pipeline import ScenarioPlan
from hybridrec.recommender import Recommender
from hybridrec.testing import ScorerContract, active_user, tiny_training_data


class LastItems(Scorer):
    """Scores an item by whether it is among the user's last three events; remembers the
    sequences it was given."""

    name = "last_items"
    tasks = ("click",)
    sequence_length = 3
    seen: list = []

    def __init__(self, known=()):
        super().__init__()
        self.known = list(known)

    def fit(self, data):
        self.known = data.items[C.ITEM_ID].tolist()

    def score(self, batch):
        assert batch.sequences is not None
        LastItems.seen.append(batch.sequences)
        out = np.zeros(len(batch))
        for r in range(batch.n_requests):
            rows = slice(batch.offsets[r], batch.offsets[r + 1])
            out[rows] = np.isin(batch.item_ids[rows], batch.sequences.item_ids[r])
        out[~np.isin(batch.item_ids, self.known)] = np.nan
        return {"click": out}

    def save(self, path):
        (path / "known.json").write_text(json.dumps(self.known))

    @classmethod
    def load(cls, path):
        return cls(json.loads((path / "known.json").read_text()))


class TestLastItems(ScorerContract):
    @pytest.fixture
    def scorer(self):
        return LastItems()

    @pytest.fixture
    def data(self):
        return tiny_training_data()


@pytest.fixture
def registry(monkeypatch):
    module = types.ModuleType("seq")
    module.register_scorers = hookimpl(lambda register: register(LastItems))
    registry = P.build_registry(extra=[("seq", module)])
    monkeypatch.setattr(P, "_registry", registry)
    return registry


def test_serving_sees_the_log_then_feedback_then_recent_items(registry, tmp_path):
    data = tiny_training_data()
    shop = data.scenarios["shop"]
    pop, scorer = PopularityScorer(), LastItems()
    pop.fit(data)
    scorer.fit(data)
    plan = ScenarioPlan(scorers=["last_items", "popularity"],
                        candidate_sources=["popularity"], blender="weighted",
                        fallback="popularity", sequence_length=3)
    write_bundle(tmp_path, "v1", BundleContents(
        plans={"shop": plan}, components={"last_items": scorer, "popularity": pop},
        blenders={"weighted": WeightedBlender()},
        history=H.seen_pairs(data.events, {"shop": shop}),
        sequences=H.recent_events(data.events, {"shop": 3}),
        catalogue=data.items[[C.ITEM_ID, C.SCENARIO]]))
    feedback = FeedbackLog(tmp_path / "feedback.db")
    user, _ = active_user(data, shop)
    stamp = datetime(2025, 4, 1, 12, tzinfo=UTC).isoformat()
    feedback.append([{"request_id": "r1", C.USER_ID: user, C.ITEM_ID: "s00007",
                      C.SCENARIO: "shop", C.EVENT_TYPE: "cart", C.VALUE: 1.0,
                      C.EVENT_TIMESTAMP: stamp}], stamp)
    rec = Recommender(Bundle.load(tmp_path, "v1"), lambda: pytest.fail("no features"), feedback)
    LastItems.seen.clear()
    rec.recommend(user, "shop", 5, context={"recent_items": ["s00011"]})
    [sequences] = LastItems.seen
    mine = data.events[(data.events[C.USER_ID] == user) & (data.events[C.SCENARIO] == "shop")]
    last_logged = mine.sort_values(C.EVENT_TIMESTAMP, kind="stable").iloc[-1]
    assert sequences.item_ids[0].tolist() == [last_logged[C.ITEM_ID], "s00007", "s00011"]
    assert sequences.event_types.tolist() == [last_logged[C.EVENT_TYPE], "cart", "recent"]
    assert sequences.timestamps[1] == np.datetime64("2025-04-01T12:00:00", "us")
    assert np.all(np.diff(sequences.timestamps) >= np.timedelta64(0))


def test_evaluation_sees_each_users_events_before_the_cutoff(registry):
    from hybridrec.evaluation import evaluate
    from hybridrec.features import FeatureSet

    data = tiny_training_data()
    shop = data.scenarios["shop"]
    cutoff = data.events[C.EVENT_TIMESTAMP].quantile(0.8)
    train = data.events[data.events[C.EVENT_TIMESTAMP] < cutoff]
    test = data.events[data.events[C.EVENT_TIMESTAMP] >= cutoff]
    scorer, pop = LastItems(), PopularityScorer()
    scorer.fit(data)
    pop.fit(data)
    plan = ScenarioPlan(scorers=["last_items"], candidate_sources=["popularity"],
                        blender="weighted", sequence_length=3)
    LastItems.seen.clear()
    catalogue = data.items.loc[data.items[C.SCENARIO] == "shop", C.ITEM_ID].to_numpy(str)
    result = evaluate({"shop": shop}, {"shop": plan}, {"shop": FeatureSet()},
                      {"last_items": scorer, "popularity": pop},
                      {"weighted": WeightedBlender()}, None, {"shop": catalogue}, train, test,
                      cutoff, k=5, progress=False, keep_lists=True)
    assert "last_items" in result.metrics["shop"]
    first = LastItems.seen[0]
    user = sorted(result.lists["shop"])[0]
    mine = train[(train[C.USER_ID] == user) & (train[C.SCENARIO] == "shop")]
    expected = mine.sort_values(C.EVENT_TIMESTAMP, kind="stable").tail(3)
    assert first.item_ids[0].tolist() == expected[C.ITEM_ID].tolist()
    assert first.values[:3].tolist() == expected[C.VALUE].tolist()
    assert (pd.to_datetime(first.timestamps) < cutoff.tz_localize(None)).all()


def test_feedback_that_training_read_is_not_served_twice(registry, tmp_path):
    data = tiny_training_data()
    shop = data.scenarios["shop"]
    user, _ = active_user(data, shop)
    feedback = FeedbackLog(tmp_path / "feedback.db")
    stamp = "2025-04-01T12:00:00+00:00"  # after the tiny world ends
    read = {"request_id": "r1", C.USER_ID: user, C.ITEM_ID: "s00007", C.SCENARIO: "shop",
            C.EVENT_TYPE: "purchase", C.VALUE: 1.0, C.EVENT_TIMESTAMP: stamp}
    feedback.append([read], stamp)  # row 1: joins the training data below
    events = pd.concat([data.events, pd.DataFrame([read]).drop(columns="request_id").assign(
        **{C.EVENT_TIMESTAMP: pd.Timestamp(stamp)})], ignore_index=True)
    later = {**read, C.ITEM_ID: "s00009", C.EVENT_TIMESTAMP: "2025-04-01T13:00:00+00:00"}
    feedback.append([later], stamp)  # row 2: after training
    scorer, pop = LastItems(), PopularityScorer()
    scorer.fit(data)
    pop.fit(data)
    plan = ScenarioPlan(scorers=["last_items"], candidate_sources=["popularity"],
                        blender="weighted", fallback="popularity", sequence_length=4)
    write_bundle(tmp_path, "v2", BundleContents(
        plans={"shop": plan}, components={"last_items": scorer, "popularity": pop},
        blenders={"weighted": WeightedBlender()},
        history=H.seen_pairs(events, {"shop": shop}),
        sequences=H.recent_events(events, {"shop": 4}),
        catalogue=data.items[[C.ITEM_ID, C.SCENARIO]], manifest={"feedback_until": 1}))
    rec = Recommender(Bundle.load(tmp_path, "v2"), lambda: None, feedback)
    LastItems.seen.clear()
    rec.recommend(user, "shop", 5)
    [sequences] = LastItems.seen
    assert sequences.item_ids[0].tolist()[-2:] == ["s00007", "s00009"]
    assert sequences.item_ids[0].tolist().count("s00007") == 1
    assert rec.user_history(user, shop, feedback.events_of(user, "shop", 1), []).count(
        "s00007") == 1
