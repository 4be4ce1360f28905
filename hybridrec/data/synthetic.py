"""The embedded default data: a seeded, multi-scenario world.

Shared users (age, gender, occupation and a hidden taste vector) meet three catalogues:

* ``shop``: products, with views, carts and purchases;
* ``video``: videos, with watches and likes;
* ``ads``: ads with bids and launch dates, with impressions (served at random in one of
  three slots, as by a logging policy whose propensities are kept) and clicks.

The ground truth mixes three signals so each kind of scorer can win somewhere:
collaborative (an item's hidden vector has a part no feature reveals, so only co-occurrence
finds it), content (the other part is its category's centroid, and the category's words are
in the item's title and description) and demographic (an ad's click rate depends on whether
the user's age and gender match its targeting, and on the slot, the hour and the ad's age).
The true click probability of every impression is kept aside (``Dataset.truth``) so models
can be measured against it.

An installed plugin adds a scenario of its own to this world by registering a
``SyntheticScenario`` (``register_synthetic_scenarios``): it receives the world's users, span,
sizes and seed, and its items and events join the core's tables. The built-in scenarios'
events and items stay the same with or without it (each scenario draws from a generator of
its own); tables counted over every scenario (a user's activity) count its events too.

The world's events end when it is generated (to the hour), so feedback sent to a server
trained on it falls right after the log, as it would in production. The same seed, sizes and
``end`` give the same tables, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec.contracts import SyntheticWorld
from hybridrec.data.tables import EVENT_COLUMNS, Dataset

OCCUPATIONS = ("student", "engineer", "teacher", "artist", "doctor", "sales", "retired",
               "writer", "technician", "homemaker")

CATEGORY_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "shop": {
        "electronics": ("wireless", "charger", "headphones", "bluetooth", "battery", "screen"),
        "books": ("novel", "paperback", "author", "chapters", "hardcover", "edition"),
        "kitchen": ("espresso", "skillet", "knife", "blender", "ceramic", "cookware"),
        "sports": ("running", "yoga", "dumbbell", "cycling", "training", "trail"),
        "toys": ("puzzle", "lego", "plush", "kids", "board", "game"),
        "beauty": ("serum", "lipstick", "moisturiser", "fragrance", "skincare", "mascara"),
        "garden": ("seeds", "planter", "hose", "pruning", "compost", "lawn"),
        "fashion": ("jacket", "sneakers", "denim", "scarf", "leather", "dress"),
    },
    "video": {
        "comedy": ("standup", "sketch", "funny", "prank", "parody", "laughs"),
        "drama": ("family", "betrayal", "emotional", "courtroom", "romance", "tragedy"),
        "documentary": ("wildlife", "history", "investigation", "ocean", "planet", "archive"),
        "music": ("concert", "guitar", "album", "live", "orchestra", "remix"),
        "gaming": ("speedrun", "boss", "walkthrough", "esports", "multiplayer", "retro"),
        "cooking": ("recipe", "baking", "chef", "pasta", "grill", "dessert"),
        "travel": ("backpacking", "island", "city", "roadtrip", "mountains", "hostel"),
        "news": ("election", "economy", "briefing", "report", "interview", "analysis"),
    },
    "ads": {
        "finance": ("savings", "credit", "invest", "mortgage", "bank", "pension"),
        "travel": ("flights", "hotel", "holiday", "cruise", "resort", "getaway"),
        "auto": ("car", "lease", "suv", "electric", "dealer", "tyres"),
        "gaming": ("console", "download", "rpg", "season", "pass", "arena"),
        "fashion": ("sale", "boutique", "outfit", "sneakers", "collection", "style"),
        "health": ("fitness", "vitamins", "clinic", "sleep", "wellness", "dental"),
    },
}

ADJECTIVES = ("classic", "modern", "compact", "premium", "essential", "bold", "quiet", "bright",
              "handmade", "ultimate", "everyday", "vintage")
FILLER = ("great", "value", "popular", "choice", "new", "favourite", "quality", "original")
ADVERTISERS = ("Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella", "Tailspin",
               "Litware")

#: Each scenario's events as a share of the event budget: shop and video split most of it,
#: and the ad slot, shown on most pages, adds about as many impressions as the whole budget.
SCENARIO_SHARE = {"shop": 0.45, "video": 0.35, "ads": 1.0}
#: The first event of a content scenario, then follow-ups, each gated by the user's utility
#: for the item exceeding a threshold (a purchase needs a cart first).
FUNNELS = {
    "shop": ("view", (("cart", 5.5), ("purchase", 5.5))),
    "video": ("watch", (("like", 5.0),)),
}


@dataclass(frozen=True)
class SyntheticConfig:
    users: int = 2000
    items: int = 500
    ads: int = 100
    events: int = 100_000
    weeks: int = 8
    factors: int = 8
    seed: int = 0
    #: The ad slot's impressions as a share of the event budget (``SCENARIO_SHARE``'s).
    ad_traffic: float = SCENARIO_SHARE["ads"]
    #: When the events end (ISO 8601 or a Timestamp; UTC unless a zone is given); None: now,
    #: to the hour.
    end: str | pd.Timestamp | None = None

    def __post_init__(self) -> None:
        for name in ("users", "items", "ads", "events", "weeks", "factors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.ad_traffic > 0:
            raise ValueError(f"ad_traffic must be above 0, got {self.ad_traffic}")
        if self.end is None:
            end = pd.Timestamp.now(tz="UTC").floor("h")
        else:
            try:
                end = pd.Timestamp(self.end)
            except (ValueError, TypeError):
                raise ValueError(f"end must be an ISO 8601 time, got {self.end!r}") from None
            end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
        object.__setattr__(self, "end", end)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _sample_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each entry of ``rows``, draw a column from that row's distribution in ``probs``.

    One ``searchsorted`` over the row-offset cumulative sums: row r's CDF lives in [r, r+1].
    """
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    n_cols = probs.shape[1]
    flat = (cdf + np.arange(len(probs))[:, None]).ravel()
    draws = rows + rng.random(len(rows)) * (1 - 1e-12)
    cols = np.searchsorted(flat, draws, side="right") - rows * n_cols
    return np.clip(cols, 0, n_cols - 1)


