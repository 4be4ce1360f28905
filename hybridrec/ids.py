"""Positions of ids in a fixed array, looked up many times a request.

pandas' ``Index.get_indexer`` infers the dtype of every query (about 0.1 ms for a few hundred
string ids); a dict answers a request's few hundred ids several times faster, and large
batches (offline evaluation) still go through pandas' hash table.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

#: Queries up to this size use the dict.
SMALL = 4096


class IdIndex:
    """``positions(ids)``: where each id sits in ``ids``, -1 where it is absent."""

    def __init__(self, ids: Sequence[str] | np.ndarray) -> None:
        self.ids = np.asarray(ids)
        self._pos = {x: i for i, x in enumerate(self.ids.tolist())}
        if len(self._pos) != len(self.ids):
            values, counts = np.unique(self.ids, return_counts=True)
            raise ValueError(f"id {values[counts > 1][0]!r} appears more than once; ids must "
                             "be unique")
        self._pandas: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._pos

    def get(self, item_id: str) -> int:
        """The position of one id, -1 when absent."""
        return self._pos.get(item_id, -1)

    def positions(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        n = len(ids)
        if n <= SMALL:
            keys = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
            return np.fromiter(map(self._pos.get, keys, repeat(-1)), dtype=np.int64, count=n)
        if self._pandas is None:
            import pandas as pd

            self._pandas = pd.Index(self.ids.astype(object))
        return self._pandas.get_indexer(np.asarray(ids, dtype=object)).astype(np.int64)
