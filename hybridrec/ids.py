"""Positions of ids in a fixed array, looked up many times a request.

pandas' ``Index.get_indexer`` infers the dtype of every query (about 0.1 ms for a few hundred
string ids); a dict answers a request's few hundred ids several times faster, and large
batches (offline evaluation) still go through pandas' hash table. Ids already looked up in
one index (``Codes``: a request's candidates in the catalogue) are found in another by an
array take through a mapping between the two indexes, built once.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

#: Queries up to this size use the dict.
SMALL = 4096


@dataclass(frozen=True)
class Codes:
    """Ids given as their positions in ``index`` (-1 for an id it does not have)."""

    index: IdIndex
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


class IdIndex:
    """``positions(ids)``: where each id sits in ``ids``, -1 where it is absent."""

    #: The ids, in the order given (each id's position is its index here).
    ids: np.ndarray

    def __init__(self, ids: Sequence[str] | np.ndarray) -> None:
        self.ids = np.asarray(ids)
        self._pos = {x: i for i, x in enumerate(self.ids.tolist())}
        if len(self._pos) != len(self.ids):
            values, counts = np.unique(self.ids, return_counts=True)
            raise ValueError(f"id {values[counts > 1][0]!r} appears more than once; ids must "
                             "be unique")
        self._pandas: Any = None
        self._remaps: weakref.WeakKeyDictionary[IdIndex, np.ndarray] = \
            weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._pos

    def get(self, item_id: str) -> int:
        """The position of one id, -1 when absent."""
        return self._pos.get(item_id, -1)

    def positions(self, ids: Sequence[str] | np.ndarray | Codes) -> np.ndarray:
        if isinstance(ids, Codes):
            return ids.values.copy() if ids.index is self else \
                self.remap(ids.index)[ids.values]
        n = len(ids)
        if n <= SMALL:
            keys = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
            return np.fromiter(map(self._pos.get, keys, repeat(-1)), dtype=np.int64, count=n)
        if self._pandas is None:
            import pandas as pd

            self._pandas = pd.Index(self.ids.astype(object))
        return self._pandas.get_indexer(np.asarray(ids, dtype=object)).astype(np.int64)

    def remap(self, other: IdIndex) -> np.ndarray:
        """Where each id of ``other`` sits here, then -1 (what code -1 maps to); built once
        per ``other``."""
        out = self._remaps.get(other)
        if out is None:
            out = self._remaps[other] = np.append(self.positions(other.ids), -1)
        return out
