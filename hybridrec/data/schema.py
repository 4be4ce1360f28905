"""The feature tables the data commands write: file, entity key and feature columns.

The built-in features plugin declares one Feast view per table from these; kept free of
pandas so that listing plugins stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybridrec import columns as C


@dataclass(frozen=True)
class Table:
    """A feature table: its file, its entity key and its feature columns (Feast type names)."""

    file: str
    key: str
    fields: dict[str, str]


USERS = Table(C.USERS_FILE, C.USER_ID, {"age": "Int64", "gender": "String",
                                         "occupation": "String"})
USER_ACTIVITY = Table(C.USER_ACTIVITY_FILE, C.USER_ID, {
    "events_total": "Int64", "events_7d": "Int64", "items_total": "Int64"})
ITEMS = Table(C.ITEMS_FILE, C.ITEM_ID, {"scenario": "String", "category": "String",
                                         "title": "String", "text": "String",
                                         "price": "Float32"})
ITEM_POPULARITY = Table(C.ITEM_POPULARITY_FILE, C.ITEM_ID, {
    "events_total": "Int64", "events_7d": "Int64", "positives_total": "Int64"})
ADS = Table(C.ADS_FILE, C.AD_ID, {"advertiser": "String", "bid": "Float32",
                                   "target_gender": "String", "target_age_min": "Int64",
                                   "target_age_max": "Int64",
                                   "launched_at": "UnixTimestamp"})
USER_SEGMENTS = Table(C.USER_SEGMENTS_FILE, C.USER_ID, {
    f"segment_{i}": "String" for i in range(4)})
ITEM_ATTRIBUTES = Table(C.ITEM_ATTRIBUTES_FILE, C.ITEM_ID, {
    "attribute_0": "Float32", **{f"attribute_{i}": "String" for i in range(1, 4)}})
TABLES = (USERS, USER_ACTIVITY, ITEMS, ITEM_POPULARITY, ADS, USER_SEGMENTS, ITEM_ATTRIBUTES)
