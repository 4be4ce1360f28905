"""hybridrec-news: the conformance kit for each of its components, and what it is for:
readers get their topics, fresh articles before stale ones, and a scale of freshness learnt
from the log."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("hybridrec_news", reason="hybridrec-news is not installed in this "
                    "environment (hybridrec's tests/test_news_plugin.py installs it into one "
                    "of its own and runs these tests there)")

from hybridrec_news.articles import PUBLISHED_COLUMN, TOPIC_COLUMN, articles  # noqa: E402
from hybridrec_news.scenario import NEWS  # noqa: E402
from hybridrec_news.scorer import Freshness  # noqa: E402
from hybridrec_news.world import FRESHNESS_HOURS, NewsWorld  # noqa: E402

from hybridrec import EventSequences, Ragged, ScoreBatch  # noqa: E402
from hybridrec import columns as C  # noqa: E402
from hybridrec.testing import (  # noqa: E402
    CandidateSourceContract,
    ScenarioContract,
    ScorerContract,
    SyntheticScenarioContract,
    tiny_training_data,
)


@pytest.fixture(scope="module")
def news_data():
    return tiny_training_data(users=120, items=40, events=8000, scenarios=("news",))


class TestNewsScenario(ScenarioContract):
    @pytest.fixture
    def scenario(self):
        return NEWS

    @pytest.fixture
    def data(self, news_data):
        return news_data


class TestNewsWorld(SyntheticScenarioContract):
    @pytest.fixture
    def synthetic(self):
        return NewsWorld()


class TestFreshnessScorer(ScorerContract):
    @pytest.fixture
    def scorer(self):
        return Freshness()

    @pytest.fixture
    def data(self, news_data):
        return news_data


class TestFreshnessSource(CandidateSourceContract):
    @pytest.fixture
    def source(self):
        return Freshness()

    @pytest.fixture
    def data(self, news_data):
        return news_data


@pytest.fixture(scope="module")
def busy_news():
    """Enough articles (400 over 8 weeks, about 7 a day) for topics to matter among the
    fresh ones."""
    return tiny_training_data(users=300, items=200, events=30000, scenarios=("news",))


def with_published(data, events):
    """``events`` with ``news_article:published_at`` joined, as training joins it."""
    table = articles(data.events, data.items).set_index(C.ITEM_ID)
    return events.assign(**{PUBLISHED_COLUMN: table["published_at"].reindex(
        events[C.ITEM_ID]).to_numpy()})


def fit(data, events, **config):
    model = Freshness(**config)
    model.fit(type(data)(events=with_published(data, events), items=data.items,
                         users=data.users, scenarios=data.scenarios))
    return model


def test_scale_of_freshness_is_learnt_from_the_log(busy_news):
    model = fit(busy_news, busy_news.events)
    # the world's readers lose interest by e every FRESHNESS_HOURS; with articles appearing
    # at a steady pace, reads come on average about that long after publication
    assert 0.8 * FRESHNESS_HOURS < model.scale_hours < 1.3 * FRESHNESS_HOURS, model.scale_hours
    assert sorted(model.topics) == sorted(busy_news.items["category"].unique())


def test_readers_get_their_topics_and_fresh_articles_first(news_data):
    model = Freshness()
    model.fit(news_data)
    sport = news_data.items.loc[news_data.items["category"] == "sport", C.ITEM_ID].tolist()
    now = np.datetime64("2025-03-30T12:00:00", "us")
    hour = np.timedelta64(1, "h")
    published = np.array([now - hour, now - 40 * hour, now - hour], dtype="datetime64[us]")
    batch = ScoreBatch.one(
        NEWS, "a-sports-fan", ["fresh-sport", "old-sport", "fresh-politics"],
        item_features={TOPIC_COLUMN: np.array(["sport", "sport", "politics"], dtype=object),
                       PUBLISHED_COLUMN: published.astype(object)},
        sequences=EventSequences(Ragged.single(np.array(sport[:6], dtype=str)),
                                 np.full(6, now - 50 * hour), np.full(6, "read", dtype=object),
                                 np.ones(6)),
        as_of=now)
    fresh_sport, old_sport, fresh_politics = model.score(batch)["read"]
    assert fresh_sport > fresh_politics, "a reader of sport gets sport first"
    assert fresh_sport > old_sport, "of one topic, the fresher article first"
    np.testing.assert_allclose(fresh_sport - old_sport, 39 / model.scale_hours)


def auc_of_next_reads(data, model, cutoff, known):
    """Per reader of the day after ``cutoff``, the AUC of ``model``'s scores of the
    ``known`` articles (the ones they read against the others); the mean over readers."""
    events = data.events
    nxt = events[(events[C.EVENT_TIMESTAMP] > cutoff)
                 & (events[C.EVENT_TIMESTAMP] <= cutoff + pd.Timedelta(days=1))
                 & events[C.ITEM_ID].isin(known[C.ITEM_ID])]
    past = events[events[C.EVENT_TIMESTAMP] <= cutoff].sort_values(C.EVENT_TIMESTAMP)
    recent = past.groupby(C.USER_ID)[C.ITEM_ID].apply(list)
    ids = known[C.ITEM_ID].to_numpy(str)
    as_of = np.datetime64(cutoff.tz_convert(None).to_datetime64(), "us")
    aucs = []
    for reader in nxt[C.USER_ID].unique():
        history = np.asarray(recent.get(reader, [])[-50:], dtype=str)
        batch = ScoreBatch.one(
            NEWS, reader, ids, as_of=as_of,
            item_features={TOPIC_COLUMN: known["topic"].to_numpy(object),
                           PUBLISHED_COLUMN: known["published_at"].to_numpy(object)},
            sequences=EventSequences(Ragged.single(history), np.full(len(history), as_of),
                                     np.full(len(history), "read", dtype=object),
                                     np.ones(len(history))))
        scores = model.score(batch)["read"]
        read = np.isin(ids, nxt.loc[nxt[C.USER_ID] == reader, C.ITEM_ID])
        if read.any() and (~read).any():
            aucs.append((scores[read][:, None] > scores[~read][None, :]).mean())
    assert len(aucs) >= 30, len(aucs)
    return float(np.mean(aucs))


def test_ranks_the_next_days_reads_by_freshness_and_by_the_readers_topics(busy_news):
    """Fit on all but the last two days. Of the articles published by then, each reader's
    next-day reads rank far above the rest; among the last three days' articles, where age
    tells less, the reader's topics lift the ranking well above freshness alone."""
    cutoff = busy_news.events[C.EVENT_TIMESTAMP].max() - pd.Timedelta(days=2)
    past = busy_news.events[busy_news.events[C.EVENT_TIMESTAMP] <= cutoff]
    model = fit(busy_news, past)
    no_taste = fit(busy_news, past, smoothing=1e9)  # everyone's topic shares only
    table = articles(past, busy_news.items)
    known = table[table["published_at"] <= cutoff]
    assert auc_of_next_reads(busy_news, model, cutoff, known) > 0.95
    fresh = known[known["published_at"] > cutoff - pd.Timedelta(days=3)]
    with_taste = auc_of_next_reads(busy_news, model, cutoff, fresh)
    without = auc_of_next_reads(busy_news, no_taste, cutoff, fresh)
    assert with_taste > 0.8 and with_taste > without + 0.08, (with_taste, without)


