"""``user_category_clicks``: each user's impressions and clicks per item category so far, as
daily snapshots (a derived table every data command writes) and a Feast view keyed by user.

A snapshot row holds, for one user at the end of one day on which they saw or clicked
anything, three aligned arrays: the categories they have been shown, and their running
impression and click counts in each. It is stamped at the end of its day, so a
point-in-time join at time t sees only days that had finished by t: no click from after an
impression reaches that impression's training row. The online store holds each user's latest
snapshot, which is what serving reads.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import DerivedTable

if TYPE_CHECKING:
    import pandas as pd

VIEW = "user_category_clicks"
CATEGORIES, IMPRESSIONS, CLICKS = "categories", "impressions", "clicks"
FIELDS = (CATEGORIES, IMPRESSIONS, CLICKS)
REFS = tuple(f"{VIEW}:{f}" for f in FIELDS)
COLUMNS = tuple(f"{VIEW}__{f}" for f in FIELDS)
#: The events counted: an item shown, an item clicked.
IMPRESSION, CLICK = "impression", "click"


class UserCategoryClicks(DerivedTable):
    name = VIEW

    def derive(self, events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
        return snapshots(events, items)


def snapshots(events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Daily snapshots of every user's running impressions and clicks per category."""
    import pandas as pd

    e = events[events[C.EVENT_TYPE].isin([IMPRESSION, CLICK])]
    cats = items[[C.ITEM_ID, C.SCENARIO, "category"]].drop_duplicates([C.ITEM_ID, C.SCENARIO])
    e = e[[C.USER_ID, C.ITEM_ID, C.SCENARIO, C.EVENT_TYPE, C.EVENT_TIMESTAMP]].merge(
        cats, on=[C.ITEM_ID, C.SCENARIO], how="inner")
    e = e[e["category"].notna()]
    if not len(e):
        return empty_frame()
    day = pd.to_datetime(e[C.EVENT_TIMESTAMP], utc=True).dt.floor("D")
    frame = pd.DataFrame({C.USER_ID: e[C.USER_ID].astype(str).to_numpy(), "day": day.to_numpy(),
                          "category": e["category"].astype(str).to_numpy(),
                          "imp": (e[C.EVENT_TYPE] == IMPRESSION).to_numpy(np.int64),
                          "clk": (e[C.EVENT_TYPE] == CLICK).to_numpy(np.int64)})
    daily = frame.groupby([C.USER_ID, "day", "category"], sort=True)[["imp", "clk"]].sum()
    # running totals per (user, category), then every category a user has so far on each of
    # their days: a (user, day) x category table, cumulated per user
    wide = daily.unstack("category", fill_value=0)
    wide = wide.groupby(level=C.USER_ID, sort=False).cumsum()
    names = np.asarray(wide["imp"].columns, dtype=object)
    imp, clk = wide["imp"].to_numpy(np.int64), wide["clk"].to_numpy(np.int64)
    seen = (imp > 0) | (clk > 0)
    index = wide.index.to_frame(index=False)
    return pd.DataFrame({
        C.USER_ID: index[C.USER_ID].to_numpy(),
        CATEGORIES: [names[m].tolist() for m in seen],
        IMPRESSIONS: [r[m].tolist() for r, m in zip(imp, seen, strict=True)],
        CLICKS: [r[m].tolist() for r, m in zip(clk, seen, strict=True)],
        C.EVENT_TIMESTAMP: (index["day"] + pd.Timedelta(days=1)
                            - pd.Timedelta(microseconds=1)).to_numpy(),
    })


def empty_frame() -> pd.DataFrame:
    return empty_table().to_pandas()


def empty_table() -> Any:
    import pyarrow as pa

    return pa.table({
        C.USER_ID: pa.array([], pa.string()),
        CATEGORIES: pa.array([], pa.list_(pa.string())),
        IMPRESSIONS: pa.array([], pa.list_(pa.int64())),
        CLICKS: pa.array([], pa.list_(pa.int64())),
        C.EVENT_TIMESTAMP: pa.array([], pa.timestamp("us", tz="UTC")),
    })


def ensure_table(repo: Path) -> Path:
    """The view's Parquet file, created empty when a repository's data was written before
    this plugin was installed (Feast reads it when joining or materialising)."""
    import pyarrow.parquet as pq

    path = Path(repo) / "data" / UserCategoryClicks.file()
    if not path.exists() and path.parent.is_dir():
        pq.write_table(empty_table(), str(path))
    return path


def feature_view(repo_path: Path | None) -> Any:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Int64, String

    if repo_path is not None:
        path = str(ensure_table(repo_path))
    else:
        path = f"data/{UserCategoryClicks.file()}"
    source = FileSource(name=f"{VIEW}_source", path=path, timestamp_field=C.EVENT_TIMESTAMP)
    user = Entity(name=C.USER_ENTITY, join_keys=[C.USER_ID], value_type=ValueType.STRING)
    return FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(0),
        schema=[Field(name=CATEGORIES, dtype=Array(String)),
                Field(name=IMPRESSIONS, dtype=Array(Int64)),
                Field(name=CLICKS, dtype=Array(Int64))],
        source=source,
        online=True,
        description="Each user's running impressions and clicks per item category, as daily "
                    "snapshots stamped at the end of their day (hybridrec-ctr).",
    )


def lookup(categories: Any, impressions: Any, clicks: Any) -> dict[str, tuple[int, int]]:
    """One snapshot (three aligned arrays, or None) as ``{category: (impressions, clicks)}``."""
    if categories is None or impressions is None or clicks is None:
        return {}
    return {str(c): (int(i), int(k))
            for c, i, k in zip(categories, impressions, clicks, strict=False)}
