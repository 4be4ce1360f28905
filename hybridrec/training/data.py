"""Stage 2, data: the event log, the time split, and the training frames with the declared
features joined point-in-time correctly by Feast."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec.contracts import TrainingData
from hybridrec.data.tables import as_utc_us, read_table
from hybridrec.progress import progress_bar
from hybridrec.training.plan import Plan, TrainingError
from hybridrec.workspace import Workspace


@dataclass
class Inputs:
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    #: The last feedback row read: serving adds only the feedback logged after it.
    feedback_until: int = 0
    ads: pd.DataFrame | None = None

    def catalogue(self, scenario: str) -> np.ndarray:
        return self.items.loc[self.items[C.SCENARIO] == scenario, C.ITEM_ID].to_numpy(str)


def load_inputs(ws: Workspace) -> Inputs:
    """Event log (with feedback received since), catalogue and users from the feature repo."""
    from hybridrec.feedback import open_feedback

    events = read_table(ws.data_dir, C.EVENTS_FILE)
    until = 0
    log = open_feedback(ws, create=False)
    if log is not None:
        extra = log.events()
        log.close()
        if len(extra):
            until = int(extra["feedback_id"].max())
            extra = usable_feedback(extra, events)
            # feedback carries no context columns (slot, policy...): concat leaves them missing
            shared = [c for c in events.columns if c in extra.columns]
            events = pd.concat([events, extra[shared]], ignore_index=True)
    events[C.EVENT_TIMESTAMP] = as_utc_us(events[C.EVENT_TIMESTAMP])
    items = read_table(ws.data_dir, C.ITEMS_FILE)  # an item listed twice is one item
    items = items.drop_duplicates([C.ITEM_ID, C.SCENARIO], keep="last", ignore_index=True)
    ads_path = ws.data_dir / C.ADS_FILE
    return Inputs(events=events, items=items, users=read_table(ws.data_dir, C.USERS_FILE),
                  feedback_until=until,
                  ads=read_table(ws.data_dir, C.ADS_FILE) if ads_path.exists() else None)


#: How far past the training run's clock a feedback event may be dated and still be used.
FUTURE_SKEW = pd.Timedelta(days=1)


def usable_feedback(extra: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The feedback training can use: dated (a time that could not be read is NaT), not
    before the event log starts and not in the future, with a finite value. Others are left
    out with a warning, so no acknowledged row can stop or skew training (a purchase dated
    2200 would look like the newest, most popular event forever)."""
    import warnings

    times = extra[C.EVENT_TIMESTAMP]
    start = as_utc_us(events[C.EVENT_TIMESTAMP]).min() if len(events) else None
    ok = times.notna() & (times <= pd.Timestamp.now(tz="UTC") + FUTURE_SKEW)
    if start is not None:
        ok &= times >= start
    ok &= np.isfinite(pd.to_numeric(extra[C.VALUE], errors="coerce").to_numpy(float))
    if not ok.all():
        warnings.warn(f"{int((~ok).sum())} feedback events left out of training: dated "
                      "before the event log, in the future or unreadable, or without a "
                      "finite value", stacklevel=2)
    return extra[ok]


def scenario_names(inputs: Inputs, requested: Iterable[str] | None,
                   registered: Collection[str]) -> tuple[list[str], list[str]]:
    """The scenarios to train (``requested``, or every registered one with events) and notes
    on the events no registered scenario takes (a scenario whose plugin was uninstalled)."""
    present = sorted(inputs.events[C.SCENARIO].unique())
    orphans = [n for n in present if n not in registered]
    names = list(requested) if requested else [n for n in present if n in registered]
    missing = [n for n in names if n not in present]
    if missing:
        raise TrainingError(f"no events for scenario(s) {', '.join(missing)}; the data has "
                            f"{', '.join(present) or 'none'} (a scenario a plugin added since "
                            "the data was written needs new data: 'hybridrec data synthetic')")
    if not names:
        raise TrainingError(f"no installed plugin registers the scenario(s) of the data "
                            f"({', '.join(present) or 'none'}); install the plugin that "
                            "does, or load other data")
    notes = [f"events of scenario {n!r} left out: no installed plugin registers it"
             for n in orphans if not requested]
    return names, notes


#: How time (or chance) divides events into train and test.
SPLITS = ("temporal", "random", "leave-last")


