"""``news_article``: each article's topic and publication time, as a table every data command
derives and a Feast view keyed by item.

An article is published when the catalogue first lists it (its row's ``event_timestamp`` in
the item table), or when it is first read if that is earlier. The row is stamped with that
time, so a point-in-time join sees an article only from its publication on, and the online
store holds every published article, read or not.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridrec import DerivedTable
from hybridrec import columns as C

if TYPE_CHECKING:
    import pandas as pd

VIEW = "news_article"
TOPIC, PUBLISHED_AT = "topic", "published_at"
REFS = (f"{VIEW}:{TOPIC}", f"{VIEW}:{PUBLISHED_AT}")
#: The columns these features arrive in (``view__feature``).
TOPIC_COLUMN, PUBLISHED_COLUMN = (f"{VIEW}__{TOPIC}", f"{VIEW}__{PUBLISHED_AT}")
SCENARIO = "news"


class NewsArticles(DerivedTable):
    name = VIEW

    def derive(self, events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
        return articles(events, items)


def articles(events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One row per news article of ``items``: its topic (the item's ``category``) and when it
    was published."""
    import pandas as pd

    news = items[items[C.SCENARIO] == SCENARIO]
    if not len(news):  # typed, so that Parquet does not store null columns
        return empty_table().to_pandas().astype({C.ITEM_ID: "string", TOPIC: "string"})
    listed = pd.Series(pd.to_datetime(news[C.EVENT_TIMESTAMP], utc=True).to_numpy(),
                       index=news[C.ITEM_ID].astype(str).to_numpy())
    reads = events[events[C.SCENARIO] == SCENARIO]
    first = pd.to_datetime(reads[C.EVENT_TIMESTAMP], utc=True).groupby(
        reads[C.ITEM_ID].astype(str).to_numpy()).min()
    published = listed.where(~(first.reindex(listed.index) < listed),
                             first.reindex(listed.index))
    published = pd.to_datetime(published, utc=True)
    return pd.DataFrame({
        C.ITEM_ID: pd.array(listed.index.to_numpy(), dtype="string"),
        TOPIC: pd.array(news["category"].astype(object).where(news["category"].notna(), None)
                        .to_numpy(), dtype="string"),
        PUBLISHED_AT: published.reset_index(drop=True),
        C.EVENT_TIMESTAMP: published.reset_index(drop=True),
    })


def empty_table() -> Any:
    import pyarrow as pa

    return pa.table({
        C.ITEM_ID: pa.array([], pa.string()),
        TOPIC: pa.array([], pa.string()),
        PUBLISHED_AT: pa.array([], pa.timestamp("us", tz="UTC")),
        C.EVENT_TIMESTAMP: pa.array([], pa.timestamp("us", tz="UTC")),
    })


def ensure_table(repo: Path) -> Path:
    """The view's Parquet file, written empty when the repository's data predates this
    plugin (Feast reads it when joining or materialising)."""
    import pyarrow.parquet as pq

    path = Path(repo) / "data" / NewsArticles.file()
    if not path.exists() and path.parent.is_dir():
        pq.write_table(empty_table(), str(path))
    return path


def feature_view(repo_path: Path | None) -> Any:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import String, UnixTimestamp

    path = str(ensure_table(repo_path)) if repo_path is not None else \
        f"data/{NewsArticles.file()}"
    source = FileSource(name=f"{VIEW}_source", path=path, timestamp_field=C.EVENT_TIMESTAMP)
    item = Entity(name=C.ITEM_ENTITY, join_keys=[C.ITEM_ID], value_type=ValueType.STRING)
    return FeatureView(
        name=VIEW,
        entities=[item],
        ttl=timedelta(0),
        schema=[Field(name=TOPIC, dtype=String), Field(name=PUBLISHED_AT, dtype=UnixTimestamp)],
        source=source,
        online=True,
        description="Each news article's topic and publication time (hybridrec-news).",
    )
