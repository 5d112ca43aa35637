"""Compare classical baselines with the network on the same test samples.

Pure functions over arrays: the check (:mod:`auditkit.baselines.check`) chooses the samples and
the budget and calls them for the network and every baseline alike. Figures:

- quality: accuracy with a Wilson interval, PR-AUC/ROC-AUC with bootstrap intervals for tasks
  with a positive class, and paired tests against the network (exact McNemar on correctness;
  paired bootstrap of the PR-AUC difference);
- calibration: ECE and reliability bins (:func:`auditkit.metrics.calibration`);
- robustness: minimal L2 perturbations from a decision-based attack (foolbox's HopSkipJump
  through the registry for images; :func:`constrained_decision_attack` for tabular data, whose
  feature constraints foolbox cannot express), accuracy on the network's adversarial examples
  (transfer) and under random noise of the same size;
- interpretability: Spearman rank correlation of each model's global importance with the
  network's mean |attribution|, and agreement with the data's known causes;
- cost: latency per 1,000 samples, learned parameters, bytes on disk.
"""

from __future__ import annotations

import io
import time
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score
from torch import Tensor, nn

from auditkit.attacks.common import eval_mode, is_adversarial, norm_of
from auditkit.card import FeatureSpec
from auditkit.metrics import broken_at, calibration
from auditkit.stats import (
    mcnemar_exact,
    percentile_interval,
    proportion,
    ranking_metric_draws,
    ranking_metrics_with_intervals,
)

ALPHA = 0.05  # significance level of the paired tests
Predict = Callable[[np.ndarray], np.ndarray]  # inputs [N, ...] -> class indices [N]


# ----------------------------------------------------------------------------- quality


def quality_and_calibration(probs: np.ndarray, y: np.ndarray, class_names: list[str],
                            positive_index: int | None, seed: int,
                            n_boot: int = 200) -> tuple[dict[str, Any], dict[str, Any]]:
    """Headline quality and calibration of one model from its probabilities.

    The same figures as the performance check's :func:`~auditkit.performance.classification_report`
    (same bootstrap seeds), with the number of bootstrap resamples as a parameter: on 15,000
    fraud rows the resamples dominate the check's run time.

    Args:
        probs: ``[N, C]`` class probabilities (rows sum to 1).
        y: ``[N]`` true class indices.
        class_names: the ``C`` class names; positive_index: the positive class, or None.
        seed: seeds the bootstrap intervals; n_boot: resamples per interval.

    Returns:
        ``(quality, calibration)``: quality holds ``accuracy`` (value, Wilson ci_low/ci_high, n)
        and, with a positive class present in ``y``, ``pr_auc`` and ``roc_auc`` (value, bootstrap
        ci_low/ci_high, n), ``prevalence`` and ``positive_class``; calibration is
        :func:`auditkit.metrics.calibration`'s ``{"ece", "n_bins", "bins"}``.
    """
    quality: dict[str, Any] = {"accuracy": proportion(int((probs.argmax(1) == y).sum()), len(y))}
    if positive_index is not None:
        yb = (y == positive_index).astype(int)
        score = probs[:, positive_index]
        if 0 < yb.sum() < len(yb):
            quality["positive_class"] = class_names[positive_index]
            quality["prevalence"] = float(yb.mean())
            quality.update(ranking_metrics_with_intervals(yb.astype(bool), score, seed, n_boot))
    return quality, calibration(probs, y)


