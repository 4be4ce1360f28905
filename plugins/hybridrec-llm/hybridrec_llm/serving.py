"""Scoring with NumPy only: the trained network's arrays, item representations precomputed.

Per request, the user representation is computed once (attention over the precomputed keys of
the user's recent items); per candidate, a gather and three small matrix products (for one
request, the user's part of the first layer is folded into its weights first). Items the
model never saw are represented from their text embedding (read from the
``item_text_embedding`` view), without an ID part. The serving process never imports torch or
transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridrec.contracts import Ragged

#: The heads scored per candidate, in the network's output order (probabilities for click
#: and like, stars for rating); "profile" is the user-level auxiliary task.
ITEM_TASKS = ("click", "like", "rating")
#: Task weightings the trainer knows.
WEIGHTINGS = ("uncertainty", "gradnorm", "fixed")

#: Serving arrays every ServingNet has (``net.export``'s keys).
ARRAYS = ("item_reps", "text_w", "text_b", "user_code", "user_num_w", "user_num_b", "query_w",
          "query_b", "key_w", "key_b", "user1_w", "user1_b", "user2_w", "user2_b", "trunk1_u",
          "trunk1_i", "trunk1_ui", "trunk1_b", "trunk2_w", "trunk2_b", "heads_w", "heads_b",
          "dot_scale")


def _missing(value: Any) -> bool:
    """None, NaN, pandas' NA or NaT."""
    if value is None:
        return True
    try:
        return bool(value != value) or str(value) in ("<NA>", "NaT")
    except TypeError:  # pd.NA refuses to be a bool
        return True


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


