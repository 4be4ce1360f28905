"""Training examples from an event log, with NumPy and pandas only.

Per scenario, each (user, item) pair the user acted on is one positive, stamped with its
first event; its history is what serving would see, the user's most recent items (up to
``history_length``, oldest first), without the item being predicted. Labels per
task, each with a mask of the rows that carry it:

* ``click`` (engagement): 1 for every pair (events with a positive weight in the scenario),
  0 for sampled negatives;
* ``like`` (strong positive): a like or purchase, or a rating of 4 or more; only where the
  scenario's data has any;
* ``rating``: the pair's mean rating, standardised; only on rated pairs;
* ``profile``: the categories of the user's items (multi-label), per user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec.contracts import Scenario

STRONG_EVENTS = ("like", "purchase")
RATING_EVENT = "rating"
#: A rating at or above this many stars is a strong positive.
STRONG_RATING = 4.0


@dataclass
class Examples:
    history: np.ndarray  # (n, L) item-table rows, 0 = padding
    target: np.ndarray  # (n,) item-table rows
    user: np.ndarray  # (n,) user positions
    labels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    time: np.ndarray = field(default_factory=lambda: np.array([]))

    def __len__(self) -> int:
        return len(self.target)

    def take(self, rows: np.ndarray) -> Examples:
        return Examples(self.history[rows], self.target[rows], self.user[rows],
                        {k: v[rows] for k, v in self.labels.items()},
                        {k: v[rows] for k, v in self.masks.items()},
                        self.time[rows] if len(self.time) else self.time)


@dataclass
class Pairs:
    """One row per (user, item) pair, sorted by user then first event time."""

    frame: pd.DataFrame
    has_like: bool
    has_rating: bool


def pairs(events: pd.DataFrame, scenario: Scenario) -> Pairs:
    e = events[events[C.EVENT_TYPE].isin([t for t, w in scenario.event_weights.items()
                                          if w > 0])]
    strong = e[C.EVENT_TYPE].isin(STRONG_EVENTS) | (
        (e[C.EVENT_TYPE] == RATING_EVENT) & (e[C.VALUE] >= STRONG_RATING))
    rating = e[C.VALUE].where(e[C.EVENT_TYPE] == RATING_EVENT)
    frame = pd.DataFrame({C.USER_ID: e[C.USER_ID].astype(str).to_numpy(),
                          C.ITEM_ID: e[C.ITEM_ID].astype(str).to_numpy(),
                          C.EVENT_TIMESTAMP: e[C.EVENT_TIMESTAMP].to_numpy(),
                          "strong": strong.to_numpy(), "rating": rating.to_numpy(float)})
    extra = [c for c in events.columns if "__" in c]
    for c in extra:
        frame[c] = e[c].to_numpy()
    agg = {C.EVENT_TIMESTAMP: "min", "strong": "max", "rating": "mean",
           **{c: "first" for c in extra}}
    out = (frame.sort_values(C.EVENT_TIMESTAMP, kind="stable")
           .groupby([C.USER_ID, C.ITEM_ID], sort=False, as_index=False).agg(agg)
           .sort_values([C.USER_ID, C.EVENT_TIMESTAMP, C.ITEM_ID], kind="stable")
           .reset_index(drop=True))
    # a head is trained only where the data has its labels (masked elsewhere, never zeros)
    return Pairs(out, bool(out["strong"].any()), bool(out["rating"].notna().any()))


def rating_scale(ex: Examples) -> tuple[float, float]:
    """Mean and standard deviation of the rated examples' ratings ((0, 1) without any)."""
    rated = ex.labels["rating"][ex.masks["rating"]]
    if len(rated) < 2:
        return 0.0, 1.0
    return float(rated.mean()), float(rated.std() or 1.0)


def standardise_ratings(ex: Examples, scale: tuple[float, float]) -> None:
    mean, std = scale
    ex.labels["rating"] = np.nan_to_num((ex.labels["rating"] - mean) / std).astype(np.float32)


