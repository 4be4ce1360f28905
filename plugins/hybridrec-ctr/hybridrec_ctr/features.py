"""The model's inputs, built the same way for training rows and for a request's candidates.

Raw inputs are Feast features (the user's profile and activity, the ad's category, bid,
advertiser, targeting and launch time, its impressions and clicks so far, the user's
impressions and clicks per category; anonymised user segments and item attributes where a
data set has them), the slot position and the time. ``design`` turns them into one float
matrix: numeric columns as they are (NaN where missing), derived ones (does the user match
the ad's targeting, how old is the ad, the hour of day, the ad's and the user's smoothed
click rates) and categorical ones as codes of a vocabulary learnt in training (NaN for a
value never seen, which LightGBM sends down each split's missing-value branch: a finite
score, never a crash).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import repeat
from operator import floordiv, sub
from typing import Any

import numpy as np

from hybridrec.ids import IdIndex
from hybridrec_ctr import history as Hi

USER_REFS = ("user_profile:age", "user_profile:gender", "user_profile:occupation",
             "user_activity:events_total", "user_activity:events_7d")
ITEM_REFS = ("item_profile:category", "ad_profile:bid", "ad_profile:advertiser",
             "ad_profile:target_gender", "ad_profile:target_age_min",
             "ad_profile:target_age_max", "ad_profile:launched_at",
             "item_popularity:events_total", "item_popularity:positives_total")
#: Anonymised attributes, where a data set has them instead of named profiles (OBD).
SEGMENT_REFS = tuple(f"user_segment:segment_{i}" for i in range(4))
ATTRIBUTE_REFS = tuple(f"item_attributes:attribute_{i}" for i in range(4))
FEATURE_REFS = USER_REFS + SEGMENT_REFS + ITEM_REFS + ATTRIBUTE_REFS + Hi.REFS
PER_USER = USER_REFS + SEGMENT_REFS


def column(ref: str) -> str:
    return ref.replace(":", "__")


AGE, GENDER, OCCUPATION, EVENTS_TOTAL, EVENTS_7D = map(column, USER_REFS)
(CATEGORY, BID, ADVERTISER, TARGET_GENDER, AGE_MIN, AGE_MAX, LAUNCHED, ITEM_EVENTS,
 ITEM_POSITIVES) = map(column, ITEM_REFS)

#: Categorical inputs: the model's name -> where the value comes from (``item`` is the id).
#: (An item's identity enters as its click rate so far, ``item_ctr``: as a category with a
#: level per item it overfits the few clicks each item has.)
CATEGORICAL = {"gender": GENDER, "occupation": OCCUPATION, "category": CATEGORY,
               "advertiser": ADVERTISER, "target_gender": TARGET_GENDER,
               **{f"segment_{i}": column(r) for i, r in enumerate(SEGMENT_REFS)},
               **{f"attribute_{i}": column(r) for i, r in enumerate(ATTRIBUTE_REFS) if i}}
#: Numeric inputs taken as they are.
NUMERIC = {"age": AGE, "user_events": EVENTS_TOTAL, "user_events_7d": EVENTS_7D, "bid": BID,
           "target_age_min": AGE_MIN, "target_age_max": AGE_MAX,
           "attribute_0": column(ATTRIBUTE_REFS[0])}
DERIVED = ("position", "hour", "ad_age_days", "gender_match", "age_in_target", "in_target",
           "item_events", "item_ctr",
           "category_impressions", "category_clicks", "category_ctr", "user_impressions",
           "user_ctr")
NAMES = (*NUMERIC, *DERIVED, *CATEGORICAL)
#: Pseudo-counts pulling a user's click rate toward the overall rate (few impressions say
#: little).
PRIOR_WEIGHT = 20.0


@dataclass
class Vocabulary:
    """Categorical values seen in training, per input; codes are positions, NaN if unseen."""

    values: dict[str, list[str]] = field(default_factory=dict)
    #: The items seen in training (an item neither seen nor described gets no score).
    items: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, raw: Mapping[str, np.ndarray], item_ids: np.ndarray) -> Vocabulary:
        return cls({name: sorted({str(v) for v in raw[col] if v is not None and v == v})
                    for name, col in CATEGORICAL.items()},
                   sorted({str(i) for i in item_ids}))

    def __post_init__(self) -> None:
        self._index = {n: IdIndex(np.asarray(v, dtype=object)) for n, v in self.values.items()}
        self._items = IdIndex(np.asarray(self.items, dtype=object))

    @property
    def item_index(self) -> IdIndex:
        """The items seen in training."""
        return self._items

    def codes(self, name: str, values: np.ndarray) -> np.ndarray:
        """Positions in the vocabulary; NaN for a value never seen, None or NaN."""
        pos = self._index[name].positions(np.asarray(values, dtype=object)).astype(np.float64)
        pos[pos < 0] = np.nan
        return pos


def utc_times(values: Any) -> np.ndarray:
    """Times (datetime64, Timestamps, datetimes or None) as naive UTC ``datetime64[us]``;
    a naive datetime is taken as UTC."""
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[us]")
    import pandas as pd

    values = np.asarray(values, dtype=object)
    missing = pd.isna(values)
    given = values[~missing].tolist()
    if all(map(isinstance, given, repeat(datetime))):
        # what the online store hands over: a request's datetimes converted exactly by
        # C-level maps, several times faster than pandas' parser
        naive = np.array(list(map(datetime.utcoffset, given)), dtype=object) == None  # noqa: E711
        if naive.any():
            given = np.array(given, dtype=object)
            given[naive] = list(map(_as_utc, given[naive].tolist()))
            given = given.tolist()
        micros = np.fromiter(map(floordiv, map(sub, given, repeat(_EPOCH)),
                                 repeat(_MICROSECOND)), dtype=np.int64, count=len(given))
        micros[(micros < _FIRST) | (micros > _LAST)] = _NAT  # as pandas: out of its range
        out = np.full(len(values), _NAT, dtype=np.int64)
        out[~missing] = micros
        return out.view("datetime64[us]")
    times = pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce")
    return times.dt.tz_localize(None).to_numpy("datetime64[us]")


_as_utc = partial(datetime.replace, tzinfo=UTC)
_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
#: NaT's integer, and the first and last microsecond pandas' timestamps can hold.
_NAT = int(np.datetime64("NaT", "us").view(np.int64))
_FIRST, _LAST = -9_223_372_036_854_775, 9_223_372_036_854_775


def hour_of_day(times: np.ndarray) -> np.ndarray:
    minutes = times.astype("datetime64[m]").astype(np.int64)
    return (minutes % 1440) / 60.0


def raw_inputs(features: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The declared feature columns a design needs, missing ones as all-missing."""
    out = {}
    for ref in FEATURE_REFS:
        c = column(ref)
        out[c] = features[c] if c in features else np.full(n, None, dtype=object)
    return out