def test_an_article_is_published_when_listed_or_first_read_if_earlier():
    items = pd.DataFrame({C.ITEM_ID: ["a", "b", "c"], C.SCENARIO: "news",
                          "category": ["sport", None, "science"],
                          C.EVENT_TIMESTAMP: pd.to_datetime(
                              ["2025-01-02", "2025-01-02", "2025-01-05"], utc=True)})
    events = pd.DataFrame({C.USER_ID: ["u", "u"], C.ITEM_ID: ["a", "b"],
                           C.SCENARIO: "news", C.EVENT_TYPE: "read", C.VALUE: 1.0,
                           C.EVENT_TIMESTAMP: pd.to_datetime(["2025-01-03", "2025-01-01"],
                                                             utc=True)})
    table = articles(events, items).set_index(C.ITEM_ID)
    assert table.loc["a", "published_at"] == pd.Timestamp("2025-01-02", tz="UTC")
    assert table.loc["b", "published_at"] == pd.Timestamp("2025-01-01", tz="UTC")
    assert table.loc["c", "published_at"] == pd.Timestamp("2025-01-05", tz="UTC")
    assert table["topic"].isna().tolist() == [False, True, False]
    assert table.loc["a", "topic"] == "sport"
    assert (table[C.EVENT_TIMESTAMP] == table["published_at"]).all()
