"""Metrics shared across layers: softmax and calibration (the performance check and the
baselines), and :func:`broken_at`, the one rule by which a sample counts as broken at an eps
(the attack ensemble, the baselines, the gate and the dashboard).

A leaf (NumPy only), so that the algorithms never import a check module and the gate and the
dashboard never import torch to count robust samples.
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


def broken_at(norms: np.ndarray | float, eps: float, tol: float) -> np.ndarray:
    """bool: an adversarial point of norm ``<= eps`` was found (``norms`` inf where none).

    At ``eps > 0`` norms up to ``eps + tol`` count (float rounding of ``x + delta``); at
    ``eps = 0`` only a zero norm does, i.e. the sample is misclassified as it is."""
    return np.asarray(norms) <= (eps + tol if eps > 0 else 0.0)
