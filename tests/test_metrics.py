import numpy as np
import pytest

from hybridrec import metrics as M


def test_ranking_metrics_against_hand_computed_values():
    hits = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=bool)
    n_relevant = np.array([2, 1, 3])
    got = M.ranking_metrics(hits, n_relevant)
    d = 1 / np.log2([2, 3, 4])
    ndcg = [(d[0] + d[2]) / (d[0] + d[1]), 0.0, d[1] / d.sum()]
    ap = [(1 + 2 / 3) / 2, 0.0, (1 / 2) / 3]
    assert got["ndcg"] == pytest.approx(np.mean(ndcg))
    assert got["recall"] == pytest.approx(np.mean([1.0, 0.0, 1 / 3]))
    assert got["map"] == pytest.approx(np.mean(ap))
    assert got["hit_rate"] == pytest.approx(2 / 3)


def test_perfect_ranking_scores_one():
    hits = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    got = M.ranking_metrics(hits, np.array([2, 1]))
    assert got["ndcg"] == pytest.approx(1.0) and got["map"] == pytest.approx(1.0)


def test_users_without_relevant_items_are_rejected():
    with pytest.raises(ValueError, match="relevant"):
        M.ranking_metrics(np.zeros((1, 3), bool), np.array([0]))


def test_hits_matrix_looks_up_pairs():
    top = np.array([[3, 1, -1], [0, 2, 4]])
    hits = M.hits_matrix(top, np.array([0, 1, 1]), np.array([1, 4, 9]))
    assert hits.tolist() == [[False, True, False], [False, False, True]]


def test_auc_matches_pair_counting():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200), 1)  # many ties
    pos, neg = s[y], s[~y]
    expected = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
                ) / (len(pos) * len(neg))
    assert M.auc(y, s) == pytest.approx(expected)


def test_grouped_auc_ignores_scale_across_groups():
    groups = np.array([0, 0, 1, 1])
    labels = np.array([1, 0, 1, 0])
    scores = np.array([10.0, 9.0, 0.2, 0.1])  # right within groups, wrong across them
    assert M.grouped_auc(groups, labels, scores) == pytest.approx(1.0)
    assert M.auc(labels, scores) < 1.0


def test_coverage_and_logloss():
    assert M.coverage(np.array([[0, 1], [1, -1]]), 4) == 0.5
    assert M.logloss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
