"""Randomized smoothing with a certified L2 radius (Cohen, Rosenfeld & Kolter, ICML 2019).

The smoothed classifier is ``g(x) = argmax_c P(f(x + e) = c)`` with ``e ~ N(0, sigma^2 I)``.
If the top class has probability ``pA >= 1/2`` then ``g`` is constant within the L2 ball of
radius ``sigma * Phi^-1(pA)`` around ``x`` (the paper's Theorem 1 with ``pB = 1 - pA``).
``pA`` is estimated by Monte Carlo, so the procedures below follow the paper's Algorithms:

* ``PREDICT``: ``n`` noisy samples; return the top class if a two-sided binomial test of
  ``nA`` against ``nA + nB`` (top two counts) at ``p = 1/2`` rejects at level ``alpha``,
  else abstain. Wrong with probability at most ``alpha``.
* ``CERTIFY``: guess the top class from ``n0`` samples, count it on ``n`` fresh samples, take
  the one-sided ``(1 - alpha)`` Clopper-Pearson lower bound ``pA_lower``; abstain if it is below
  1/2, else certify radius ``sigma * Phi^-1(pA_lower)``. The radius is sound with probability
  at least ``1 - alpha``.

Written by hand from the paper (its reference code is not packaged); the statistics come from
scipy (``binomtest``, the beta quantile for Clopper-Pearson, the normal quantile).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from auditkit.attacks.common import check_positive_int, eval_mode
from auditkit.stats import wilson_interval

__all__ = ["ABSTAIN", "SmoothedClassifier", "certified_accuracy", "clopper_pearson_lower"]

ABSTAIN = -1


def clopper_pearson_lower(successes: int, n: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower confidence bound of a binomial proportion.

    ``Beta(alpha; k, n - k + 1)`` quantile; 0 when ``k == 0``.
    """
    if successes <= 0:
        return 0.0
    return float(stats.beta.ppf(alpha, successes, n - successes + 1))