@dataclass
class Split:
    """Events divided into train and test. ``cutoff`` is when the test requests are scored:
    the split time of a temporal split, just after the last event otherwise."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp
    kind: str = "temporal"


def make_split(events: pd.DataFrame, kind: str, fraction: float, seed: int = 0) -> Split:
    """Hold out about ``fraction`` of the events:

    * ``temporal``: the latest events (one global cutoff in time);
    * ``random``: each event with probability ``fraction``, drawn in the order of the event
      log (``numpy.random.default_rng(seed).random(len(events)) < fraction``, the protocol
      of the published MovieLens figures), so each user's events split about 80/20 at 0.2;
    * ``leave-last``: each user's latest ``fraction`` of their events in the scenario (at
      least one, for users with two or more).

    The random and leave-last splits score test requests as of the end of the data, so
    features derived from the event log there may already count test events."""
    if not 0 < fraction < 1:
        raise ValueError(f"the test fraction must be between 0 and 1, got {fraction}")
    if kind == "temporal":
        return temporal_split(events, fraction)
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}; known: {', '.join(SPLITS)}")
    if kind == "random":
        test = np.random.default_rng(seed).random(len(events)) < fraction
    else:  # ties in time: the log's order decides
        frame = pd.DataFrame({"g": (events[C.SCENARIO].astype(str) + "\x1f"
                                    + events[C.USER_ID].astype(str)).to_numpy(),
                              "t": events[C.EVENT_TIMESTAMP].to_numpy()})
        frame = frame.sort_values(["g", "t"], kind="stable")
        size = frame.groupby("g", sort=False)["g"].transform("size").to_numpy()
        from_end = size - frame.groupby("g", sort=False).cumcount().to_numpy()
        hold = np.where(size >= 2, np.maximum(1, np.round(fraction * size)), 0)
        test = np.zeros(len(events), dtype=bool)
        test[frame.index.to_numpy()] = from_end <= hold  # positions: a default index
    end = pd.Timestamp(events[C.EVENT_TIMESTAMP].max()) + pd.Timedelta(microseconds=1)
    return Split(events[~test], events[test], end, kind)


def temporal_split(events: pd.DataFrame, test_fraction: float) -> Split:
    """The latest ``test_fraction`` of events (by time) test; the rest train."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    ts = events[C.EVENT_TIMESTAMP]
    cutoff = ts.quantile(1 - test_fraction)
    return split_at(events, cutoff)


def split_at(events: pd.DataFrame, cutoff: Any) -> Split:
    ts = events[C.EVENT_TIMESTAMP]
    return Split(events[ts < cutoff], events[ts >= cutoff], pd.Timestamp(cutoff))


def fingerprint(events: pd.DataFrame) -> str:
    """A short hash of an event log, to tell whether the data under a bundle has changed."""
    columns = [C.USER_ID, C.ITEM_ID, C.SCENARIO, C.EVENT_TYPE, C.VALUE, C.EVENT_TIMESTAMP]
    ordered = events[columns].sort_values(columns, kind="stable")
    digest = hashlib.sha256(pd.util.hash_pandas_object(ordered, index=False).to_numpy())
    return digest.hexdigest()[:16]


def training_data(store: Any, events: pd.DataFrame, inputs: Inputs, plan: Plan,
                  progress: bool) -> TrainingData:
    """Each scenario's events with the features its components declare, joined as of each
    event's time (one join for the whole window: each row depends only on its own time, so
    any time slice of it is correct too); rows stay in the order of ``events``."""
    from hybridrec.features import join_events

    frames, positions = [], []
    scenario = events[C.SCENARIO].to_numpy()
    for name in progress_bar(list(plan.scenarios), "joining features", enabled=progress):
        rows = np.flatnonzero(scenario == name)
        if len(rows):
            frames.append(join_events(store, events.iloc[rows], plan.scenarios[name],
                                      plan.features[name]))
            positions.append(rows)
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.iloc[np.argsort(np.concatenate(positions), kind="stable")]
        frame = frame.reset_index(drop=True)
    else:
        frame = events.iloc[:0].copy()
    frame[C.EVENT_TIMESTAMP] = as_utc_us(frame[C.EVENT_TIMESTAMP])
    return TrainingData(events=frame, items=inputs.items, users=inputs.users,
                        scenarios=plan.scenarios, ads=inputs.ads)
