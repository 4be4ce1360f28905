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
# Optional per-event context, kept where a data set has it: the slot an item was shown in
# (1 = first), the policy that chose it and the probability with which it did.
POSITION = "position"
POLICY = "policy"
PROPENSITY = "propensity"
# A logged affinity of the user for the item shown (the Open Bandit Dataset's).
AFFINITY = "affinity"
CONTEXT_COLUMNS = (POSITION, POLICY, PROPENSITY, AFFINITY)

# Parquet files under ``feature_repo/data/``.
EVENTS_FILE = "events.parquet"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
ADS_FILE = "ads.parquet"
USER_ACTIVITY_FILE = "user_activity.parquet"
ITEM_POPULARITY_FILE = "item_popularity.parquet"
# Anonymised (hashed) attributes some data sets carry instead of named profiles.
USER_SEGMENTS_FILE = "user_segments.parquet"
ITEM_ATTRIBUTES_FILE = "item_attributes.parquet"

# Entity names (Feast) and their join keys.
USER_ENTITY = "user"
ITEM_ENTITY = "item"
AD_ENTITY = "ad"
