"""The core's Feast objects: entities, sources and one feature view per data table.

Registered through ``register_feature_definitions`` like any plugin's, and bound into
``feature_repo/definitions.py`` so ``feast apply`` sees them. Sources point at the Parquet
files the ``hybridrec data`` commands write under ``feature_repo/data/`` (their schemas live in
``hybridrec.data.schema``). Components say which of these features they read
(``feature_refs``); nothing is fetched that no component declares.
"""

from __future__ import annotations

from datetime import timedelta

from hybridrec import columns as C
from hybridrec.data import schema as T
from hybridrec.hookspecs import hookimpl

USER_PROFILE = "user_profile"
USER_ACTIVITY = "user_activity"
ITEM_PROFILE = "item_profile"
ITEM_POPULARITY = "item_popularity"
AD_PROFILE = "ad_profile"
USER_SEGMENT = "user_segment"
ITEM_ATTRIBUTES = "item_attributes"

#: Feature view -> the table it reads.
VIEWS = {
    USER_PROFILE: T.USERS,
    USER_ACTIVITY: T.USER_ACTIVITY,
    ITEM_PROFILE: T.ITEMS,
    ITEM_POPULARITY: T.ITEM_POPULARITY,
    AD_PROFILE: T.ADS,
    USER_SEGMENT: T.USER_SEGMENTS,
    ITEM_ATTRIBUTES: T.ITEM_ATTRIBUTES,
}

#: Entity name per join key.
ENTITIES = {C.USER_ID: C.USER_ENTITY, C.ITEM_ID: C.ITEM_ENTITY, C.AD_ID: C.AD_ENTITY}


def feature_refs(*views: str) -> tuple[str, ...]:
    """``view:feature`` references for every feature of ``views``."""
    return tuple(f"{view}:{name}" for view in views for name in VIEWS[view].fields)


@hookimpl
def register_feature_definitions(register, repo_path):
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast import types as feast_types

    entities = {key: Entity(name=name, join_keys=[key], value_type=ValueType.STRING)
                for key, name in ENTITIES.items()}
    for obj in entities.values():
        register(obj)
    for view, table in VIEWS.items():
        source = FileSource(
            name=f"{view}_source",
            path=str(repo_path / "data" / table.file) if repo_path else f"data/{table.file}",
            timestamp_field=C.EVENT_TIMESTAMP,
        )
        register(FeatureView(
            name=view,
            entities=[entities[table.key]],
            ttl=timedelta(0),  # no expiry: profiles and daily snapshots hold until replaced
            schema=[Field(name=n, dtype=getattr(feast_types, t))
                    for n, t in table.fields.items()],
            source=source,
            online=True,
        ))
