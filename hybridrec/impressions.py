"""Impressions and their clicks: the rows a click-through-rate model learns from and is
measured on.

A scenario's *exposure* events are those it weighs 0 and does not count as positive (an ad
``impression``): the item was shown, nothing more. Each exposure is labelled 1 when its user
then acted positively (a ``click``) on the same item within a window; a click is credited to
the latest exposure of that item to that user before it, so no click counts twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec.contracts import Scenario

LABEL = "label"


def exposure_events(scenario: Scenario) -> tuple[str, ...]:
    return tuple(e for e, w in scenario.event_weights.items()
                 if w == 0 and e not in scenario.positive_events)


def labelled_impressions(events: pd.DataFrame, scenario: Scenario,
                         window_hours: float = 24.0) -> pd.DataFrame:
    """The scenario's exposures in time order, each with ``label`` 1 when its user acted
    positively on its item within ``window_hours`` after it."""
    exposures = exposure_events(scenario)
    events = events[events[C.SCENARIO] == scenario.name] if C.SCENARIO in events else events
    shown = events[events[C.EVENT_TYPE].isin(exposures)].copy()
    shown["_row"] = np.arange(len(shown))
    shown = shown.sort_values([C.EVENT_TIMESTAMP, "_row"], kind="stable")
    shown[LABEL] = 0
    clicks = events[events[C.EVENT_TYPE].isin(scenario.positive_events)]
    if len(shown) and len(clicks):
        key = [C.USER_ID, C.ITEM_ID]
        left = clicks[[*key, C.EVENT_TIMESTAMP]].sort_values(C.EVENT_TIMESTAMP)
        right = shown[[*key, C.EVENT_TIMESTAMP, "_row"]].rename(
            columns={C.EVENT_TIMESTAMP: "_shown"})
        matched = pd.merge_asof(left, right.sort_values("_shown"), left_on=C.EVENT_TIMESTAMP,
                                right_on="_shown", by=key, direction="backward",
                                tolerance=pd.Timedelta(hours=window_hours))
        hit = matched["_row"].dropna().astype(np.int64).unique()
        shown.loc[shown["_row"].isin(hit), LABEL] = 1
    return shown.drop(columns="_row").reset_index(drop=True)
