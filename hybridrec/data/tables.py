"""The Parquet tables the data commands write, their schemas, and how every loader writes them.

A loader produces three frames (events, users, items; ``ads`` optionally) in the schema of
``hybridrec.columns`` (events may carry the optional context columns: slot position, logging
policy, propensity); ``write_dataset`` derives the daily activity and popularity snapshots
from the events and writes everything under ``feature_repo/data/`` with microsecond UTC
timestamps (DuckDB's offline store cannot cast nanosecond tz-aware columns). Their schemas
are in ``hybridrec.data.schema``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec.data.schema import (
    ADS,
    ITEM_ATTRIBUTES,
    ITEM_POPULARITY,
    USER_ACTIVITY,
    USER_SEGMENTS,
    Table,
)

TS_DTYPE = "datetime64[us, UTC]"

EVENT_COLUMNS = [C.USER_ID, C.ITEM_ID, C.SCENARIO, C.EVENT_TYPE, C.VALUE, C.EVENT_TIMESTAMP]


@dataclass
class Dataset:
    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    ads: pd.DataFrame | None = None
    #: Anonymised user and item attributes (``schema.USER_SEGMENTS``, ``ITEM_ATTRIBUTES``).
    user_segments: pd.DataFrame | None = None
    item_attributes: pd.DataFrame | None = None
    #: Known click probabilities of impressions (synthetic data only); never written.
    truth: pd.DataFrame | None = None


def as_utc_us(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype(TS_DTYPE)


def _daily_snapshots(events: pd.DataFrame, key: str, positive: pd.Series | None) -> pd.DataFrame:
    """Per ``key`` and day with events: running totals and a trailing 7-day count.

    Each snapshot is stamped at the end of its day, so a point-in-time join at time t sees
    only days that had finished by t.
    """
    day = events[C.EVENT_TIMESTAMP].dt.floor("D")
    frame = pd.DataFrame({key: events[key].to_numpy(), "day": day.to_numpy(),
                          "item": events[C.ITEM_ID].to_numpy(),
                          "pos": (positive if positive is not None else
                                  pd.Series(0, index=events.index)).to_numpy(int)})
    daily = frame.groupby([key, "day"], sort=True).agg(n=("item", "size"), pos=("pos", "sum"))
    daily = daily.reset_index()
    grouped = daily.groupby(key, sort=False)
    daily["events_total"] = grouped["n"].cumsum()
    daily["positives_total"] = grouped["pos"].cumsum()
    # trailing 7 days (inclusive of the day itself) from a time-based rolling window
    rolled = (
        daily.set_index("day").groupby(key, sort=False)["n"].rolling("7D").sum()
        .reset_index(level=0, drop=True)
    )
    daily["events_7d"] = rolled.to_numpy().astype("int64")
    first_seen = frame.sort_values("day").drop_duplicates([key, "item"])
    new_items = first_seen.groupby([key, "day"]).size().rename("new_items")
    daily = daily.merge(new_items.reset_index(), on=[key, "day"], how="left")
    daily["items_total"] = daily["new_items"].fillna(0).astype("int64").groupby(
        daily[key]).cumsum()
    daily[C.EVENT_TIMESTAMP] = daily["day"] + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return daily


def user_activity(events: pd.DataFrame) -> pd.DataFrame:
    daily = _daily_snapshots(events, C.USER_ID, None)
    cols = [C.USER_ID, *USER_ACTIVITY.fields, C.EVENT_TIMESTAMP]
    return daily[cols]


def item_popularity(events: pd.DataFrame, positive: pd.Series) -> pd.DataFrame:
    daily = _daily_snapshots(events, C.ITEM_ID, positive)
    cols = [C.ITEM_ID, *ITEM_POPULARITY.fields, C.EVENT_TIMESTAMP]
    return daily[cols]


def positive_mask(events: pd.DataFrame) -> pd.Series:
    """Whether each event counts as positive in its scenario (as the registry defines)."""
    from hybridrec.plugins import get_registry

    scenarios = get_registry().scenarios
    mask = pd.Series(False, index=events.index)
    for name, group in events.groupby(C.SCENARIO).groups.items():
        scenario = scenarios.get(name)
        if scenario is not None:
            mask.loc[group] = events.loc[group, C.EVENT_TYPE].isin(scenario.positive_events)
    return mask


def write_dataset(data: Dataset, data_dir: Path) -> dict[str, int]:
    """Write the dataset and its derived snapshot tables; return row counts per file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    context = [c for c in C.CONTEXT_COLUMNS if c in data.events.columns]
    events = data.events[EVENT_COLUMNS + context].copy()
    if C.POSITION in events:
        events[C.POSITION] = pd.to_numeric(events[C.POSITION]).astype("Int64")
    events[C.EVENT_TIMESTAMP] = as_utc_us(events[C.EVENT_TIMESTAMP])
    events = events.sort_values([C.EVENT_TIMESTAMP, C.USER_ID, C.ITEM_ID], kind="stable")
    events = events.reset_index(drop=True)
    tables = {
        C.EVENTS_FILE: events,
        C.USERS_FILE: data.users,
        C.ITEMS_FILE: data.items,
        C.USER_ACTIVITY_FILE: user_activity(events),
        C.ITEM_POPULARITY_FILE: item_popularity(events, positive_mask(events)),
    }
    # Always written, so every core view has a source even for data without such rows.
    for table, frame in ((ADS, data.ads), (USER_SEGMENTS, data.user_segments),
                         (ITEM_ATTRIBUTES, data.item_attributes)):
        tables[table.file] = frame if frame is not None else empty_table(table)
    tables.update({name: typed_empty_columns(frame)
                   for name, frame in derived_tables(events, data.items).items()})
    counts = {}
    for name, frame in tables.items():
        frame = frame.copy()
        # every time column (a plugin's derived ones too) in UTC microseconds
        times = {C.EVENT_TIMESTAMP, *(n for n, k in ADS.fields.items() if k == "UnixTimestamp")}
        times |= {c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])}
        for column in times:
            if column in frame:
                frame[column] = as_utc_us(frame[column])
        write_parquet(frame, data_dir / name)
        counts[name] = len(frame)
    return counts


