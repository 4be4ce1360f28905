"""What users did before a request, from an event log: the items they acted on (history, for
exclusion and fold-in) and their most recent events (sequences, for scorers that declare
``sequence_length``). Training, evaluation and the bundle the server reads all build them here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import EventSequences, Ragged, Scenario

if TYPE_CHECKING:
    import pandas as pd

#: Event type of ``context.recent_items`` in a sequence: an interaction not yet sent as
#: feedback, stamped with the request time.
RECENT_EVENT = "recent"


def seen_mask(events: pd.DataFrame, scenario: Scenario) -> pd.Series:
    """Events that make an item 'seen' by the user: those with a positive weight."""
    weights = events[C.EVENT_TYPE].map(scenario.event_weights).fillna(0.0)
    return weights > 0


def seen_pairs(events: pd.DataFrame, scenarios: Mapping[str, Scenario]) -> pd.DataFrame:
    """Distinct (user, item, scenario) with a positive-weight event, with the last such time,
    oldest first."""
    import pandas as pd

    parts = []
    for name, scenario in scenarios.items():
        part = events[(events[C.SCENARIO] == name)]
        part = part[seen_mask(part, scenario)]
        parts.append(part.groupby([C.USER_ID, C.ITEM_ID, C.SCENARIO], as_index=False)
                     [C.EVENT_TIMESTAMP].max())
    columns = [C.USER_ID, C.ITEM_ID, C.SCENARIO, C.EVENT_TIMESTAMP]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return frame.sort_values([C.EVENT_TIMESTAMP, C.ITEM_ID], kind="stable").reset_index(
        drop=True)[columns]


def recent_events(events: pd.DataFrame, scenarios: Mapping[str, int]) -> pd.DataFrame:
    """The last ``n`` events per user of each scenario in ``{scenario: n}``, oldest first."""
    import pandas as pd

    columns = [C.USER_ID, C.ITEM_ID, C.SCENARIO, C.EVENT_TYPE, C.VALUE, C.EVENT_TIMESTAMP]
    parts = []
    for name, n in scenarios.items():
        if n <= 0:
            continue
        part = events.loc[events[C.SCENARIO] == name, columns]
        part = part.sort_values(C.EVENT_TIMESTAMP, kind="stable")
        parts.append(part.groupby(C.USER_ID, sort=False).tail(n))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return frame.sort_values(C.EVENT_TIMESTAMP, kind="stable").reset_index(drop=True)


def grouped(frame: pd.DataFrame, user_ids: np.ndarray, column: str = C.ITEM_ID) -> Ragged:
    """``frame[column]`` per user of ``user_ids`` (frame order kept), one row per user."""
    import pandas as pd

    rows = pd.Index(np.asarray(user_ids, dtype=object)).get_indexer(frame[C.USER_ID])
    keep = rows >= 0
    rows = rows[keep]
    order = np.argsort(rows, kind="stable")
    values = frame[column].to_numpy()[keep][order]
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(user_ids)), out=offsets[1:])
    return Ragged(values, offsets)


def sequences_of(frame: pd.DataFrame, user_ids: np.ndarray) -> EventSequences:
    """``recent_events`` rows as each user's sequence."""
    import pandas as pd

    frame = frame.assign(**{C.EVENT_TIMESTAMP: pd.to_datetime(
        frame[C.EVENT_TIMESTAMP], utc=True).dt.tz_localize(None).astype("datetime64[us]")})
    items = grouped(frame, user_ids)
    stamps = grouped(frame, user_ids, C.EVENT_TIMESTAMP).values
    types = grouped(frame, user_ids, C.EVENT_TYPE).values
    values = grouped(frame, user_ids, C.VALUE).values
    return EventSequences(Ragged(items.values.astype(str), items.offsets),
                          np.asarray(stamps, dtype="datetime64[us]"), types.astype(str),
                          np.asarray(values, dtype=float))
