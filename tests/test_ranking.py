"""The one top-k and the per-request arithmetic every component shares."""

import numpy as np
import pytest

from hybridrec.contracts import Ragged
from hybridrec.ranking import group_standardise, top_k, top_k_groups, top_k_rows


def reference_top(values, k, finite_only=False):
    """Sort by (score descending, position ascending), NaN last: the definition."""
    keyed = [(-(v if np.isfinite(v) else -np.inf), i) for i, v in enumerate(values)
             if not finite_only or np.isfinite(v)]
    return [i for _, i in sorted(keyed)[:k]]


def test_ties_go_to_the_earlier_position_and_nan_ranks_last():
    assert top_k(np.array([1.0, 3.0, np.nan, 3.0, 2.0]), 4).tolist() == [1, 3, 4, 0]
    assert top_k(np.array([np.nan, 0.0, -np.inf]), 3).tolist() == [1, 0, 2]
    assert top_k(np.array([np.nan, 0.0, -np.inf]), 3, finite_only=True).tolist() == [1]
    assert top_k(np.array([]), 5).tolist() == [] and top_k(np.array([1.0]), 0).tolist() == []


@pytest.mark.parametrize("seed", range(20))
def test_rows_and_groups_agree_with_the_definition(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 4, size=60).astype(float)  # many ties
    values[rng.random(60) < 0.1] = np.nan
    values[rng.random(60) < 0.05] = -np.inf
    k = int(rng.integers(0, 12))
    matrix = values.reshape(6, 10)
    rows = top_k_rows(matrix, k)
    for r in range(6):
        assert rows[r].tolist() == reference_top(matrix[r], k)
    finite = top_k_rows(matrix, k, finite_only=True)
    for r in range(6):
        assert finite[r].tolist() == reference_top(matrix[r], k, finite_only=True)
    lengths = rng.integers(0, 15, size=5)
    offsets = np.r_[0, np.cumsum(lengths)]
    flat = np.resize(values, offsets[-1])
    groups = top_k_groups(flat, offsets, k)
    for g in range(5):
        part = flat[offsets[g]:offsets[g + 1]]
        assert (groups[g] - offsets[g]).tolist() == reference_top(part, k)


def test_a_group_ranks_the_same_alone_or_in_a_batch():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 3, 40).astype(float), rng.integers(0, 3, 7).astype(float)
    together = top_k_groups(np.r_[a, b], np.array([0, 40, 47]), 10)
    assert together[0].tolist() == top_k(a, 10).tolist()
    assert (together[1] - 40).tolist() == top_k(b, 10).tolist()


def test_group_standardise():
    out = group_standardise(np.array([1.0, 2.0, 3.0, np.nan, 5.0, 5.0, 7.0]),
                            np.array([0, 0, 0, 0, 1, 1, 2]), 3)
    np.testing.assert_allclose(out[:3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    assert np.isnan(out[3]) and out[4:].tolist() == [0.0, 0.0, 0.0]


def test_ragged_rows():
    r = Ragged.from_rows([["a", "b"], [], ["c"]], dtype=str)
    assert [r[i].tolist() for i in range(3)] == [["a", "b"], [], ["c"]]
    assert r.row_index().tolist() == [0, 0, 2]
    assert r.take(np.array([2, 0])).values.tolist() == ["c", "a", "b"]
    kept = r.mask(np.array([False, True, True]))
    assert [kept[i].tolist() for i in range(3)] == [["b"], [], ["c"]]
