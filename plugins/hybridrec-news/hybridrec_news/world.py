"""The news part of the synthetic world: articles that age fast, readers with topic tastes.

Articles are published at random through the world's span (one in twenty in the two days
before it, so the first reader has something to read), each on one topic, with a title and
text from the topic's words. The world's users read as often as their activity says, at
random times, an article among those published by the start of that hour, with probability
proportional to

    taste[user, topic] * exp(quality) * exp(-age / FRESHNESS_HOURS)

so a reader wants their topics and today's news; a read is shared now and then, more often
when the reader's taste for its topic is strong. Articles are listed in the item table at
their publication time (the row's ``event_timestamp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hybridrec import SyntheticScenario
from hybridrec import columns as C
from hybridrec_news.scenario import NEWS, READ, SHARE

if TYPE_CHECKING:
    import pandas as pd

    from hybridrec import SyntheticWorld

TOPICS: dict[str, tuple[str, ...]] = {
    "politics": ("election", "parliament", "minister", "vote", "coalition", "policy"),
    "sport": ("match", "league", "goal", "coach", "transfer", "final"),
    "technology": ("startup", "chip", "software", "robot", "smartphone", "cloud"),
    "science": ("telescope", "species", "climate", "vaccine", "fossil", "quantum"),
    "business": ("earnings", "merger", "inflation", "shares", "retail", "exports"),
    "culture": ("festival", "premiere", "museum", "novelist", "gallery", "band"),
    "health": ("hospital", "diet", "sleep", "clinic", "study", "fitness"),
    "weather": ("storm", "heatwave", "flood", "forecast", "snow", "drought"),
}
#: How fast interest fades: an article's appeal shrinks by e every this many hours.
FRESHNESS_HOURS = 30.0
#: Reads as a share of the world's event budget; articles per item of a built-in catalogue.
READ_SHARE, ARTICLES_PER_ITEM = 0.3, 2.0


class NewsWorld(SyntheticScenario):
    name = NEWS.name

    def generate(self, world: SyntheticWorld) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = world.rng(self.name)
        span = (world.end - world.start).total_seconds()
        articles = _articles(rng, max(len(TOPICS), round(world.items * ARTICLES_PER_ITEM)),
                             span)
        users = world.users[C.USER_ID].astype(str).to_numpy()
        taste = rng.dirichlet(np.full(len(TOPICS), 0.35), size=len(users))
        activity = rng.lognormal(0.0, 0.8, size=len(users))
        n_reads = max(1, round(world.events * READ_SHARE))
        readers = rng.choice(len(users), size=n_reads, p=activity / activity.sum())
        at = np.sort(rng.uniform(0.0, span, size=n_reads))  # in time order
        read = _choose(rng, articles, taste[readers], at)
        strength = taste[readers, articles.topic[read]]
        shared = rng.random(n_reads) < 1 / (1 + np.exp(-(-3.5 + 4.0 * strength
                                                         + articles.quality[read])))
        share_at = at[shared] + 120.0
        keep = share_at <= span
        import pandas as pd

        def events(rows: np.ndarray, items: np.ndarray, seconds: np.ndarray,
                   kind: str) -> pd.DataFrame:
            return pd.DataFrame({
                C.USER_ID: users[rows], C.ITEM_ID: articles.ids[items], C.SCENARIO: self.name,
                C.EVENT_TYPE: kind, C.VALUE: 1.0,
                C.EVENT_TIMESTAMP: world.start + pd.to_timedelta(seconds, unit="s")})

        frames = [events(readers, read, at, READ),
                  events(readers[shared][keep], read[shared][keep], share_at[keep], SHARE)]
        names = np.asarray(list(TOPICS), dtype=object)
        items = pd.DataFrame({
            C.ITEM_ID: articles.ids, C.SCENARIO: self.name,
            "category": names[articles.topic], "title": articles.titles,
            "text": articles.texts,
            C.EVENT_TIMESTAMP: world.start + pd.to_timedelta(articles.published, unit="s")})
        return items, pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class _Articles:
    ids: np.ndarray
    topic: np.ndarray
    published: np.ndarray  # seconds from the world's start
    quality: np.ndarray
    titles: list[str]
    texts: list[str]


def _articles(rng: np.random.Generator, n: int, span: float) -> _Articles:
    """``n`` articles, ids in publication order, published through the world's span (seconds
    from its start), one in twenty (at least one) in the two days before it."""
    early = max(1, n // 20)
    published = np.sort(np.r_[rng.uniform(-2 * 86400.0, 0.0, size=early),
                              rng.uniform(0.0, span, size=n - early)])
    topic = rng.integers(0, len(TOPICS), size=n)
    words = [np.asarray(TOPICS[t]) for t in TOPICS]
    picks = [words[t][rng.integers(0, len(words[t]), size=4)] for t in topic]
    titles = [f"{p[0].capitalize()} {p[1]}: what the {p[2]} means" for p in picks]
    texts = [f"{title}. Reporting on the {p[3]} and the {p[0]}, with reactions to the {p[1]}."
             for title, p in zip(titles, picks, strict=True)]
    ids = np.array([f"n{i:05d}" for i in range(n)])
    return _Articles(ids, topic, published, rng.normal(0.0, 0.5, size=n), titles, texts)


def _choose(rng: np.random.Generator, articles: _Articles, taste: np.ndarray,
            at: np.ndarray) -> np.ndarray:
    """For each read at ``at`` (seconds, sorted) by a reader of ``taste`` (a row per read),
    an article published by then: a topic by taste times the topic's total appeal that hour,
    then an article of that topic by its appeal."""
    out = np.empty(len(at), dtype=np.int64)
    hours = (at // 3600).astype(np.int64)
    bounds = np.searchsorted(hours, np.unique(hours), side="left").tolist() + [len(at)]
    n_topics = len(TOPICS)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):  # one pass per hour
        now = hours[start] * 3600.0
        live = np.flatnonzero(articles.published <= now)
        appeal = np.exp(articles.quality[live] - (now - articles.published[live])
                        / (FRESHNESS_HOURS * 3600))
        by_topic = np.bincount(articles.topic[live], appeal, minlength=n_topics)
        weights = taste[start:stop] * by_topic
        cdf = np.cumsum(weights, axis=1)
        draws = rng.random(stop - start) * cdf[:, -1]
        chosen = np.minimum((cdf < draws[:, None]).sum(axis=1), n_topics - 1)
        # live articles grouped by topic: topic t's block is [first[t], last[t]) of ``order``
        order = np.argsort(articles.topic[live], kind="stable")
        cumulative = np.concatenate([[0.0], np.cumsum(appeal[order])])
        last = np.searchsorted(articles.topic[live][order], np.arange(n_topics), side="right")
        first = np.r_[0, last[:-1]]
        low, high = cumulative[first[chosen]], cumulative[last[chosen]]
        target = low + rng.random(stop - start) * (high - low)
        pick = np.searchsorted(cumulative, target, side="right") - 1
        pick = np.clip(pick, first[chosen], last[chosen] - 1)
        out[start:stop] = live[order[pick]]
    return out