def typed_empty_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its object columns that hold no value as text: Parquet would store them
    as its null type, which DuckDB cannot compare with a text join key."""
    empty = [c for c in frame.columns if frame[c].dtype == object and frame[c].isna().all()]
    return frame.astype(dict.fromkeys(empty, "string")) if empty else frame


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` whole or not at all: to a temporary file beside it, then
    renamed over it, so a running server or Feast never reads half a table."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        frame.to_parquet(partial, index=False)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def derived_tables(events: pd.DataFrame, items: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every registered ``DerivedTable`` derived from ``events``, by file name."""
    from hybridrec.plugins import get_registry

    return {cls.file(): cls().derive(events, items)
            for cls in get_registry().kind("derived_tables").values()}


def read_table(data_dir: Path, name: str) -> pd.DataFrame:
    path = data_dir / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; run 'hybridrec data synthetic' or "
            "'hybridrec data movielens PATH' first"
        )
    return read_parquet(path)


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as a frame, read by Arrow from the path itself. pandas' reader hands
    Arrow a Python file object, and Arrow's threads releasing it while the interpreter shuts
    down can abort a short-lived command after it has answered (apache/arrow#34314)."""
    import pyarrow.parquet as pq

    return pq.read_table(str(path)).to_pandas()


def empty_table(table: Table) -> pd.DataFrame:
    """``table``'s columns and no rows (for datasets without such rows)."""
    # "string", not object: an empty object column is written as Parquet's null type,
    # which DuckDB cannot compare with the string join key.
    frame = pd.DataFrame({table.key: pd.Series(dtype="string")})
    for name, kind in table.fields.items():
        frame[name] = pd.Series(dtype="string" if kind == "String" else np.float32
                                if kind == "Float32" else TS_DTYPE if kind == "UnixTimestamp"
                                else np.int64)
    frame[C.EVENT_TIMESTAMP] = pd.Series(dtype=TS_DTYPE)
    return frame
