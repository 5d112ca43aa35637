"""Confidence intervals and paired tests used by headline metrics and the gate."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes`` in ``n`` trials (scipy's ``binomtest``);
    ``(0, 1)`` when ``n == 0``. The one place every proportion's interval comes from."""
    if n <= 0:
        return (0.0, 1.0)
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return (max(0.0, float(ci.low)), min(1.0, float(ci.high)))


def proportion(successes: int, n: int, confidence: float = 0.95) -> dict[str, float | int]:
    """A headline proportion with its Wilson interval and sample count."""
    lo, hi = wilson_interval(successes, n, confidence)
    return {"value": successes / n if n else float("nan"), "ci_low": lo, "ci_high": hi, "n": n}


def bootstrap_ci(
    values_fn, n: int, seed: int, n_boot: int = 500, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``values_fn(idx)`` over resampled index arrays."""
    rng = np.random.default_rng(seed)
    stats_ = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = values_fn(idx)
        if v is not None and not math.isnan(v):
            stats_.append(v)
    if not stats_:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(stats_, [50 * (1 - confidence), 50 * (1 + confidence)])
    return (float(lo), float(hi))


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict[str, float | int]:
    """Exact McNemar test on paired correctness vectors (bool ``[N]`` each).

    ``b_only`` counts samples B gets right and A wrong. Two-sided p-value from the binomial
    distribution of the discordant pairs.
    """
    a = np.asarray(a_correct, bool)
    b = np.asarray(b_correct, bool)
    a_only = int((a & ~b).sum())
    b_only = int((~a & b).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else float(min(1.0, 2 * stats.binom.cdf(min(a_only, b_only), n, 0.5)))
    return {"a_only": a_only, "b_only": b_only, "p_value": p}
