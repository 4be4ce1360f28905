"""``freshness``: how much a reader wants an article now, from its topic and its age.

A reader's taste is the topics of their most recent news events (``ScoreBatch.sequences``),
smoothed toward the topics everyone reads; an article's appeal fades with its age, measured
from its publication (the ``news_article`` view) to when the batch is scored. The score of
task ``read`` is the log of their product,

    log P(topic | reader) - age_hours / scale

where ``scale`` is fit as the mean time from an article's publication to its reads in
training (a heuristic: it is the decay's scale when articles appear at a steady pace, and
larger when they are few and far between). The same component is a candidate source: the
newest articles of its training data, newest first, which collaborative sources barely know.

Both know the articles of their last training run: an article published since is scored
from its features (topic and age) when another source or the request's ``candidates``
bring it, and its reads do not yet count towards a reader's taste. Retrain a news feed
often (hourly, say) to keep the source's newest articles new.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from hybridrec import CandidateSource, IdIndex, Ragged, Scorer
from hybridrec import columns as C
from hybridrec_news.articles import (
    PUBLISHED_AT,
    PUBLISHED_COLUMN,
    REFS,
    TOPIC,
    TOPIC_COLUMN,
    articles,
)
from hybridrec_news.scenario import NEWS, READ

if TYPE_CHECKING:
    from hybridrec import RetrievalBatch, Scenario, ScoreBatch, TrainingData

HOUR_US = 3_600_000_000


def hours(times: Any) -> np.ndarray:
    """``times`` (datetimes, Timestamps or None, any zone) as hours since 1970 UTC, NaN where
    a time is missing."""
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(np.asarray(times, dtype=object), dtype=object),
                            utc=True, errors="coerce")
    micros = stamps.dt.tz_localize(None).to_numpy("datetime64[us]")
    out = micros.astype(np.int64).astype(float) / HOUR_US
    out[np.isnat(micros)] = np.nan
    return out


def hours_since(as_of: np.datetime64, times: Any) -> np.ndarray:
    """Hours from ``times`` to ``as_of`` (naive UTC), NaN where a time is missing or later
    than ``as_of`` (an article not yet published then)."""
    now = np.datetime64(as_of, "us").astype(np.int64) / HOUR_US
    age = now - hours(times)
    age[age < 0] = np.nan
    return age


class Freshness(Scorer, CandidateSource):
    """Topic taste times freshness, for the ``news`` scenario. Config: ``smoothing`` (how
    many events' worth of everyone's topic shares a reader's own are mixed with, default 3),
    ``pool`` (how many of the newest articles the candidate source keeps, default 2000)."""

    name = "freshness"
    tasks = (READ,)
    feature_refs = REFS
    sequence_length = 50

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.smoothing = float(config.get("smoothing", 3.0))
        self.pool = int(config.get("pool", 2000))
        if not self.smoothing > 0 or self.pool < 1:
            raise ValueError(f"freshness: smoothing must be above 0 and pool at least 1, got "
                             f"smoothing={self.smoothing}, pool={self.pool}")
        self.topics = np.array([], dtype=object)
        self.prior = np.array([], dtype=float)
        self.scale_hours = 24.0
        self.items = IdIndex(np.array([], dtype=str))
        self.item_topics = np.array([], dtype=np.int64)
        self.newest = np.array([], dtype=str)

    def supports(self, scenario: Scenario) -> bool:
        return scenario.name == NEWS.name

    def describe(self) -> dict[str, Any]:
        return {**self.config, "scale_hours": round(self.scale_hours, 2),
                "topics": len(self.topics)}

    # fitting ------------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> None:
        events = data.scenario_events(NEWS.name)
        table = articles(data.events, data.items)
        self.topics = np.array(sorted(set(table[TOPIC].dropna().astype(str))), dtype=object)
        self.items = IdIndex(table[C.ITEM_ID].astype(str).to_numpy())
        self.item_topics = self._codes(table[TOPIC].to_numpy(dtype=object))
        read = events[events[C.EVENT_TYPE] == READ]
        pos = self.items.positions(read[C.ITEM_ID].astype(str).to_numpy())
        topic = self.item_topics[pos[pos >= 0]]  # reads of articles it has a topic for
        counts = np.bincount(topic[topic >= 0], minlength=len(self.topics)).astype(float)
        self.prior = (counts + 1.0) / (counts.sum() + len(self.topics))
        if PUBLISHED_COLUMN in read and len(read):
            gap = hours(read[C.EVENT_TIMESTAMP]) - hours(read[PUBLISHED_COLUMN])
            gap = gap[np.isfinite(gap)]
            if len(gap):
                self.scale_hours = float(np.clip(gap.mean(), 1.0, 24.0 * 60))
        # the newest articles published by the end of the data, newest first
        if len(data.events) and len(table):
            import pandas as pd

            end = pd.to_datetime(data.events[C.EVENT_TIMESTAMP], utc=True).max()
            age = hours_since(np.datetime64(end.tz_convert(None).to_datetime64(), "us"),
                              table[PUBLISHED_AT])
            published = pd.to_datetime(table[PUBLISHED_AT], utc=True)
            known = (published <= end).to_numpy()
            order = np.argsort(age[known], kind="stable")[: self.pool]
            self.newest = table[C.ITEM_ID].astype(str).to_numpy()[known][order]

    def _codes(self, topics: np.ndarray) -> np.ndarray:
        """Topic names (None where unknown) as positions in ``self.topics``, -1 where none."""
        import pandas as pd

        return pd.Index(self.topics).get_indexer(np.asarray(topics, dtype=object)
                                                 ).astype(np.int64)

    # scoring ------------------------------------------------------------------------------
    def taste(self, batch: ScoreBatch) -> np.ndarray:
        """Per request, the log probability of each topic."""
        n_topics = len(self.topics)
        counts = np.zeros((batch.n_requests, n_topics))
        sequences = batch.sequences
        if sequences is not None and len(sequences.item_ids.values) and n_topics:
            pos = self.items.positions(sequences.item_ids.values)
            topic = np.where(pos >= 0, self.item_topics[pos.clip(0)], -1)
            rows = sequences.item_ids.row_index()
            ok = topic >= 0
            counts = np.bincount(rows[ok] * n_topics + topic[ok],
                                 minlength=batch.n_requests * n_topics
                                 ).reshape(batch.n_requests, n_topics).astype(float)
        mixed = counts + self.smoothing * self.prior
        return np.log(mixed / mixed.sum(axis=1, keepdims=True))

    def score(self, batch: ScoreBatch) -> dict[str, np.ndarray]:
        out = np.full(len(batch), np.nan)
        if not len(batch) or not len(self.topics):
            return {READ: out}
        topic = self._codes(np.asarray(batch.item_features.get(
            TOPIC_COLUMN, np.full(len(batch), None, dtype=object)), dtype=object))
        age = hours_since(batch.as_of, batch.item_features.get(
            PUBLISHED_COLUMN, np.full(len(batch), None, dtype=object)))
        ok = (topic >= 0) & np.isfinite(age)
        taste = self.taste(batch)
        out[ok] = taste[batch.request[ok], topic[ok]] - age[ok] / self.scale_hours
        return {READ: out}

    # retrieval ----------------------------------------------------------------------------
    def retrieve(self, batch: RetrievalBatch, n: int) -> Ragged:
        """The ``n`` newest articles not excluded, per request."""
        take = min(len(self.newest), n + int(batch.exclude.lengths.max(initial=0)))
        head = self.newest[:take]
        keep = np.ones((len(batch), take), dtype=bool)
        if len(batch.exclude.values) and take:
            pos = IdIndex(head).positions(batch.exclude.values)
            found = pos >= 0
            keep[batch.exclude.row_index()[found], pos[found]] = False
        grid = np.tile(head, len(batch))
        keep = keep.ravel()
        kept = Ragged(grid, np.arange(len(batch) + 1, dtype=np.int64) * take).mask(keep)
        first = np.arange(len(kept.values)) - np.repeat(kept.offsets[:-1], kept.lengths)
        return kept.mask(first < n)

    # persistence --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        np.savez(path / "freshness.npz", topics=self.topics.astype(str), prior=self.prior,
                 items=self.items.ids.astype(str), item_topics=self.item_topics,
                 newest=self.newest.astype(str))
        (path / "freshness.json").write_text(json.dumps(
            {"config": self.config, "scale_hours": self.scale_hours}))

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = json.loads((path / "freshness.json").read_text())
        model = cls(**meta["config"])
        model.scale_hours = float(meta["scale_hours"])
        with np.load(path / "freshness.npz", allow_pickle=False) as arrays:
            model.topics = arrays["topics"].astype(object)
            model.prior = arrays["prior"]
            model.items = IdIndex(arrays["items"])
            model.item_topics = arrays["item_topics"]
            model.newest = arrays["newest"]
        return model
