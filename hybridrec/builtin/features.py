"""The core's Feast objects: entities, sources, feature views and one service per scenario.

Registered through ``register_feature_definitions`` like any plugin's, and bound into
``feature_repo/definitions.py`` so ``feast apply`` sees them. Sources point at the Parquet
files the ``hybridrec data`` commands write under ``feature_repo/data/`` (relative paths are
resolved by Feast against the feature repository).
"""

from __future__ import annotations

from datetime import timedelta

from hybridrec import columns as C
from hybridrec.hookspecs import hookimpl

USER_PROFILE = "user_profile"
USER_ACTIVITY = "user_activity"
ITEM_PROFILE = "item_profile"
ITEM_POPULARITY = "item_popularity"
AD_PROFILE = "ad_profile"

#: Feature names per view, with their Feast types by name (kept free of feast imports).
VIEW_FIELDS: dict[str, dict[str, str]] = {
    USER_PROFILE: {"age": "Int64", "gender": "String", "occupation": "String"},
    USER_ACTIVITY: {"events_total": "Int64", "events_7d": "Int64", "items_total": "Int64"},
    ITEM_PROFILE: {
        "scenario": "String",
        "category": "String",
        "title": "String",
        "text": "String",
        "price": "Float32",
    },
    ITEM_POPULARITY: {"events_total": "Int64", "events_7d": "Int64", "positives_total": "Int64"},
    AD_PROFILE: {
        "advertiser": "String",
        "bid": "Float32",
        "target_gender": "String",
        "target_age_min": "Int64",
        "target_age_max": "Int64",
    },
}

VIEW_ENTITY = {
    USER_PROFILE: C.USER_ENTITY,
    USER_ACTIVITY: C.USER_ENTITY,
    ITEM_PROFILE: C.ITEM_ENTITY,
    ITEM_POPULARITY: C.ITEM_ENTITY,
    AD_PROFILE: C.AD_ENTITY,
}

VIEW_FILE = {
    USER_PROFILE: C.USERS_FILE,
    USER_ACTIVITY: C.USER_ACTIVITY_FILE,
    ITEM_PROFILE: C.ITEMS_FILE,
    ITEM_POPULARITY: C.ITEM_POPULARITY_FILE,
    AD_PROFILE: C.ADS_FILE,
}

ENTITY_KEY = {C.USER_ENTITY: C.USER_ID, C.ITEM_ENTITY: C.ITEM_ID, C.AD_ENTITY: C.AD_ID}

USER_VIEWS = (USER_PROFILE, USER_ACTIVITY)
ITEM_VIEWS = (ITEM_PROFILE, ITEM_POPULARITY)

#: Views in each built-in scenario's feature service.
SERVICE_VIEWS = {
    "shop": USER_VIEWS + ITEM_VIEWS,
    "video": USER_VIEWS + ITEM_VIEWS,
    "ads": USER_VIEWS + ITEM_VIEWS + (AD_PROFILE,),
    "movies": USER_VIEWS + ITEM_VIEWS,
}


def feature_refs(views: tuple[str, ...]) -> list[str]:
    """``view:feature`` references for every feature of ``views``."""
    return [f"{view}:{name}" for view in views for name in VIEW_FIELDS[view]]


@hookimpl
def register_feature_definitions(register, repo_path):
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast import types as feast_types

    entities = {
        name: Entity(name=name, join_keys=[key], value_type=ValueType.STRING)
        for name, key in ENTITY_KEY.items()
    }
    views = {}
    for view, fields in VIEW_FIELDS.items():
        source = FileSource(
            name=f"{view}_source",
            path=str(repo_path / "data" / VIEW_FILE[view]) if repo_path else
            f"data/{VIEW_FILE[view]}",
            timestamp_field=C.EVENT_TIMESTAMP,
        )
        views[view] = FeatureView(
            name=view,
            entities=[entities[VIEW_ENTITY[view]]],
            ttl=timedelta(0),  # no expiry: profiles and daily snapshots hold until replaced
            schema=[Field(name=n, dtype=getattr(feast_types, t)) for n, t in fields.items()],
            source=source,
            online=True,
        )
    for obj in entities.values():
        register(obj)
    for obj in views.values():
        register(obj)
    for scenario, names in SERVICE_VIEWS.items():
        register(FeatureService(name=f"{scenario}_features",
                                features=[views[n] for n in names]))
