"""auditkit.stats: the vectorised bootstrap of AP and ROC AUC against scikit-learn, resample by
resample, and the intervals built from it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from auditkit import stats
from auditkit.stats import (
    percentile_interval,
    ranking_metric_draws,
    ranking_metrics_with_intervals,
    resample_counts,
    weighted_ranking_metrics,
)


@pytest.mark.parametrize("n, decimals", [(40, 1), (500, None), (3000, 2)])
def test_draws_equal_sklearn_on_each_resample(n: int, decimals: int | None) -> None:
    rng = np.random.default_rng(n)
    positive = rng.random(n) < 0.15
    score = rng.random(n) * 0.6 + positive * rng.random(n) * 0.4
    if decimals is not None:  # ties: one threshold per run of equal scores
        score = np.round(score, decimals)
    draws = ranking_metric_draws(positive, [score], seed=3, n_boot=40)
    replay = np.random.default_rng(3)
    checked = 0
    for b in range(40):
        idx = replay.integers(0, n, n)
        if positive[idx].all() or not positive[idx].any():
            assert np.isnan(draws["pr_auc"][0, b]) and np.isnan(draws["roc_auc"][0, b])
            continue
        assert draws["pr_auc"][0, b] == pytest.approx(average_precision_score(positive[idx], score[idx]), abs=1e-12)
        assert draws["roc_auc"][0, b] == pytest.approx(roc_auc_score(positive[idx], score[idx]), abs=1e-12)
        checked += 1
    assert checked >= 30


def test_one_class_resamples_are_undefined_and_left_out() -> None:
    # 1 positive in 6 rows: about a third of the resamples miss it.
    positive = np.array([True, False, False, False, False, False])
    score = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    pr, roc = weighted_ranking_metrics(positive, score, np.array([[1, 1, 1, 1, 1, 1], [0, 2, 1, 1, 1, 1.0]]))
    assert pr[0] == 1.0 and roc[0] == 1.0
    assert np.isnan(pr[1]) and np.isnan(roc[1])
    assert np.isnan(percentile_interval(np.array([np.nan, np.nan]))).all()
    lo, hi = percentile_interval(np.array([np.nan, 0.2, 0.4, 0.6]))
    assert 0.2 <= lo < hi <= 0.6


def test_resample_blocks_do_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = np.concatenate(list(resample_counts(50, seed=1, n_boot=7)))
    monkeypatch.setattr(stats, "RESAMPLE_CHUNK_VALUES", 100)  # two resamples per block
    blocks = list(resample_counts(50, seed=1, n_boot=7))
    assert [len(b) for b in blocks] == [2, 2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert (whole.sum(axis=1) == 50).all()


def test_intervals_bracket_the_value_and_shrink_with_more_rows() -> None:
    def width(n: int) -> float:
        rng = np.random.default_rng(0)
        positive = rng.random(n) < 0.2
        score = rng.random(n) + positive * 0.5
        out = ranking_metrics_with_intervals(positive, score, seed=0)
        for key in ("pr_auc", "roc_auc"):
            assert out[key]["ci_low"] <= out[key]["value"] <= out[key]["ci_high"] and out[key]["n"] == n
        return out["roc_auc"]["ci_high"] - out["roc_auc"]["ci_low"]

    assert width(4000) < width(200) / 2