def numeric(values: np.ndarray) -> np.ndarray:
    """Floats with NaN where missing (the core hands numeric features over as floats
    already; other arrays are converted)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    values = np.asarray(values, dtype=object)
    if all(map(isinstance, values.tolist(), repeat((int, float, np.number)))):
        return values.astype(np.float64)  # numbers as objects: no parsing to do
    import pandas as pd

    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(float)


def design(raw: Mapping[str, np.ndarray], item_ids: np.ndarray, times: np.ndarray,
           positions: np.ndarray, owner: np.ndarray, vocab: Vocabulary,
           base_rate: float) -> np.ndarray:
    """The (rows, ``len(NAMES)``) float matrix. ``raw`` maps feature columns to per-row
    arrays, except the user's category snapshot (``history.COLUMNS``), given per owner:
    ``owner[r]`` is row r's entry in those arrays (a training row is its own owner; a
    request's candidates share the request's)."""
    n = len(item_ids)
    x = np.full((n, len(NAMES)), np.nan)
    at = {name: j for j, name in enumerate(NAMES)}
    for name, col in NUMERIC.items():
        x[:, at[name]] = numeric(raw[col])
    x[:, at["position"]] = numeric(positions)
    x[:, at["hour"]] = hour_of_day(times)
    launched = utc_times(raw[LAUNCHED])
    x[:, at["ad_age_days"]] = (times - launched) / np.timedelta64(1, "D")
    gender, target = raw[GENDER], raw[TARGET_GENDER]
    gender, target = np.asarray(gender, dtype=object), np.asarray(target, dtype=object)
    known = present(gender) & present(target)
    match = (target == "any") | (gender == target)  # elementwise on object arrays
    x[:, at["gender_match"]] = np.where(known, match, np.nan)
    age, lo, hi = numeric(raw[AGE]), numeric(raw[AGE_MIN]), numeric(raw[AGE_MAX])
    inside = (age >= lo) & (age <= hi)
    x[:, at["age_in_target"]] = np.where(np.isnan(age) | np.isnan(lo) | np.isnan(hi),
                                         np.nan, inside)
    # the user is who the ad targets: both criteria at once
    x[:, at["in_target"]] = x[:, at["gender_match"]] * x[:, at["age_in_target"]]
    # the item's click rate so far (its daily snapshot: events are impressions and clicks)
    events, positives = numeric(raw[ITEM_EVENTS]), numeric(raw[ITEM_POSITIVES])
    shown = np.nan_to_num(events - positives)
    x[:, at["item_events"]] = shown
    x[:, at["item_ctr"]] = (np.nan_to_num(positives) + PRIOR_WEIGHT * base_rate) / (
        shown + PRIOR_WEIGHT)
    x[:, at["category_impressions"]], x[:, at["category_clicks"]], \
        x[:, at["category_ctr"]], x[:, at["user_impressions"]], x[:, at["user_ctr"]] = \
        category_history(raw, owner, base_rate)
    for name, col in CATEGORICAL.items():
        x[:, at[name]] = vocab.codes(name, raw[col])
    return x


def category_history(raw: Mapping[str, np.ndarray], owner: np.ndarray, base_rate: float
                     ) -> tuple[np.ndarray, ...]:
    """Per row: the user's impressions and clicks in the row's category, their smoothed
    click rate there, and their impressions and smoothed click rate over all categories."""
    cats, imps, clks = (raw[c] for c in Hi.COLUMNS)
    n = len(owner)
    cat_imp, cat_clk = np.zeros(n), np.zeros(n)
    all_imp, all_clk = np.zeros(n), np.zeros(n)
    row_cat = raw[CATEGORY]
    order = np.argsort(owner, kind="stable")
    starts = np.flatnonzero(np.r_[True, owner[order][1:] != owner[order][:-1]]) if n else []
    for start, end in zip(starts, [*starts[1:], n], strict=True):
        rows = order[start:end]
        o = owner[rows[0]]
        table = Hi.lookup(cats[o], imps[o], clks[o])
        if not table:
            continue
        counts = np.array(list(table.values()), dtype=float).reshape(-1, 2)
        all_imp[rows], all_clk[rows] = counts.sum(axis=0)
        at = np.fromiter(map({c: i for i, c in enumerate(table)}.get,
                             map(str, row_cat[rows]), repeat(-1)), dtype=np.int64,
                         count=len(rows))  # each row's category in the table, -1 if absent
        known = at >= 0
        cat_imp[rows[known]], cat_clk[rows[known]] = counts[at[known]].T
    m = PRIOR_WEIGHT
    return (cat_imp, cat_clk, (cat_clk + m * base_rate) / (cat_imp + m), all_imp,
            (all_clk + m * base_rate) / (all_imp + m))


def present(values: np.ndarray) -> np.ndarray:
    """Which entries hold a value (not None, not NaN), as one vectorised pass."""
    import pandas as pd

    return pd.notna(np.asarray(values, dtype=object))
