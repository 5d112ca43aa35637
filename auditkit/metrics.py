"""Metrics that the performance check and the baselines share: softmax and calibration.

A leaf (NumPy only): :mod:`auditkit.performance` and :mod:`auditkit.baselines` both import it,
so that the algorithms never import a check module.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` ``[N, C]`` (shifted by the row maximum for stability)."""
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def calibration(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top-class confidence, with its reliability bins.

    ``probs`` ``[N, C]``, ``y`` ``[N]``. Bins are equal-width over [0, 1].
    """
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = which == b
        if not m.any():
            bins.append({"lo": edges[b], "hi": edges[b + 1], "n": 0, "confidence": None, "accuracy": None})
            continue
        acc, cf = float(correct[m].mean()), float(conf[m].mean())
        ece += m.mean() * abs(acc - cf)
        bins.append({"lo": edges[b], "hi": edges[b + 1], "n": int(m.sum()), "confidence": cf, "accuracy": acc})
    return {"ece": float(ece), "n_bins": n_bins, "bins": bins}
