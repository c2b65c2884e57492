"""Unit tests of the ranking metrics of `ml_platform.ml.metrics`: `ndcg_at_k` on hand-computed
lists (perfect = 1, reversed, k truncation, groups without a relevant item left out, tie
averaging, interleaved group keys, graded gains), agreement with scikit-learn's `ndcg_score`
and `roc_auc_score` on random lists, input errors, speed on 100k rows, and `metrics_for` for
"ranking" (with and without groups) next to an unchanged "regression". Nothing is faked."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ml_platform.ml.metrics import (
    auc,
    listwise_softmax_loss,
    metrics_for,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    regression_metrics,
)


def _dcg(gains: list[float]) -> float:
    return sum(g / np.log2(i + 2) for i, g in enumerate(gains))


def test_perfect_ranking_scores_one() -> None:
    y = np.array([1, 0, 1, 0, 0, 1])
    assert ndcg_at_k(y, y.astype(float)) == pytest.approx(1.0)
    assert ndcg_at_k(y, np.array([6, 1, 5, 2, 3, 4.0]), k=3) == pytest.approx(1.0)


def test_reversed_ranking_scores_the_hand_computed_value() -> None:
    y = np.array([1, 1, 0, 0, 0])
    scores = np.array([1, 2, 3, 4, 5.0])  # relevant items last
    expected = _dcg([0, 0, 0, 1, 1]) / _dcg([1, 1])
    assert ndcg_at_k(y, scores) == pytest.approx(expected)
    assert ndcg_at_k(y, scores) < 1


def test_k_truncates_the_list() -> None:
    y = np.array([0, 0, 1])
    scores = np.array([3, 2, 1.0])  # the one relevant item is at rank 3
    assert ndcg_at_k(y, scores, k=2) == 0.0
    assert ndcg_at_k(y, scores, k=3) == pytest.approx(_dcg([0, 0, 1]))
    # Beyond k, the ideal list is truncated too: 12 relevant items, top 10 all relevant.
    assert ndcg_at_k(np.ones(12), np.arange(12.0), k=10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(y, scores, k=0)


def test_groups_are_averaged_and_groups_without_relevant_items_ignored() -> None:
    y = np.array([1, 0, 0, 1, 0, 0, 0])
    s = np.array([2, 1, 2, 1, 5, 4, 3.0])
    g = np.array(["a", "a", "b", "b", "c", "c", "c"])
    # a: perfect (1.0); b: relevant item second (1/log2(3)); c: no relevant item, left out.
    expected = (1.0 + 1 / np.log2(3)) / 2
    assert ndcg_at_k(y, s, g) == pytest.approx(expected)
    # Interleaved keys give the same answer as contiguous ones.
    perm = np.array([6, 0, 3, 5, 1, 4, 2])
    assert ndcg_at_k(y[perm], s[perm], g[perm]) == pytest.approx(expected)
    # Nothing relevant anywhere: undefined.
    assert np.isnan(ndcg_at_k(np.zeros(4), np.arange(4.0), np.array([0, 0, 1, 1])))


def test_tied_scores_share_their_gains() -> None:
    y = np.array([1, 0, 0, 0])
    # A constant scorer is a random order in expectation, whatever the input order.
    expected = np.mean([1 / np.log2(r + 2) for r in range(4)])
    assert ndcg_at_k(y, np.zeros(4)) == pytest.approx(expected)
    assert ndcg_at_k(y[::-1], np.zeros(4)) == pytest.approx(expected)


def test_graded_relevance_uses_linear_gains() -> None:
    y = np.array([2, 1, 0])
    s = np.array([1, 2, 3.0])
    assert ndcg_at_k(y, s) == pytest.approx(_dcg([0, 1, 2]) / _dcg([2, 1]))


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        ndcg_at_k(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="scores for"):
        ndcg_at_k(np.array([1, 0]), np.array([1.0]))
    with pytest.raises(ValueError, match="group keys"):
        ndcg_at_k(np.array([1, 0]), np.array([1.0, 0.0]), np.array([0]))
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k(np.array([-1, 0]), np.array([1.0, 0.0]))


def test_agrees_with_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(50):
        n_groups, length = int(rng.integers(1, 6)), int(rng.integers(2, 25))
        y = rng.integers(0, 3, (n_groups, length)) * (rng.random((n_groups, length)) < 0.5)
        s = (rng.integers(0, 4, (n_groups, length)).astype(float) if trial % 2
             else rng.normal(size=(n_groups, length)))
        k = int(rng.integers(1, 12))
        keep = y.sum(axis=1) > 0
        if not keep.any():
            continue
        ref = np.mean([sk.ndcg_score(y[i:i + 1], s[i:i + 1], k=k)
                       for i in range(n_groups) if keep[i]])
        perm = rng.permutation(y.size)
        groups = np.repeat(np.arange(n_groups), length)[perm]
        assert ndcg_at_k(y.ravel()[perm], s.ravel()[perm], groups, k=k) == pytest.approx(ref)
        binary = y.ravel() > 0
        if 0 < binary.sum() < binary.size:
            assert auc(binary, s.ravel()) == pytest.approx(sk.roc_auc_score(binary, s.ravel()))


def test_fast_on_a_hundred_thousand_rows() -> None:
    rng = np.random.default_rng(1)
    n = 100_000
    y, s, g = rng.random(n) < 0.3, rng.normal(size=n), np.repeat(np.arange(n // 20), 20)
    start = time.perf_counter()
    value = ndcg_at_k(y, s, g)
    assert time.perf_counter() - start < 1.0
    assert 0.3 < value < 0.7  # random scores


def test_auc_known_values() -> None:
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([0, 0, 1, 1]), np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_metrics_for_ranking_and_regression() -> None:
    y = np.array([1, 0, 0, 1.0])
    s = np.array([3, 2, 1, 0.0])
    g = np.array([7, 7, 9, 9])
    out = metrics_for("ranking", y, s, groups=g)
    assert set(out) == {"ndcg_at_10", "precision_at_10", "auc"}
    assert out["precision_at_10"] == pytest.approx(0.1)  # one relevant of <= 10 per group
    assert out == ranking_metrics(y, s, g)
    assert out["ndcg_at_10"] == pytest.approx((1.0 + 1 / np.log2(3)) / 2)
    # Without groups all rows are one list; AUC is left out when it is undefined.
    assert metrics_for("ranking", [1.0, 2.0], [1.0, 2.0]) == {
        "ndcg_at_10": pytest.approx(1.0), "precision_at_10": pytest.approx(0.2)}
    # Regression is unchanged and ignores groups.
    assert metrics_for("regression", y, s) == regression_metrics(y, s)
    assert metrics_for("regression", y, s, groups=g) == regression_metrics(y, s)
    with pytest.raises(ValueError, match="no metrics for task"):
        metrics_for("classification", y, s)


def test_precision_at_k_counts_relevant_items_in_the_top_k() -> None:
    y = np.array([1, 0, 1, 0, 0, 1.0])
    s = np.array([5, 4, 3, 2, 1, 0.0])
    assert precision_at_k(y, s, k=2) == pytest.approx(0.5)
    assert precision_at_k(y, s, k=3) == pytest.approx(2 / 3)
    # Two groups: the mean of their precisions; ties share hits evenly.
    g = np.array([1, 1, 1, 2, 2, 2])
    assert precision_at_k(y, s, g, k=1) == pytest.approx((1 + 0) / 2)
    assert precision_at_k(y, np.zeros(6), g, k=1) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_listwise_softmax_loss_matches_its_definition() -> None:
    y = np.array([1, 0, 0, 1, 1.0])
    s = np.array([2.0, 1.0, 0.0, 0.5, -0.5])
    g = np.array([1, 1, 1, 2, 2])
    first = -(2.0 - np.log(np.exp([2.0, 1.0, 0.0]).sum()))
    second = -0.5 * ((0.5 - np.log(np.exp([0.5, -0.5]).sum()))
                     + (-0.5 - np.log(np.exp([0.5, -0.5]).sum())))
    assert listwise_softmax_loss(y, s, g) == pytest.approx((first + second) / 2)
    # A group without a relevant item carries no loss; none at all: NaN.
    assert listwise_softmax_loss(np.r_[y, 0.0], np.r_[s, 9.0], np.r_[g, 3]) == pytest.approx(
        (first + second) / 2)
    assert np.isnan(listwise_softmax_loss(np.zeros(3), np.ones(3)))
