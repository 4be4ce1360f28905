"""The built-in scenarios: ``shop``, ``video`` and ``ads`` (synthetic world), ``movies``
(MovieLens) and ``obd_men``, ``obd_women`` (the Open Bandit Dataset's campaigns)."""

from __future__ import annotations

from hybridrec.contracts import AD_ITEM_KEYS, Scenario
from hybridrec.hookspecs import hookimpl

SHOP = Scenario(
    name="shop",
    description="Product recommendations: views, carts and purchases.",
    event_weights={"view": 1.0, "cart": 4.0, "purchase": 10.0},
    positive_events=("cart", "purchase"),
    objective=("purchase",),
    objective_events={"purchase": 1.0, "cart": 0.2},
    fallback="popularity",
)
VIDEO = Scenario(
    name="video",
    description="Video feed: watches and likes.",
    event_weights={"watch": 1.0, "like": 5.0},
    positive_events=("watch", "like"),
    objective=("like",),
    objective_events={"like": 1.0, "watch": 0.2},
    fallback="popularity",
)
ADS = Scenario(
    name="ads",
    description="Ad slot: impressions and clicks; ranked by expected value, click-through "
                "rate times bid.",
    event_weights={"impression": 0.0, "click": 1.0},
    positive_events=("click",),
    objective=("ctr",),
    objective_events={"click": 1.0},
    objective_value="ad_profile:bid",
    item_keys=AD_ITEM_KEYS,
    fallback="popularity",
)
MOVIES = Scenario(
    name="movies",
    description="MovieLens-style ratings (1 to 5 stars), every rating an interaction.",
    event_weights={"rating": 1.0},
    positive_events=("rating",),
    objective=("rating",),
    fallback="popularity",
)



def _obd(campaign: str) -> Scenario:
    return Scenario(
        name=f"obd_{campaign}",
        description=f"Open Bandit Dataset, ZOZOTOWN '{campaign}' campaign: three slots of "
                    "fashion items, impressions and clicks, logged with propensities.",
        event_weights={"impression": 0.0, "click": 1.0},
        positive_events=("click",),
        objective=("ctr",),
        fallback="popularity",
        default_k=3,
        max_k=50,
        n_candidates=100,
    )


OBD_MEN, OBD_WOMEN = _obd("men"), _obd("women")
BUILTIN_SCENARIOS = (SHOP, VIDEO, ADS, MOVIES, OBD_MEN, OBD_WOMEN)


@hookimpl
def register_scenarios(register):
    for scenario in BUILTIN_SCENARIOS:
        register(scenario)