def histories(users: np.ndarray, rows: np.ndarray, ex: Examples, length: int) -> None:
    """Set each example's history: its user's ``length`` most recent items (oldest first,
    left-padded with 0) among the pairs ``users``/``rows`` (sorted by user, then time),
    leaving out the example's target: what serving sees as the user's recent items, minus
    the item being predicted."""
    n_users = max(int(users.max()) + 1 if len(users) else 0, int(ex.user.max()) + 1
                  if len(ex) else 0)
    recent = np.zeros((n_users, length + 1), dtype=np.int64)
    if len(users) and length:
        change = np.r_[True, users[1:] != users[:-1]]
        starts = np.flatnonzero(change)
        ends = np.r_[starts[1:], len(users)]
        for j in range(length + 1):  # column j holds the pair (length - j) places from the end
            at = ends - (length + 1 - j)
            ok = at >= starts
            recent[users[starts[ok]], j] = rows[at[ok]]
    ex.history = without_target(recent[ex.user], ex.target, length)


def without_target(recent: np.ndarray, target: np.ndarray, length: int) -> np.ndarray:
    """``recent`` rows (one per example, ``length + 1`` wide) with the target removed, or
    the oldest entry when the target is not among them."""
    if length == 0:
        return np.zeros((len(target), 0), dtype=np.int64)
    same = recent == target[:, None]
    drop = np.where(same.any(1), same.argmax(1), 0)
    keep = np.arange(length + 1)[None, :] != drop[:, None]
    return recent[keep].reshape(len(target), length)


def build(p: Pairs, item_rows: dict[str, int], user_pos: dict[str, int], length: int
          ) -> Examples:
    """One example per pair whose item is in the catalogue; ratings raw (NaN where none)
    until ``standardise_ratings``; histories set later by ``histories``."""
    f = p.frame
    n = len(f)
    rows = np.array([item_rows.get(i, 0) for i in f[C.ITEM_ID]], dtype=np.int64)
    users = np.array([user_pos[u] for u in f[C.USER_ID]], dtype=np.int64)
    keep = rows > 0
    history = np.zeros((n, length), dtype=np.int64)  # set by histories()
    rating = f["rating"].to_numpy(float)
    labels = {"click": np.ones(n, np.float32),
              "like": f["strong"].to_numpy(bool).astype(np.float32),
              "rating": rating}
    masks = {"click": np.ones(n, bool), "like": np.full(n, p.has_like),
             "rating": ~np.isnan(rating)}
    ts = pd.to_datetime(f[C.EVENT_TIMESTAMP], utc=True).to_numpy("datetime64[us]")
    return Examples(history, rows, users, labels, masks, ts).take(np.flatnonzero(keep))


def negatives(n: int, n_items: int, per_positive: int, rng: np.random.Generator
              ) -> np.ndarray:
    """(n, per_positive) item rows sampled uniformly from the catalogue."""
    return rng.integers(1, n_items + 1, size=(n, per_positive))


def targets_and_labels(ex: Examples, negs: np.ndarray
                       ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each positive with its negatives as (n, 1 + k) targets, labels and masks: click and
    like are 1/0 for the positive (like only where the scenario has strong positives) and 0
    for negatives; the rating labels the positive only."""
    n, k = negs.shape
    targets = np.concatenate([ex.target[:, None], negs], axis=1)
    zeros = np.zeros((n, k), np.float32)
    labels = {"click": np.concatenate([np.ones((n, 1), np.float32), zeros], 1),
              "like": np.concatenate([ex.labels["like"][:, None], zeros], 1),
              "rating": np.concatenate([ex.labels["rating"][:, None], zeros], 1)}
    masks = {"click": np.ones((n, k + 1), bool),
             "like": np.repeat(ex.masks["like"][:, None], k + 1, axis=1),
             "rating": np.concatenate([ex.masks["rating"][:, None],
                                       np.zeros((n, k), bool)], 1)}
    return targets, labels, masks


def latest_per_user(ex: Examples, fraction: float, min_pairs: int = 5) -> np.ndarray:
    """The validation slice: each user's latest ``fraction`` of pairs (at least one, for
    users with ``min_pairs`` or more), so it is later in time than what the model trains on
    for the same user. ``ex`` is sorted by user, then time."""
    n = len(ex)
    if n == 0 or fraction <= 0:
        return np.zeros(n, dtype=bool)
    change = np.r_[True, ex.user[1:] != ex.user[:-1]]
    starts = np.flatnonzero(change)
    sizes = np.diff(np.r_[starts, n])
    held = np.where(sizes >= min_pairs, np.maximum(1, np.floor(sizes * fraction)), 0)
    from_end = np.repeat(starts + sizes, sizes) - np.arange(n)  # 1 for a user's last pair
    return from_end <= np.repeat(held, sizes)