@dataclass
class UserCodec:
    """User features as model inputs: categorical values as rows of one embedding table (0
    for unknown or missing, per feature), numeric values standardised with a missing flag."""

    categorical: dict[str, list[str]]  # column -> vocabulary (row = offset + 1 + position)
    numeric: dict[str, tuple[float, float]]  # column -> (mean, std)

    def __post_init__(self) -> None:
        # value -> embedding row, built once (encode runs per request)
        self.lookups: dict[str, dict[str, int]] = {}
        offset = 0
        for column, vocab in self.categorical.items():
            self.lookups[column] = {v: offset + 1 + i for i, v in enumerate(vocab)}
            offset += len(vocab) + 1

    @classmethod
    def fit(cls, frame: Any, columns: list[str], max_values: int = 200) -> UserCodec:
        import pandas as pd

        categorical, numeric = {}, {}
        for column in columns:
            if column not in frame:
                continue
            values = frame[column]
            number = pd.to_numeric(values, errors="coerce")
            if pd.api.types.is_numeric_dtype(values) or (values.notna().any() and
                                                         number.notna().all()):
                mean, std = float(number.mean()), float(number.std() or 1.0)
                numeric[column] = (mean if mean == mean else 0.0, std if std == std else 1.0)
            else:
                counts = values.dropna().astype(str).value_counts()
                categorical[column] = sorted(counts.index[:max_values].tolist())
        return cls(categorical, numeric)

    @property
    def n_codes(self) -> int:
        return sum(len(v) + 1 for v in self.categorical.values())

    @property
    def n_numeric(self) -> int:
        return 2 * len(self.numeric)

    def encode(self, features: Mapping[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, categorical) int codes and (n, 2 * numeric) floats."""
        codes = np.zeros((n, max(len(self.categorical), 1)), dtype=np.int64)
        offset = 0
        for j, (column, lookup) in enumerate(self.lookups.items()):
            values = features.get(column)
            if values is not None:
                codes[:, j] = [offset if _missing(v) else lookup.get(str(v), offset)
                               for v in values]
            else:
                codes[:, j] = offset
            offset += len(lookup) + 1
        numeric = np.zeros((n, max(2 * len(self.numeric), 1)), dtype=np.float32)
        for j, (column, (mean, std)) in enumerate(self.numeric.items()):
            raw = features.get(column)
            x = np.full(n, np.nan) if raw is None else np.asarray(
                [np.nan if _missing(v) else v for v in raw], dtype=float)
            missing = np.isnan(x)
            numeric[:, 2 * j] = np.where(missing, 0.0, (x - mean) / std)
            numeric[:, 2 * j + 1] = missing
        return codes, numeric

    def as_dict(self) -> dict[str, Any]:
        return {"categorical": self.categorical,
                "numeric": {k: list(v) for k, v in self.numeric.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UserCodec:
        return cls(dict(d["categorical"]), {k: (float(v[0]), float(v[1]))
                                            for k, v in d["numeric"].items()})


class ServingNet:
    """The exported network; ``item_reps`` row 0 is padding, row ``p + 1`` is item ``p``."""

    def __init__(self, arrays: Mapping[str, np.ndarray], rating_scale: tuple[float, float]
                 ) -> None:
        self.a = {k: np.ascontiguousarray(arrays[k], dtype=np.float32) for k in ARRAYS}
        a = self.a
        self.rating_scale = rating_scale
        self.keys = a["item_reps"] @ a["key_w"] + a["key_b"]
        self.item_part = a["item_reps"] @ a["trunk1_i"] + a["trunk1_b"]
        self.dim = a["item_reps"].shape[1]

    def text_reps(self, text: np.ndarray) -> np.ndarray:
        return text @ self.a["text_w"] + self.a["text_b"]

    def users(self, history: Ragged, codes: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        """One representation per request; ``history.values`` are item-table rows (>= 1)."""
        a = self.a
        features = a["user_code"][codes].sum(1) + numeric @ a["user_num_w"] + a["user_num_b"]
        q = features @ a["query_w"] + a["query_b"]
        pooled = np.zeros_like(features)
        if len(history.values):
            req = history.row_index()
            logits = np.einsum("ij,ij->i", self.keys[history.values], q[req]) / np.sqrt(self.dim)
            top = np.full(len(history), -np.inf)
            np.maximum.at(top, req, logits)
            w = np.exp(logits - top[req])
            total = np.bincount(req, weights=w, minlength=len(history))
            w = w / total[req]
            np.add.at(pooled, req, w[:, None] * a["item_reps"][history.values])
        h = _relu(np.concatenate([pooled, features], axis=1) @ a["user1_w"] + a["user1_b"])
        return (h @ a["user2_w"] + a["user2_b"]).astype(np.float32)

    def score(self, users: np.ndarray, request: np.ndarray, rows: np.ndarray,
              text: np.ndarray | None = None) -> np.ndarray:
        """Head outputs (n, 3): click and like probabilities, the rating in stars. ``rows``
        are item-table rows; where a row is 0, the matching ``text`` embedding represents
        the item instead."""
        a = self.a
        item = a["item_reps"][rows]
        new = rows == 0
        if text is not None and new.any():
            item[new] = self.text_reps(text[new])
        if len(users) == 1:  # serving: the user's part folded into the first layer's weights
            u = users[0]
            h = item @ (a["trunk1_i"] + u[:, None] * a["trunk1_ui"])
            h += a["trunk1_b"] + u @ a["trunk1_u"]
            dot = item @ u
        else:
            part = self.item_part[rows]
            if text is not None and new.any():
                part[new] = item[new] @ a["trunk1_i"] + a["trunk1_b"]
            u = users[request]
            h = (users @ a["trunk1_u"])[request] + part + (u * item) @ a["trunk1_ui"]
            dot = np.einsum("ij,ij->i", u, item)
        h = _relu(_relu(h) @ a["trunk2_w"] + a["trunk2_b"])
        out = (h @ a["heads_w"] + a["heads_b"] + dot[:, None] * a["dot_scale"]
               ).astype(np.float64)
        out[:, :2] = 1.0 / (1.0 + np.exp(-out[:, :2]))
        mean, std = self.rating_scale
        out[:, 2] = out[:, 2] * std + mean
        return out