def paired_test(network_correct: np.ndarray, baseline_correct: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test of a baseline against the network on the same samples.

    Args:
        network_correct, baseline_correct: bool ``[N]``, whether each model got each sample right.

    Returns:
        ``{"test": "mcnemar-exact", "network_only_correct", "baseline_only_correct", "p_value",
        "winner"}``; ``winner`` is ``"network"`` or ``"baseline"`` (whoever is right on more of
        the discordant samples) when ``p_value < 0.05``, else ``"tie"``.
    """
    r = mcnemar_exact(network_correct, baseline_correct)
    winner = "tie"
    if r["p_value"] < ALPHA:
        winner = "network" if r["a_only"] > r["b_only"] else "baseline"
    return {"test": "mcnemar-exact", "network_only_correct": r["a_only"],
            "baseline_only_correct": r["b_only"], "p_value": r["p_value"], "winner": winner}


def pr_auc_difference(network_score: np.ndarray, baseline_score: np.ndarray, positive: np.ndarray,
                      seed: int, n_boot: int = 200) -> dict[str, Any]:
    """Baseline PR-AUC minus network PR-AUC with a paired bootstrap interval (same resamples).

    Args:
        network_score, baseline_score: ``[N]`` probabilities of the positive class.
        positive: bool ``[N]``, the true positives.

    Returns:
        ``{"value", "ci_low", "ci_high", "n", "winner"}``; ``winner`` is ``"baseline"`` when the
        95% interval lies above 0, ``"network"`` when below, else ``"tie"``.
    """
    yb = np.asarray(positive, bool)
    value = (float(average_precision_score(yb, baseline_score) - average_precision_score(yb, network_score))
             if 0 < yb.sum() < len(yb) else None)
    draws = ranking_metric_draws(yb, [baseline_score, network_score], seed, n_boot)["pr_auc"]
    lo, hi = percentile_interval(draws[0] - draws[1])
    winner = "baseline" if lo > 0 else "network" if hi < 0 else "tie"
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": len(yb), "winner": winner}


# ----------------------------------------------------------------------------- robustness


class SklearnModule(nn.Module):
    """A scikit-learn model as a forward-only torch module, for foolbox's decision-based attacks.

    ``forward(x)`` ``[N, ...]`` → log-probabilities ``[N, C]`` (float32, on ``x``'s device),
    computed by ``predict_proba`` on the NumPy copy of ``x``. It has no gradient: only attacks
    that need nothing but the predicted label (HopSkipJump, Boundary) can use it.
    """

    def __init__(self, predict_proba: Callable[[np.ndarray], np.ndarray]):
        super().__init__()
        self.predict_proba = predict_proba
        self.eval()  # nothing here trains; eval mode also keeps foolbox from warning

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            p = self.predict_proba(x.detach().cpu().numpy())
        return torch.from_numpy(np.log(np.clip(p, 1e-12, 1.0))).float().to(x.device)


def decision_attack_l2(module: nn.Module, x: Tensor, y: Tensor, bounds: tuple[float, float], seed: int,
                       **settings: Any) -> np.ndarray:
    """Minimal L2 perturbations found by HopSkipJump (foolbox, through auditkit's registry runner,
    which draws the starting points and leaves samples without one unattacked).

    Args:
        module: classifier ``[N, ...]`` → scores ``[N, C]`` (forward only is enough).
        x: ``[N, ...]`` inputs inside ``bounds``; y: ``[N]`` labels.
        settings: HopSkipJump's ``steps``, ``initial_gradient_eval_steps``,
            ``max_gradient_eval_steps`` and the runner's ``init_directions``. Few steps give
            upper bounds of the true minimal norms.

    Returns:
        ``[N]`` float64 L2 norms in input units: 0 where ``x`` is already misclassified, ``inf``
        where the attack found no adversarial point.
    """
    from auditkit.attacks.registry import get_attack

    runner = get_attack("hsj-l2").runner
    norms = np.zeros(len(x))
    with eval_mode(module):
        rows = (~is_adversarial(module, x, y)).nonzero().squeeze(1)
        if rows.numel():
            pts, _ = runner(module, x[rows], y[rows], None, bounds, seed, **settings)
            pts = pts.detach().to(x.dtype).clamp(*bounds)
            ok = is_adversarial(module, pts, y[rows]).cpu().numpy()
            found = norm_of(pts - x[rows], "l2").double().cpu().numpy()
            norms[rows.cpu().numpy()] = np.where(ok, found, np.inf)
    return norms


def robustness_summary(norms: np.ndarray, correct: np.ndarray, epsilons: list[float],
                       tol: float = 1e-6) -> dict[str, Any]:
    """Robust accuracy per eps and the median minimal perturbation, from per-sample norms.

    Args:
        norms: ``[N]`` smallest adversarial perturbation per sample (0: misclassified clean,
            inf: none found). correct: bool ``[N]``, clean correctness.
        epsilons: perturbation budgets in the norms' units.

    Returns:
        ``{"n", "clean_accuracy", "attacked", "found", "median_min_norm", "robust_accuracy":
        [{"eps", "value", "ci_low", "ci_high", "n"}]}``. ``median_min_norm`` is over the
        clean-correct samples (None where the median is not finite: most were never broken).
    """
    n = len(norms)
    attacked = correct.astype(bool)
    found = attacked & np.isfinite(norms)
    median = float(np.median(norms[attacked])) if attacked.any() else float("nan")
    curve = []
    for eps in epsilons:
        robust = attacked & ~broken_at(norms, eps, tol)
        curve.append({"eps": float(eps), **proportion(int(robust.sum()), n)})
    return {"n": n, "clean_accuracy": proportion(int(attacked.sum()), n), "attacked": int(attacked.sum()),
            "found": int(found.sum()), "median_min_norm": median if np.isfinite(median) else None,
            "robust_accuracy": curve}


def accuracy_on(predict: Predict, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy of ``predict`` on ``x`` ``[N, ...]`` with labels ``y`` ``[N]`` (Wilson interval)."""
    return proportion(int((predict(x) == y).sum()), len(y))


def uniform_noise(x: np.ndarray, eps: float, norm: str, bounds: tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """Random noise of size ``eps`` added to images ``[N, ...]``, clipped to ``bounds``.

    ``"linf"``: each coordinate uniform in ``[-eps, eps]``; ``"l2"``: a uniformly random
    direction scaled to L2 norm ``eps`` (before clipping). Returns float32 ``[N, ...]``.
    """
    if norm == "linf":
        noise = rng.uniform(-eps, eps, size=x.shape)
    else:
        noise = rng.standard_normal(size=x.shape)
        flat = noise.reshape(len(x), -1)
        noise = (flat * (eps / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12))).reshape(x.shape)
    return np.clip(x + noise, *bounds).astype(np.float32)


# ----------------------------------------------------------------------------- tabular threat model


def tabular_scale(features: list[FeatureSpec], x_train: np.ndarray) -> np.ndarray:
    """Per-feature unit of the tabular threat model ``[F]``: the training standard deviation of
    each continuous/integer feature (1 where it is 0, and for binary/categorical features)."""
    std = x_train.astype(np.float64).std(0)
    numeric = np.array([f.kind in ("continuous", "integer") for f in features])
    return np.where(numeric & (std > 0), std, 1.0)


def tabular_distance(x_adv: np.ndarray, x: np.ndarray, features: list[FeatureSpec],
                     scale: np.ndarray) -> np.ndarray:
    """Size of tabular perturbations ``[N]``: the L2 norm of the continuous/integer changes in
    units of ``scale`` (training standard deviations), where each changed binary or categorical
    feature counts 1. Inputs ``[N, F]`` in raw units."""
    numeric = np.array([f.kind in ("continuous", "integer") for f in features])
    z = (x_adv - x) / scale
    discrete = (x_adv != x) & ~numeric
    return np.sqrt((z[:, numeric] ** 2).sum(1) + discrete.sum(1))


def project_tabular(x: np.ndarray, x0: np.ndarray, features: list[FeatureSpec]) -> np.ndarray:
    """Make rows ``x`` ``[N, F]`` valid for the schema: unchangeable features reset to ``x0``,
    values clipped to each feature's ``[min, max]``, integer/binary/categorical ones rounded."""
    lo = np.array([f.min for f in features])
    hi = np.array([f.max for f in features])
    fixed = np.array([not f.changeable for f in features])
    whole = np.array([f.kind != "continuous" for f in features])
    out = np.clip(x, lo, hi)
    out[:, whole] = np.round(out[:, whole])
    out[:, fixed] = x0[:, fixed]
    return out


def _blend(x0: np.ndarray, target: np.ndarray, alpha: np.ndarray, features: list[FeatureSpec]) -> np.ndarray:
    """Points ``alpha`` of the way from ``x0`` to ``target`` (``[M, F]`` each, ``alpha`` ``[M]``);
    categorical codes jump at ``alpha >= 0.5`` (codes between two categories mean nothing)."""
    categorical = np.array([f.kind == "categorical" for f in features])
    pts = x0 + alpha[:, None] * (target - x0)
    pts[:, categorical] = np.where(alpha[:, None] >= 0.5, target, x0)[:, categorical]
    return project_tabular(pts, x0, features)


def constrained_decision_attack(
    predict: Predict, x: np.ndarray, y: np.ndarray, features: list[FeatureSpec], scale: np.ndarray,
    seed: int, n_init: int = 64, search_steps: int = 10, n_refine: int = 20, n_proposals: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """A decision-based attack on tabular data that respects the card's feature constraints.

    Written by hand: foolbox's decision-based attacks assume one continuous box for every input
    coordinate, whereas here only ``changeable`` features may move, integer/binary features stay
    whole, categorical codes stay codes and every value stays in its ``[min, max]``. The method
    follows foolbox's blended-noise initialisation and the Boundary attack's idea:

    1. draw ``n_init`` random valid points per sample (changeable features uniform in their
       ranges) and keep those classified differently from the label;
    2. binary-search (``search_steps``) the blend from the sample to each of them for the
       closest point that is still misclassified; keep the smallest per sample;
    3. ``n_refine`` rounds of ``n_proposals`` random proposals around the current point (shrunk
       towards the sample by a random factor in [0.5, 1], Gaussian noise of 10% of its size,
       each discrete change undone with probability 0.3); keep a proposal if it is still
       misclassified and smaller.

    Only the predicted label is used. Sizes are :func:`tabular_distance`.

    Args:
        predict: ``[M, F]`` → predicted class indices ``[M]``.
        x: ``[N, F]`` samples in raw units; y: ``[N]`` labels.
        features: the card's feature schema; scale: ``[F]`` from :func:`tabular_scale`.
        seed: seeds every random draw.

    Returns:
        ``(x_adv, norms)``: ``[N, F]`` closest misclassified valid points found (``x`` itself where
        none was found or the sample is misclassified already) and ``[N]`` their sizes (0 for
        misclassified samples, inf where none was found).
    """
    rng = np.random.default_rng(seed)
    x = x.astype(np.float64)
    lo = np.array([f.min for f in features])
    hi = np.array([f.max for f in features])
    move = np.array([f.changeable for f in features])
    discrete = np.array([f.kind in ("binary", "categorical") for f in features])
    pred = predict(x)
    best = x.copy()
    norms = np.where(pred != y, 0.0, np.inf)
    rows = np.flatnonzero(pred == y)
    if rows.size == 0 or not move.any():
        return best, norms
    x0, y0 = x[rows], y[rows]

    # 1. Random valid starting points.
    owner = np.repeat(np.arange(len(rows)), n_init)
    cand = x0[owner].copy()
    cand[:, move] = rng.uniform(lo, hi, size=cand.shape)[:, move]
    cand = project_tabular(cand, x0[owner], features)
    adv = predict(cand) != y0[owner]
    cand, owner = cand[adv], owner[adv]

    # 2. Binary search on each blend, all candidates in one batch per step.
    a_lo, a_hi = np.zeros(len(cand)), np.ones(len(cand))
    for _ in range(search_steps if len(cand) else 0):
        mid = (a_lo + a_hi) / 2
        ok = predict(_blend(x0[owner], cand, mid, features)) != y0[owner]
        a_hi, a_lo = np.where(ok, mid, a_hi), np.where(ok, a_lo, mid)
    pts = _blend(x0[owner], cand, a_hi, features)
    d = tabular_distance(pts, x0[owner], features, scale)
    cur, cur_d = x0.copy(), np.full(len(rows), np.inf)
    for i in np.argsort(-d):  # the smallest per sample is written last
        cur[owner[i]], cur_d[owner[i]] = pts[i], d[i]

    # 3. Random proposals around the current point, kept when smaller and still adversarial.
    numeric = move & ~discrete
    for _ in range(n_refine):
        live = np.flatnonzero(np.isfinite(cur_d))
        if live.size == 0:
            break
        own = np.repeat(live, n_proposals)
        base, start = x0[own], cur[own]
        shrink = rng.uniform(0.5, 1.0, size=(len(own), 1))
        prop = base + shrink * (start - base)
        size = (cur_d[own] / np.sqrt(max(1, numeric.sum())))[:, None]
        prop[:, numeric] += (0.1 * size * scale * rng.standard_normal(prop.shape))[:, numeric]
        undo = (rng.random(prop.shape) < 0.3) & discrete
        prop[undo] = base[undo]
        prop = project_tabular(prop, base, features)
        ok = predict(prop) != y0[own]
        dist = np.where(ok, tabular_distance(prop, base, features, scale), np.inf)
        for i in np.flatnonzero(dist < cur_d[own]):
            if dist[i] < cur_d[own[i]]:
                cur[own[i]], cur_d[own[i]] = prop[i], dist[i]
    best[rows] = np.where(np.isfinite(cur_d)[:, None], cur, x0)
    norms[rows] = cur_d
    return best, norms


def tabular_noise(x: np.ndarray, eps: float, features: list[FeatureSpec], scale: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Random noise of size ``eps`` on the changeable continuous/integer features of ``x``
    ``[N, F]``: a uniformly random direction in units of ``scale``, then projected onto the
    schema (rounded, clipped). Binary and categorical features are left as they are."""
    numeric = np.array([f.changeable and f.kind in ("continuous", "integer") for f in features])
    noise = rng.standard_normal(size=x.shape) * numeric
    noise *= eps / np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    return project_tabular(x + noise * scale, x, features).astype(x.dtype)


# ----------------------------------------------------------------------------- interpretability


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two importance vectors ``[D]`` (None if either is constant)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def _scores(pipeline: Any, copies: np.ndarray, y: np.ndarray, positive_index: int | None) -> np.ndarray:
    """The permutation-importance score of ``pipeline`` on each of ``copies`` ``[K, N, D]`` (one
    predict call for all): PR-AUC of the positive class where there is one (accuracy barely
    moves on imbalanced data), else accuracy. Returns ``[K]`` float64."""
    k, n, d = copies.shape
    flat = copies.reshape(-1, d)
    if positive_index is None:
        return (pipeline.predict(flat).reshape(k, n) == y).mean(1).astype(np.float64)
    col = list(pipeline.classes_).index(positive_index)
    p = pipeline.predict_proba(flat)[:, col].reshape(k, n)
    return np.array([average_precision_score(y == positive_index, row) for row in p], np.float64)


PERMUTATION_CHUNK_VALUES = 1 << 22  # input values per batched predict call (32 MB of float64)


def permutation_importances(pipeline: Any, x: np.ndarray, y: np.ndarray, positive_index: int | None,
                            n_repeats: int, seed: int, chunk_values: int = PERMUTATION_CHUNK_VALUES) -> np.ndarray:
    """Mean drop in score when one input column is shuffled among the rows (permutation
    importance, as sklearn.inspection.permutation_importance defines it), scored by PR-AUC of
    the positive class where there is one, else accuracy.

    Written by hand for speed, not for a different estimate: sklearn's version calls ``predict``
    once per (column, repeat), and a forest or gradient-boosted baseline pays a Python loop over
    its trees on every call (1,000 trees for HistGradientBoosting on 10 classes): 192 calls cost
    10 s of the 25 s baselines check on the digits. Here the shuffled copies of as many columns as
    fit in ``chunk_values`` input values go through one call. Column ``j``'s shuffles come from a
    generator seeded by ``(seed, j)``, so the result does not depend on the chunking.

    Args: ``x`` ``[N, D]`` as the pipeline takes it (images flattened), ``y`` ``[N]``;
    ``n_repeats`` shuffles per column. Returns ``[D]`` float64 mean score drops.
    """
    n, d = x.shape
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    reference = _scores(pipeline, x[None], y, positive_index)[0]
    importances = np.zeros(d)
    per_call = max(1, chunk_values // max(1, n * d * n_repeats))  # columns per predict call
    for start in range(0, d, per_call):
        cols = range(start, min(d, start + per_call))
        copies = np.repeat(x[None], len(cols) * n_repeats, axis=0)  # [C * R, N, D]
        for c, j in enumerate(cols):
            rng = np.random.default_rng((seed, j))
            for r in range(n_repeats):
                copies[c * n_repeats + r, :, j] = x[rng.permutation(n), j]
        scores = _scores(pipeline, copies, y, positive_index)
        importances[start : start + len(cols)] = reference - scores.reshape(len(cols), n_repeats).mean(1)
    return importances


def word_occlusion_importance(predict: Predict, x: np.ndarray, y: np.ndarray, token_ids: np.ndarray,
                              unk_id: int) -> np.ndarray:
    """Drop in accuracy when every occurrence of a word is replaced by the unknown token.

    Written by hand: permutation importance shuffles columns, and a column of token ids is a
    position, not a word. Args: ``x`` ``[N, L]`` token ids, ``y`` ``[N]``, ``token_ids`` ``[V']``
    the words to score. Returns ``[V']`` accuracy drops (0 for words absent from ``x``).
    """
    correct = predict(x) == y
    out = np.zeros(len(token_ids))
    for k, t in enumerate(token_ids):
        has = (x == t).any(1)
        if not has.any():
            continue
        xo = x[has].copy()
        xo[xo == t] = unk_id
        # Only sentences holding the word can change; the others keep their predictions.
        out[k] = (int(correct[has].sum()) - int((predict(xo) == y[has]).sum())) / len(y)
    return out


def sentiment_fraction(terms: list[str], words: set[str] | frozenset[str]) -> float:
    """Fraction of ``terms`` (words or space-separated n-grams) that contain one of ``words``."""
    if not terms:
        return float("nan")
    return sum(any(w in words for w in t.split()) for t in terms) / len(terms)


# ----------------------------------------------------------------------------- cost


def latency_ms_per_1000(fn: Callable[[np.ndarray], Any], x: np.ndarray, repeats: int = 3) -> float:
    """Median wall time of ``fn(x)`` (one batch call) over ``repeats`` runs, in ms per 1,000 samples."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6 / max(1, len(x))


def module_size(module: nn.Module) -> tuple[int, int]:
    """``(parameters, bytes)``: the number of parameter elements, and the size of the state_dict
    (parameters and buffers) written with ``torch.save`` to memory."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return int(sum(p.numel() for p in module.parameters())), buf.getbuffer().nbytes
