"""What a scenario is for, as numbers: each (user, item)'s gain towards the scenario's
objective, and how active a user is.

A (user, item) gains the largest ``Scenario.gains`` weight among its events (a purchase 1.0, a
cart 0.2), times the item's ``objective_value`` where the scenario names one (an ad's bid:
expected value). The learned blender is fit on these gains and evaluation ranks by them
(``objective@K``).

Activity buckets split users by how many distinct items they acted on before the request:
``cold`` (fewer than 5), ``light`` (5 to 49), ``heavy`` (50 or more). The learned blender's
weights depend on the bucket, and evaluation breaks every metric down by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import Scenario

if TYPE_CHECKING:
    import pandas as pd

#: Bucket names and their lower bounds (distinct items acted on).
BUCKETS = ("cold", "light", "heavy")
BOUNDS = (0, 5, 50)


def activity_bucket(n_items: np.ndarray) -> np.ndarray:
    """The bucket (an index into ``BUCKETS``) of each count of distinct items acted on."""
    return np.searchsorted(np.asarray(BOUNDS[1:]), np.asarray(n_items), side="right")


def value_column(scenario: Scenario) -> str | None:
    """The item feature column (``view__feature``) that multiplies the gains, if any."""
    return scenario.objective_value.replace(":", "__") if scenario.objective_value else None


def gains(events: pd.DataFrame, scenario: Scenario,
          values: Mapping[str, float] | pd.Series | None = None) -> pd.Series:
    """Per (user, item), as strings, its gain towards the scenario's objective: the largest
    gain among its events, times the item's value (``values[item]``, 0 where unknown) when
    the scenario's objective has one."""
    import pandas as pd

    weight = events[C.EVENT_TYPE].map(scenario.gains)
    kept = events[weight.notna()]
    if kept.empty:
        return pd.Series([], dtype=float, index=pd.MultiIndex.from_arrays(
            [[], []], names=[C.USER_ID, C.ITEM_ID]))
    best = weight[weight.notna()].astype(float).groupby(
        [kept[C.USER_ID].astype(str), kept[C.ITEM_ID].astype(str)]).max()
    if scenario.objective_value is not None:
        value = pd.Series(values if values is not None else {}, dtype=float)
        item_values = value.reindex(best.index.get_level_values(1)).fillna(0.0).to_numpy()
        best = best * np.maximum(item_values, 0.0)
    return best
