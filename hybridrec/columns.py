"""Column names and join keys, spelled once.

They match the Feast entities in ``hybridrec.feature_defs`` and the Parquet files the data
commands write, so every module refers to them through these constants.
"""

USER_ID = "user_id"
ITEM_ID = "item_id"
AD_ID = "ad_id"
SCENARIO = "scenario"
EVENT_TYPE = "event_type"
VALUE = "value"
EVENT_TIMESTAMP = "event_timestamp"

# Parquet files under ``feature_repo/data/``.
EVENTS_FILE = "events.parquet"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
ADS_FILE = "ads.parquet"
USER_ACTIVITY_FILE = "user_activity.parquet"
ITEM_POPULARITY_FILE = "item_popularity.parquet"

# Entity names (Feast) and their join keys.
USER_ENTITY = "user"
ITEM_ENTITY = "item"
AD_ENTITY = "ad"