class SmoothedClassifier:
    """The Gaussian-smoothed version of a base classifier (Cohen et al. 2019).

    Args:
        base: classifier ``[B, ...] -> [B, C]`` logits (run in eval mode, without gradients).
        sigma: noise standard deviation, in input units (> 0).
        n0: samples used to guess the top class in :meth:`certify`.
        n: samples used to estimate ``pA`` (certify) or to test the top class (predict).
        alpha: failure probability of both procedures.
        batch_size: noisy copies per forward pass.
        seed: seed of the noise; the generator advances with every call (:meth:`reset` rewinds).
        num_classes: number of classes (default: inferred from the first forward pass).

    Noise is added in the base model's input space and not clipped to the input bounds (the
    theorem needs the unclipped Gaussian).
    """

    def __init__(
        self,
        base: nn.Module,
        sigma: float,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        seed: int = 0,
        num_classes: int | None = None,
    ) -> None:
        if not isinstance(base, nn.Module):
            raise ValueError(f"base must be an nn.Module, got {type(base).__name__}")
        if not (isinstance(sigma, (int, float)) and sigma > 0 and np.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        check_positive_int("n0", n0)
        check_positive_int("n", n)
        check_positive_int("batch_size", batch_size)
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 0.5):
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
        self.base, self.sigma, self.n0, self.n, self.alpha = base, float(sigma), n0, n, float(alpha)
        self.batch_size, self.seed, self.num_classes = batch_size, seed, num_classes
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Rewind the noise generator to ``seed`` (default: the constructor's)."""
        self._gen = torch.Generator().manual_seed(self.seed if seed is None else int(seed))

    def _one(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError("x must be a floating-point tensor holding one sample (shape [...] or [1, ...])")
        return x[0] if x.dim() >= 2 and x.shape[0] == 1 else x

    def sample_counts(self, x: Tensor, num: int) -> np.ndarray:
        """Counts ``[C]`` (int64) of the base classifier's predictions on ``num`` noisy copies of
        one sample ``x`` (shape ``[...]`` or ``[1, ...]``), in batches of ``batch_size``."""
        x = self._one(x)
        param = next(iter(self.base.parameters()), None)
        device = param.device if param is not None else x.device
        x = x.to(device)
        counts = np.zeros(self.num_classes or 0, dtype=np.int64)
        with torch.no_grad(), eval_mode(self.base):
            remaining = num
            while remaining > 0:
                b = min(self.batch_size, remaining)
                noise = torch.randn((b, *x.shape), generator=self._gen, dtype=x.dtype).to(device)
                logits = self.base(x.unsqueeze(0) + self.sigma * noise)
                if len(counts) < logits.shape[1]:
                    counts = np.zeros(logits.shape[1], dtype=np.int64)
                counts += np.bincount(logits.argmax(1).cpu().numpy(), minlength=len(counts))
                remaining -= b
        return counts

    def predict(self, x: Tensor) -> int:
        """The smoothed prediction for one sample, or ``ABSTAIN`` (-1) when the top two classes'
        counts over ``n`` samples do not differ significantly (two-sided binomial test, level
        ``alpha``)."""
        counts = self.sample_counts(x, self.n)
        top2 = np.argsort(counts)[::-1][:2]
        n_a, n_b = int(counts[top2[0]]), int(counts[top2[1]]) if len(top2) > 1 else 0
        if stats.binomtest(n_a, n_a + n_b, 0.5).pvalue > self.alpha:
            return ABSTAIN
        return int(top2[0])

    def certify(self, x: Tensor) -> tuple[int, float]:
        """``(class, radius)`` for one sample: the smoothed class and a certified L2 radius
        (input units) within which it cannot change, valid with probability ``1 - alpha``;
        ``(ABSTAIN, 0.0)`` when the Clopper-Pearson lower bound on ``pA`` is below 1/2."""
        guess = int(np.argmax(self.sample_counts(x, self.n0)))
        n_a = int(self.sample_counts(x, self.n)[guess])
        p_lower = clopper_pearson_lower(n_a, self.n, self.alpha)
        if p_lower < 0.5:
            return ABSTAIN, 0.0
        return guess, float(self.sigma * stats.norm.ppf(p_lower))

    def certify_batch(self, x: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`certify` for each sample of ``x`` ``[N, ...]``: classes ``[N]`` (int, -1 for
        abstain) and radii ``[N]`` (float, input units)."""
        xt = torch.as_tensor(x)
        if xt.dim() < 2 or len(xt) == 0:
            raise ValueError(f"x must be a non-empty batch [N, ...], got shape {list(xt.shape)}")
        results = [self.certify(xt[i : i + 1].float()) for i in range(len(xt))]
        return np.array([c for c, _ in results], dtype=np.int64), np.array([r for _, r in results])


def certified_accuracy(
    smoothed: SmoothedClassifier,
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    radii: list[float],
) -> list[dict[str, Any]]:
    """Certified accuracy of ``smoothed`` at each L2 radius (Cohen et al.'s Table 1 metric).

    A sample counts at radius ``r`` when :meth:`SmoothedClassifier.certify` returns its true
    class with a radius ``>= r`` (abstentions count as wrong).

    Args:
        x: ``[N, ...]`` inputs; y: ``[N]`` int labels; radii: L2 radii in input units (>= 0).

    Returns:
        one ``{"radius", "certified_accuracy", "ci": [low, high] (Wilson 95%), "n",
        "n_certified"}`` per radius, in the given order.
    """
    xt = torch.as_tensor(x)
    yt = np.asarray(torch.as_tensor(y).cpu().numpy())
    if xt.dim() < 2 or len(xt) != len(yt) or len(xt) == 0:
        raise ValueError(
            f"x must be [N, ...] and y [N] with the same N >= 1, got {list(xt.shape)} and {list(yt.shape)}")
    radii_f = [float(r) for r in radii]
    if not radii_f or any(not (r >= 0 and np.isfinite(r)) for r in radii_f):
        raise ValueError(f"radii must be a non-empty list of finite numbers >= 0, got {radii!r}")
    classes, radius = smoothed.certify_batch(xt)
    out = []
    for r in radii_f:
        ok = int(((classes == yt) & (radius >= r)).sum())
        lo, hi = wilson_interval(ok, len(yt))
        out.append({"radius": r, "certified_accuracy": ok / len(yt), "ci": [lo, hi], "n": len(yt), "n_certified": ok})
    return out
