"""Everything that talks to Feast: definitions, materialisation, training frames, online reads.

Feast is imported inside the functions that need it, so ``import hybridrec`` stays light.
``FEAST_USAGE`` is switched off before the first Feast import (no telemetry from here).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridrec import columns as C
from hybridrec.builtin import features as F

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

os.environ.setdefault("FEAST_USAGE", "False")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def feast_definitions(repo_path: Path) -> dict[str, Any]:
    """Feast objects registered by the core and every loaded plugin, by name, with their
    Parquet paths resolved against the feature repository ``repo_path``."""
    from hybridrec.plugins import get_registry

    return get_registry().feature_definitions_for(repo_path)


def open_store(repo: Path) -> FeatureStore:
    import warnings

    from feast import FeatureStore

    # ibis (under Feast's DuckDB store) calls a DuckDB API that warns on every query; added
    # after the Feast import, which installs filters of its own.
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*",
                            category=DeprecationWarning)

    if not (Path(repo) / "feature_store.yaml").is_file():
        raise FileNotFoundError(f"{repo} has no feature_store.yaml; pass the feature repository")
    return FeatureStore(repo_path=str(repo))


def check_applied(store: FeatureStore) -> None:
    """Fail with a useful message when ``feast apply`` has not been run on the repository."""
    names = {view.name for view in store.list_feature_views()}
    missing = [view for view in F.VIEW_FIELDS if view not in names]
    if missing:
        raise RuntimeError(
            f"feature views {', '.join(missing)} are not registered; run 'feast apply' inside "
            f"{store.repo_path}"
        )


def materialize(repo: Path, end: datetime | None = None) -> list[str]:
    """Load the latest value of every feature view into the online store; return view names."""
    store = open_store(repo)
    check_applied(store)
    views = [v.name for v in store.list_feature_views() if v.online]
    store.materialize(start_date=EPOCH, end_date=end or datetime.now(UTC), feature_views=views)
    return views


def point_in_time(store: FeatureStore, entity_df: pd.DataFrame, features: Any) -> pd.DataFrame:
    """``entity_df`` (join keys + ``event_timestamp``) with ``features`` joined as of each row's
    timestamp, in the same row order; columns are named ``view__feature``.

    ``features`` is a list of ``view:feature`` references or a FeatureService.
    """
    frame = entity_df.reset_index(drop=True).copy()
    frame["_row"] = np.arange(len(frame))
    joined = store.get_historical_features(
        entity_df=frame, features=features, full_feature_names=True
    ).to_df()
    joined = joined.sort_values("_row").reset_index(drop=True)
    return joined.drop(columns="_row")


def historical_frame(
    store: FeatureStore, events: pd.DataFrame, feature_service: str
) -> pd.DataFrame:
    """Events with the service's features joined point-in-time correctly.

    The ``ad_id`` join key is the item id, so ad features attach to the events of ad items and
    are null elsewhere.
    """
    entity_df = events[[C.USER_ID, C.ITEM_ID, C.EVENT_TIMESTAMP]].copy()
    entity_df[C.AD_ID] = entity_df[C.ITEM_ID]
    joined = point_in_time(store, entity_df, store.get_feature_service(feature_service))
    out = events.reset_index(drop=True).copy()
    for col in joined.columns:
        if "__" in col:
            out[col] = joined[col].to_numpy()
    return out


_ONLINE_LOCK = threading.Lock()


def _online_rows(
    store: FeatureStore, refs: list[str], key: str, ids: Sequence[str]
) -> dict[str, list[Any]]:
    # Feast's SQLite online store shares one connection across threads; reads are serialised
    # here so the server's worker threads and the cache refresh never interleave on it.
    with _ONLINE_LOCK:
        response = store.get_online_features(
            features=refs, entity_rows=[{key: i} for i in ids], full_feature_names=True
        )
    return response.to_dict()


def take_aligned(column: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``column[pos]`` as an object array, None where ``pos`` is -1 (an unknown item)."""
    if len(column) == 0:
        return np.full(len(pos), None, dtype=object)
    out = column[np.maximum(pos, 0)].astype(object, copy=False)  # fancy indexing copies
    out[pos < 0] = None
    return out


class UserFeatures:
    """Per-request user features from the online store (one entity, a fraction of a ms)."""

    def __init__(self, store: FeatureStore, views: Iterable[str] = F.USER_VIEWS) -> None:
        self.store = store
        self.refs = F.feature_refs(tuple(views))

    def get(self, user_id: str) -> dict[str, Any]:
        """``{view__feature: value}``; an empty dict when the store knows nothing of the user."""
        row = _online_rows(self.store, self.refs, C.USER_ID, [user_id])
        values = {k: v[0] for k, v in row.items() if k != C.USER_ID}
        return values if any(v is not None for v in values.values()) else {}


class ItemCache:
    """Item features for the whole catalogue, in memory as columns, refreshed in place.

    Requests read columns with one vectorised ``take``; a refresh builds new arrays and swaps
    them in under a lock, so readers never see a half-built state.
    """

    def __init__(self, store: FeatureStore, item_ids: Sequence[str],
                 ad_ids: Sequence[str] = ()) -> None:
        self.store = store
        self.item_ids = list(item_ids)
        self.ad_ids = list(ad_ids)
        self._lock = threading.Lock()
        self._index: Any = None
        self._columns: dict[str, np.ndarray] = {}
        self.loaded_at = 0.0
        self.refresh()

    def refresh(self) -> None:
        import pandas as pd

        index = pd.Index(self.item_ids)
        columns: dict[str, np.ndarray] = {}
        if self.item_ids:
            rows = _online_rows(self.store, F.feature_refs(F.ITEM_VIEWS), C.ITEM_ID,
                                self.item_ids)
            for name, values in rows.items():
                if name != C.ITEM_ID:
                    columns[name] = np.asarray(values, dtype=object)
        ad_refs = F.feature_refs((F.AD_PROFILE,))
        ad_cols = {ref.replace(":", "__"): np.full(len(index), None, dtype=object)
                   for ref in ad_refs}
        if self.ad_ids:
            rows = _online_rows(self.store, ad_refs, C.AD_ID, self.ad_ids)
            pos = index.get_indexer(self.ad_ids)
            for name, values in rows.items():
                if name != C.AD_ID:
                    ad_cols[name][pos[pos >= 0]] = np.asarray(values, dtype=object)[pos >= 0]
        columns.update(ad_cols)
        with self._lock:
            self._index, self._columns = index, columns
            self.loaded_at = time.time()

    def take(self, item_ids: np.ndarray,
             columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Columns (``view__feature``; all when None) aligned with ``item_ids``; None where an
        item is not in the cache."""
        with self._lock:
            index, cached = self._index, self._columns
        pos = index.get_indexer(item_ids)
        wanted = cached if columns is None else {c: cached[c] for c in columns if c in cached}
        return {name: take_aligned(col, pos) for name, col in wanted.items()}

    def __len__(self) -> int:
        return len(self.item_ids)