def _text(rng: np.random.Generator, words: tuple[str, ...], n: int) -> tuple[list[str], list[str]]:
    """Titles and descriptions whose content words come from the category's vocabulary."""
    w = np.asarray(words)
    picks = w[rng.integers(0, len(w), size=(n, 4))]
    adj = np.asarray(ADJECTIVES)[rng.integers(0, len(ADJECTIVES), size=n)]
    fill = np.asarray(FILLER)[rng.integers(0, len(FILLER), size=(n, 2))]
    titles = [f"{a.capitalize()} {p[0]} {p[1]}" for a, p in zip(adj, picks, strict=True)]
    texts = [
        f"{t}. A {f[0]} {p[2]} pick with {p[3]} appeal, a {f[1]} {p[0]} for fans of {p[1]}."
        for t, p, f in zip(titles, picks, fill, strict=True)
    ]
    return titles, texts


@dataclass(frozen=True)
class _People:
    ids: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    taste: np.ndarray
    activity: np.ndarray


@dataclass(frozen=True)
class _Catalogue:
    ids: np.ndarray
    latent: np.ndarray
    bias: np.ndarray
    frame: pd.DataFrame


def generate(config: SyntheticConfig | None = None, plugins: bool = True) -> Dataset:
    """The world of ``config``; with ``plugins``, every registered ``SyntheticScenario``'s
    items and events too."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    start = pd.Timestamp(cfg.end) - pd.Timedelta(weeks=cfg.weeks)
    profile_time = start - pd.Timedelta(days=1)
    people, users = _users(rng, cfg, profile_time)
    item_frames, ads_frame, event_frames, truth = [], None, [], None
    for scenario, share in SCENARIO_SHARE.items():
        share = cfg.ad_traffic if scenario == "ads" else share
        catalogue = _catalogue(rng, cfg, scenario, profile_time)
        item_frames.append(catalogue.frame)
        affinity = people.taste @ catalogue.latent.T / np.sqrt(cfg.factors)  # users x items
        # follow-up events (carts, likes, clicks) add about a sixth on top of the first ones
        n_base = max(1, int(round(cfg.events * share * 0.86)))
        # events per user in proportion to activity; every user gets a Poisson share
        rows = np.repeat(np.arange(cfg.users),
                         rng.poisson(people.activity / people.activity.sum() * n_base))
        seconds = rng.uniform(0, cfg.weeks * 7 * 86400, size=len(rows))
        ts = start + pd.to_timedelta(seconds, unit="s")
        if scenario == "ads":
            ads_frame, frames, truth = _ad_events(rng, people, catalogue, affinity, rows, ts,
                                                  profile_time)
        else:
            frames = _content_events(rng, scenario, people, catalogue, affinity, rows, ts)
        event_frames += frames
    if plugins:
        world = SyntheticWorld(users=users.drop(columns=[C.EVENT_TIMESTAMP]), start=start,
                               end=pd.Timestamp(cfg.end), events=cfg.events, items=cfg.items,
                               seed=cfg.seed)
        for items, events in plugin_scenarios(world, item_frames).values():
            if C.EVENT_TIMESTAMP not in items:  # listed from the start, like the core's
                items = items.assign(**{C.EVENT_TIMESTAMP: profile_time})
            item_frames.append(items)
            event_frames.append(events)
    events = pd.concat(event_frames, ignore_index=True)
    items = pd.concat(item_frames, ignore_index=True)
    return Dataset(events=events, users=users, items=items, ads=ads_frame, truth=truth)


class SyntheticDataError(ValueError):
    """A plugin's synthetic scenario gave tables the world cannot take (names the plugin's
    scenario and the problem)."""


def plugin_scenarios(world: SyntheticWorld, catalogues: list[pd.DataFrame]
                     ) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Every registered ``SyntheticScenario``'s ``(items, events)`` in ``world``, checked
    against the core's schema and the items already in ``catalogues``."""
    from hybridrec.plugins import get_registry

    registry = get_registry()
    taken = set(pd.concat(catalogues)[C.ITEM_ID].astype(str)) if catalogues else set()
    out = {}
    for name, cls in registry.kind("synthetic_scenarios").items():
        if name in SCENARIO_SHARE:
            raise SyntheticDataError(f"synthetic scenario {name!r}: the core generates that "
                                     "scenario itself")
        if name not in registry.scenarios:
            raise SyntheticDataError(f"synthetic scenario {name!r} has no registered "
                                     f"Scenario of that name")
        try:
            items, events = cls().generate(world)
        except Exception as exc:  # a plugin's bug: name it, and which plugin
            owner = registry.owner("synthetic_scenarios", name)
            raise SyntheticDataError(f"synthetic scenario {name!r} (plugin {owner!r}) failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
        out[name] = checked_tables(name, items, events, world, taken,
                                   registry.scenarios[name].event_types)
        taken |= set(out[name][0][C.ITEM_ID])
    return out


#: Item columns a plugin may leave out, and what fills them.
ITEM_DEFAULTS = {"category": None, "title": "", "text": "", "price": np.nan}


def checked_tables(name: str, items: pd.DataFrame, events: pd.DataFrame,
                   world: SyntheticWorld, taken: set[str],
                   event_types: Iterable[str] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``items`` and ``events`` in the core's schema, or SyntheticDataError naming what is
    wrong (``event_types``: those the scenario accepts, when known)."""
    def fail(problem: str) -> SyntheticDataError:
        return SyntheticDataError(f"synthetic scenario {name!r}: {problem}")

    for label, frame, needed in (("items", items, (C.ITEM_ID, C.SCENARIO)),
                                 ("events", events, EVENT_COLUMNS)):
        if not isinstance(frame, pd.DataFrame):
            raise fail(f"{label} is a {type(frame).__name__}, not a pandas DataFrame")
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise fail(f"{label} lack column(s) {', '.join(missing)}")
        if frame.empty:
            raise fail(f"no {label}")
        if not (frame[C.SCENARIO] == name).all():
            raise fail(f"{label} of another scenario than {name!r}")
        for key in (C.ITEM_ID, C.USER_ID):
            if key in needed and frame[key].isna().any():
                raise fail(f"{label} with no {key}")
    items = items.assign(**{c: v for c, v in ITEM_DEFAULTS.items() if c not in items})
    items = items.assign(**{C.ITEM_ID: items[C.ITEM_ID].astype(str),
                            "price": items["price"].astype("float32")})
    events = events.assign(**{C.ITEM_ID: events[C.ITEM_ID].astype(str),
                              C.USER_ID: events[C.USER_ID].astype(str)})
    ids = items[C.ITEM_ID]
    clash = sorted((set(ids) & taken) | set(ids[ids.duplicated()]))
    if clash:
        raise fail(f"item ids taken by another scenario or repeated, e.g. {clash[:3]}")
    unknown = sorted(set(events[C.ITEM_ID]) - set(ids))
    if unknown:
        raise fail(f"events on items not in its items, e.g. {unknown[:3]}")
    strangers = sorted(set(events[C.USER_ID]) - set(world.users[C.USER_ID].astype(str)))
    if strangers:
        raise fail(f"events of users not in the world, e.g. {strangers[:3]}")
    if event_types is not None:
        odd = sorted(set(events[C.EVENT_TYPE].astype(str)) - set(event_types))
        if odd:
            raise fail(f"event types {odd} the scenario does not accept "
                       f"({', '.join(event_types)})")
    value = pd.to_numeric(events[C.VALUE], errors="coerce")
    if value.isna().any():
        raise fail("events whose value is not a number")
    ts = pd.to_datetime(events[C.EVENT_TIMESTAMP], utc=True, errors="coerce")
    if ts.isna().any() or ts.min() < world.start or ts.max() > world.end:
        raise fail(f"events from {ts.min()} to {ts.max()} (or at no time), outside the "
                   f"world's span {world.start} to {world.end}")
    extra = [c for c in events.columns if c not in (*EVENT_COLUMNS, *C.CONTEXT_COLUMNS)]
    if extra:
        raise fail(f"events carry column(s) {', '.join(map(str, extra))}, which the event log "
                   f"does not keep (it keeps {', '.join(EVENT_COLUMNS + list(C.CONTEXT_COLUMNS))}"
                   "); put item facts in the items, where a DerivedTable can read them")
    events = events.assign(**{C.EVENT_TIMESTAMP: ts, C.VALUE: value})
    # the item table keeps a plugin's own columns too (empty for other scenarios' items)
    columns = [C.ITEM_ID, C.SCENARIO, *ITEM_DEFAULTS,
               *(c for c in items.columns if c not in (C.ITEM_ID, C.SCENARIO, *ITEM_DEFAULTS,
                                                       C.EVENT_TIMESTAMP))]
    if C.EVENT_TIMESTAMP in items:  # when each item was listed
        listed = pd.to_datetime(items[C.EVENT_TIMESTAMP], utc=True, errors="coerce")
        if listed.isna().any() or listed.max() > world.end:
            raise fail(f"items listed after the world's end {world.end} or at no time")
        early = ts.to_numpy() < pd.Series(listed.to_numpy(), index=ids.to_numpy()).reindex(
            events[C.ITEM_ID]).to_numpy()
        if early.any():
            raise fail(f"{int(early.sum())} events before their item is listed, e.g. on "
                       f"{events[C.ITEM_ID].to_numpy()[early][0]!r}")
        items = items.assign(**{C.EVENT_TIMESTAMP: listed})
        columns.append(C.EVENT_TIMESTAMP)
    return items[columns], events


def _users(rng: np.random.Generator, cfg: SyntheticConfig,
           profile_time: pd.Timestamp) -> tuple[_People, pd.DataFrame]:
    user_ids = np.array([f"u{i:05d}" for i in range(cfg.users)])
    age = rng.integers(18, 71, size=cfg.users)
    gender = rng.choice(np.array(["F", "M"]), size=cfg.users)
    occupation = rng.choice(np.array(OCCUPATIONS), size=cfg.users)
    taste = rng.normal(size=(cfg.users, cfg.factors))
    activity = rng.lognormal(mean=0.0, sigma=0.8, size=cfg.users)
    users = pd.DataFrame({C.USER_ID: user_ids, "age": age.astype("int64"), "gender": gender,
                          "occupation": occupation, C.EVENT_TIMESTAMP: profile_time})
    return _People(user_ids, age, gender, taste, activity), users


def _catalogue(rng: np.random.Generator, cfg: SyntheticConfig, scenario: str,
               profile_time: pd.Timestamp) -> _Catalogue:
    """Items with a category, a hidden vector (category centroid plus a part only
    co-occurrence reveals), a popularity bias, and text from the category's words."""
    vocab = CATEGORY_WORDS[scenario]
    categories = np.array(list(vocab))
    n_items = cfg.ads if scenario == "ads" else cfg.items
    ids = np.array([f"{scenario[0]}{i:05d}" for i in range(n_items)])
    cat_idx = rng.integers(0, len(categories), size=n_items)
    centroids = rng.normal(size=(len(categories), cfg.factors))
    latent = 0.75 * centroids[cat_idx] + 0.66 * rng.normal(size=(n_items, cfg.factors))
    bias = rng.normal(scale=0.8, size=n_items)
    titles, texts = [], []
    for k, cat in enumerate(categories):
        members = np.flatnonzero(cat_idx == k)
        t, d = _text(rng, vocab[cat], len(members))
        titles.append(pd.Series(t, index=members))
        texts.append(pd.Series(d, index=members))
    price = (np.round(rng.lognormal(3.0, 0.8, size=n_items), 2) if scenario == "shop"
             else np.full(n_items, np.nan))
    frame = pd.DataFrame({
        C.ITEM_ID: ids, C.SCENARIO: scenario, "category": categories[cat_idx],
        "title": pd.concat(titles).sort_index().to_numpy(),
        "text": pd.concat(texts).sort_index().to_numpy(), "price": price.astype("float32"),
        C.EVENT_TIMESTAMP: profile_time,
    })
    return _Catalogue(ids, latent, bias, frame)


def _ad_events(rng: np.random.Generator, people: _People, ads: _Catalogue,
               affinity: np.ndarray, rows: np.ndarray, ts: pd.DatetimeIndex,
               profile_time: pd.Timestamp) -> tuple[pd.DataFrame, list[pd.DataFrame],
                                                    pd.DataFrame]:
    """Ads served by a uniformly random logging policy (among the ads live at the time, in a
    random slot of three), clicked more when the user matches the ad's targeting, likes its
    category, sees it in a higher slot, in the evening, and while the ad is fresh.

    Impressions and clicks carry their slot ``position``, the logging ``policy`` and its
    ``propensity`` (the probability it showed that ad). The third frame is the truth: each
    impression's click probability."""
    n_items = len(ads.ids)
    target_gender = rng.choice(np.array(["F", "M", "any"]), size=n_items)
    age_min = rng.integers(18, 50, size=n_items)
    age_max = age_min + rng.integers(10, 30, size=n_items)
    # campaigns start from two weeks before the log until its end; the first ads run from the
    # start, so every impression has ads to choose from
    span = (ts.max() - profile_time).total_seconds() if len(ts) else 0.0
    offsets = rng.uniform(-14 * 86400, max(span, 0.0), size=n_items)
    offsets[: max(1, n_items // 5)] = -14 * 86400 - rng.uniform(0, 86400, max(1, n_items // 5))
    launched = profile_time + pd.to_timedelta(np.sort(offsets), unit="s")
    frame = pd.DataFrame({
        C.AD_ID: ads.ids, "advertiser": rng.choice(np.array(ADVERTISERS), size=n_items),
        "bid": np.round(rng.uniform(0.2, 3.0, size=n_items), 2).astype("float32"),
        "target_gender": target_gender, "target_age_min": age_min.astype("int64"),
        "target_age_max": age_max.astype("int64"), "launched_at": launched,
        C.EVENT_TIMESTAMP: profile_time,
    })
    # an impression picks uniformly among the ads launched by its time (ads are sorted by
    # launch, so those are the first ``live`` of them)
    live = np.searchsorted(launched.to_numpy(), ts.to_numpy(), side="right")
    cols = np.minimum((rng.random(len(rows)) * live).astype(np.int64), live - 1)
    position = rng.integers(1, 4, size=len(rows))
    age, gender = people.age[rows], people.gender[rows]
    match = ((target_gender[cols] == "any") | (target_gender[cols] == gender)) & (
        (age >= age_min[cols]) & (age <= age_max[cols]))
    hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60
    ad_days = (ts - launched[cols]).total_seconds().to_numpy() / 86400
    logit = (-3.4 + 1.8 * match + 0.6 * affinity[rows, cols] + 0.3 * ads.bias[cols]
             - 0.45 * (position - 1) + 0.35 * np.cos(2 * np.pi * (hour - 20) / 24)
             - 0.3 * np.log1p(ad_days / 7))
    p_click = _sigmoid(logit)
    clicked = rng.random(len(rows)) < p_click
    context = {C.POSITION: position, C.POLICY: "random", C.PROPENSITY: 1.0 / live}
    shown = _events(ads.ids[cols], people.ids[rows], "ads", "impression", ts, context)
    click_context = {k: (v[clicked] if isinstance(v, np.ndarray) else v)
                     for k, v in context.items()}
    clicks = _events(ads.ids[cols[clicked]], people.ids[rows[clicked]], "ads", "click",
                     ts[clicked] + pd.Timedelta(seconds=5), click_context)
    truth = shown[[C.USER_ID, C.ITEM_ID, C.EVENT_TIMESTAMP]].assign(p_click=p_click)
    return frame, [shown, clicks], truth


def _content_events(rng: np.random.Generator, scenario: str, people: _People,
                    items: _Catalogue, affinity: np.ndarray, rows: np.ndarray,
                    ts: pd.DatetimeIndex) -> list[pd.DataFrame]:
    """A first event on an item drawn by utility, then follow-ups gated by it."""
    utility = 1.6 * affinity + items.bias
    probs = np.exp(utility - utility.max(axis=1, keepdims=True))
    cols = _sample_rows(rng, probs, rows)
    u = utility[rows, cols]
    first, follow_ups = FUNNELS[scenario]
    frames = [_events(items.ids[cols], people.ids[rows], scenario, first, ts)]
    keep = np.ones(len(rows), dtype=bool)
    offset = pd.Timedelta(0)
    for follow, threshold in follow_ups:
        keep &= rng.random(len(rows)) < _sigmoid(1.5 * (u - threshold))
        offset += pd.Timedelta(minutes=3)
        frames.append(_events(items.ids[cols[keep]], people.ids[rows[keep]], scenario, follow,
                              ts[keep] + offset))
    return frames


def _events(items: np.ndarray, users: np.ndarray, scenario: str, event_type: str,
            ts: pd.DatetimeIndex, context: dict[str, object] | None = None) -> pd.DataFrame:
    return pd.DataFrame({C.USER_ID: users, C.ITEM_ID: items, C.SCENARIO: scenario,
                         C.EVENT_TYPE: event_type, C.VALUE: 1.0, C.EVENT_TIMESTAMP: ts,
                         **(context or {})})
