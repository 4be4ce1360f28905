"""The ``item_text_embedding`` feature view: its Parquet table, what goes in it, and the push
online.

One row per item: the L2-normalised embedding of the item's text (``Array(Float32)``), the
``encoder`` that embedded it (a scorer trained with another encoder ignores the row: its
vectors live in another space) and ``text_hash``, a hash of the text and of that encoder, so
re-embedding touches only items whose text or encoder changed. The table lives at
``feature_repo/data/item_text_embedding.parquet``; every write also goes to the online
store, where the server's item cache and any other plugin read it. NumPy, pandas and Feast
only: nothing here loads a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec import columns as C
from hybridrec.features import SERVING_ONLY_TAG

VIEW = "item_text_embedding"
FILE = f"{VIEW}.parquet"
EMBEDDING = "embedding"
TEXT_HASH = "text_hash"
ENCODER = "encoder"
#: How batches and frames name the embedding (``view__feature``).
COLUMN = f"{VIEW}__{EMBEDDING}"
REF = f"{VIEW}:{EMBEDDING}"
ENCODER_REF = f"{VIEW}:{ENCODER}"
ENCODER_COLUMN = f"{VIEW}__{ENCODER}"
#: Item-table columns that make an item's text, in this order.
TEXT_FIELDS = ("title", "category", "text")


def item_texts(items: Any) -> list[str]:
    """Each item's text: title, category and description, each once, joined with '. '."""
    parts = [items[f].fillna("").astype(str).to_numpy() if f in items else
             np.full(len(items), "", dtype=object) for f in TEXT_FIELDS]
    texts = []
    for row in zip(*parts, strict=True):
        seen: list[str] = []
        for part in row:
            part = part.strip().rstrip(".")
            if not part or any(part in s for s in seen):
                continue
            seen = [s for s in seen if s not in part]  # a longer part that contains it
            seen.append(part)
        texts.append(". ".join(seen))
    return texts


def text_hashes(texts: list[str], encoder_id: str) -> np.ndarray:
    return np.array([hashlib.sha1(f"{encoder_id}\n{t}".encode()).hexdigest()[:20]
                     for t in texts], dtype=object)


def path_of(repo: Path) -> Path:
    return Path(repo) / "data" / FILE


def empty_table() -> Any:
    import pyarrow as pa

    return pa.table({
        C.ITEM_ID: pa.array([], pa.string()),
        EMBEDDING: pa.array([], pa.list_(pa.float32())),
        TEXT_HASH: pa.array([], pa.string()),
        ENCODER: pa.array([], pa.string()),
        C.EVENT_TIMESTAMP: pa.array([], pa.timestamp("us", tz="UTC")),
    })


def ensure_table(repo: Path) -> Path:
    """The view's Parquet file, created empty if missing (Feast reads it when joining or
    materialising, before anything was embedded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = path_of(repo)
    if not path.exists() and path.parent.is_dir():
        pq.write_table(empty_table(), str(path))
    elif path.exists():  # written by an earlier version: add the columns it lacks
        table = pq.read_table(str(path))
        missing = [f for f in empty_table().schema if f.name not in table.column_names]
        if missing:
            for f in missing:
                table = table.append_column(f, pa.nulls(len(table), f.type))
            pq.write_table(table.select(empty_table().schema.names), str(path))
    return path


def read(repo: Path) -> Any:
    """The stored embeddings: one row per item (the latest), as a pandas frame."""
    import pyarrow.parquet as pq

    path = path_of(repo)
    if not path.exists():
        return empty_table().to_pandas()
    return pq.read_table(str(path)).to_pandas()


def matrix(values: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings given as a column of lists (None where missing) as a float32 matrix and a
    mask of the rows that had one of the right width."""
    import pandas as pd

    values = np.asarray(values, dtype=object)
    out = np.zeros((len(values), dim), dtype=np.float32)
    present = np.flatnonzero(~pd.isna(values))  # None or NaN; no Python loop per row
    widths = np.fromiter(map(len, values[present]), dtype=np.int64, count=len(present))
    rows = present[widths == dim]
    if len(rows):
        out[rows] = np.stack(values[rows])
    ok = np.zeros(len(values), dtype=bool)
    ok[rows] = True
    return out, ok


def stale(repo: Path, item_ids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Which items have no stored embedding for this text and encoder."""
    stored = read(repo)
    current = dict(zip(stored[C.ITEM_ID].astype(str), stored[TEXT_HASH].astype(str),
                       strict=True))
    return np.array([current.get(str(i)) != h for i, h in zip(item_ids, hashes,
                                                                strict=True)], dtype=bool)


def write(store: Any, item_ids: np.ndarray, vectors: np.ndarray, hashes: np.ndarray,
          encoder: str, when: Any = None) -> int:
    """Upsert embeddings into the view's Parquet table and push them to the online store."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not len(item_ids):
        return 0
    repo = Path(store.repo_path)
    when = pd.Timestamp.now(tz="UTC") if when is None else pd.Timestamp(when)
    fresh = pd.DataFrame({
        C.ITEM_ID: np.asarray(item_ids, dtype=str),
        EMBEDDING: list(np.asarray(vectors, dtype=np.float32)),
        TEXT_HASH: np.asarray(hashes, dtype=str),
        ENCODER: encoder,
        C.EVENT_TIMESTAMP: when.floor("us"),
    })
    stored = read(repo)
    kept = stored[~stored[C.ITEM_ID].astype(str).isin(fresh[C.ITEM_ID])]
    frame = pd.concat([kept, fresh], ignore_index=True) if len(kept) else fresh
    table = pa.Table.from_pandas(frame, schema=empty_table().schema, preserve_index=False)
    path = path_of(repo)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, str(tmp))
    tmp.replace(path)
    online = fresh.copy()
    online[EMBEDDING] = [v.tolist() for v in fresh[EMBEDDING]]
    store.write_to_online_store(VIEW, online)
    return len(fresh)


def feature_view(repo_path: Path | None) -> Any:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32, String

    source = FileSource(
        name=f"{VIEW}_source",
        path=str(ensure_table(repo_path)) if repo_path else f"data/{FILE}",
        timestamp_field=C.EVENT_TIMESTAMP,
    )
    item = Entity(name=C.ITEM_ENTITY, join_keys=[C.ITEM_ID], value_type=ValueType.STRING)
    return FeatureView(
        name=VIEW,
        entities=[item],
        ttl=timedelta(0),
        schema=[Field(name=EMBEDDING, dtype=Array(Float32)), Field(name=ENCODER, dtype=String),
                Field(name=TEXT_HASH, dtype=String)],
        source=source,
        online=True,
        # served to scorers, never joined onto every training event (the llm scorer
        # trains from the embeddings it computes)
        tags={SERVING_ONLY_TAG: "true"},
        description="L2-normalised transformer embedding of each item's text "
                    "(hybridrec-llm), the encoder that made it, and a hash of both.",
    )


def by_item(frame: Any) -> Mapping[str, np.ndarray]:
    return {str(i): np.asarray(v, dtype=np.float32)
            for i, v in zip(frame[C.ITEM_ID], frame[EMBEDDING], strict=True)}
