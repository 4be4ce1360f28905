"""The Open Bandit Dataset (ZOZOTOWN; Saito et al. 2020) as one scenario per campaign.

The directory holds ``{policy}/{campaign}/{campaign}.csv`` (one row per impression: time,
item, slot ``position`` 1-3, ``click``, the logging policy's ``propensity_score``, four hashed
user features and one user-item affinity per item) and ``item_context.csv`` beside each (one
numeric and three hashed item features), for the behaviour policies ``random`` and ``bts``
(Bernoulli Thompson sampling) and the campaigns ``men`` and ``women``.

Each campaign becomes the scenario ``obd_men`` or ``obd_women``. Every row is an
``impression`` event, and a clicked row also a ``click`` event a second later; both keep the
slot ``position``, the ``policy`` that chose the item and its ``propensity``, and the logged
``affinity`` of the user for that item. The data has no user ids: a user is the combination
of the four hashed features (``user_segment`` view: ``segment_0..3``), which is also their
id. Items are prefixed per campaign (``m7``, ``w7``); their features go to the
``item_attributes`` view, and ``attribute_1`` is their category.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec.data.tables import Dataset

POLICIES = ("random", "bts")
CAMPAIGNS = ("men", "women")
USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))


def scenario_name(campaign: str) -> str:
    return f"obd_{campaign}"


def load(path: Path, policies: tuple[str, ...] = POLICIES,
         campaigns: tuple[str, ...] = CAMPAIGNS) -> Dataset:
    path = Path(path)
    files = {(p, c): path / p / c / f"{c}.csv" for p in policies for c in campaigns}
    missing = [str(f.relative_to(path)) for f in files.values() if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not an Open Bandit Dataset directory: missing "
                                f"{', '.join(missing)}")
    events, items, segments = [], {}, []
    for (policy, campaign), file in files.items():
        frame = pd.read_csv(file, index_col=0)
        prefix = campaign[0]
        users = _user_ids(frame)
        item = prefix + frame["item_id"].astype(str)
        affinity = _affinity(frame)
        shown = pd.DataFrame({
            C.USER_ID: users, C.ITEM_ID: item.to_numpy(),
            C.SCENARIO: scenario_name(campaign), C.EVENT_TYPE: "impression", C.VALUE: 1.0,
            C.EVENT_TIMESTAMP: pd.to_datetime(frame["timestamp"], utc=True).to_numpy(),
            C.POSITION: frame["position"].to_numpy(np.int64), C.POLICY: policy,
            C.PROPENSITY: frame["propensity_score"].to_numpy(float),
            C.AFFINITY: affinity,
        })
        clicked = frame["click"].to_numpy(bool)
        clicks = shown[clicked].assign(**{C.EVENT_TYPE: "click"})
        clicks[C.EVENT_TIMESTAMP] = clicks[C.EVENT_TIMESTAMP] + pd.Timedelta(seconds=1)
        events += [shown, clicks]
        seg = frame[list(USER_FEATURES)].astype(str)
        seg.columns = [f"segment_{i}" for i in range(4)]
        segments.append(seg.assign(**{C.USER_ID: users}))
        context = pd.read_csv(file.parent / "item_context.csv", index_col=0)
        context[C.ITEM_ID] = prefix + context["item_id"].astype(str)
        items[(campaign, prefix)] = context
    all_events = pd.concat(events, ignore_index=True)
    start = all_events[C.EVENT_TIMESTAMP].min() - pd.Timedelta(days=1)
    item_rows, attribute_rows = [], []
    for (campaign, _), context in items.items():
        item_rows.append(pd.DataFrame({
            C.ITEM_ID: context[C.ITEM_ID].to_numpy(), C.SCENARIO: scenario_name(campaign),
            "category": context["item_feature_1"].astype(str).to_numpy(),
            "title": "ZOZOTOWN " + campaign + " item " + context["item_id"].astype(str),
            "text": "", "price": np.float32("nan"), C.EVENT_TIMESTAMP: start}))
        attribute_rows.append(pd.DataFrame({
            C.ITEM_ID: context[C.ITEM_ID].to_numpy(),
            "attribute_0": context["item_feature_0"].astype("float32").to_numpy(),
            **{f"attribute_{i}": context[f"item_feature_{i}"].astype(str).to_numpy()
               for i in range(1, 4)},
            C.EVENT_TIMESTAMP: start}))
    segs = pd.concat(segments, ignore_index=True).drop_duplicates(C.USER_ID)
    users = pd.DataFrame({C.USER_ID: segs[C.USER_ID].to_numpy(), "age": pd.NA,
                          "gender": None, "occupation": None, C.EVENT_TIMESTAMP: start})
    users["age"] = users["age"].astype("Int64")
    return Dataset(
        events=all_events, users=users,
        items=pd.concat(item_rows, ignore_index=True).drop_duplicates(
            [C.ITEM_ID, C.SCENARIO]),
        user_segments=segs.assign(**{C.EVENT_TIMESTAMP: start}),
        item_attributes=pd.concat(attribute_rows, ignore_index=True).drop_duplicates(
            C.ITEM_ID))


def _user_ids(frame: pd.DataFrame) -> np.ndarray:
    """A user id per row from the four hashed user features (the data's only notion of a
    user): ``z`` and the first 12 hex digits of their SHA-1."""
    keys = frame[list(USER_FEATURES)].astype(str).agg("|".join, axis=1)
    ids = {k: "z" + hashlib.sha1(k.encode()).hexdigest()[:12] for k in keys.unique()}
    return keys.map(ids).to_numpy(object)


def _affinity(frame: pd.DataFrame) -> np.ndarray:
    """Each row's logged affinity of the user for the item shown."""
    columns = [c for c in frame.columns if c.startswith("user-item_affinity_")]
    if not columns:
        return np.full(len(frame), np.nan)
    by_item = {int(c.rsplit("_", 1)[1]): j for j, c in enumerate(columns)}
    values = frame[columns].to_numpy(float)
    col = np.array([by_item.get(int(i), -1) for i in frame["item_id"]])
    out = np.full(len(frame), np.nan)
    ok = col >= 0
    out[ok] = values[np.flatnonzero(ok), col[ok]]
    return out
