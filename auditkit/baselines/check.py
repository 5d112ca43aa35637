"""The ``baselines`` check: does the network beat plain scikit-learn models on the same data?

Fits (or loads from the cache) the task's baselines (:mod:`auditkit.baselines.models`) and
compares each with the network on the same test samples (:mod:`auditkit.baselines.compare`):
quality with paired tests, calibration, robustness under the same threat model, agreement of
their global importance with the network's attributions and with the data's known causes, and
cost. The section ends in one plain verdict sentence.

Budgets: ``quick`` skips the decision-based attacks and uses 1 permutation repeat on 200 rows;
``standard`` runs HopSkipJump with few steps (images) or the constrained tabular attack on 64
samples, 3 repeats on 1,000 rows; ``thorough`` uses 128 samples, more HopSkipJump steps and 5
repeats on 2,000 rows.

Run-dependent values (fit and inference times, whether a pipeline came from the cache) sit
under ``cost.timings``, which :func:`auditkit.results.strip_timings` removes when two runs are
compared; the verdict and findings use no timings, so same inputs and seed give the same text.

Findings (each with why it matters, what to do, and its evidence path in results.json):

* a contender (any baseline but the dummy) significantly better than the network on the
  primary metric: medium ("use the baseline"); one that ties it: low;
* the network beats every contender: low (nothing to do);
* the prior-class dummy not significantly worse on the primary metric: high (the network
  shows no skill at all);
* with a positive class (primary metric PR-AUC), the dummy not significantly worse on
  *accuracy* (exact McNemar test, p >= ``DUMMY_ALPHA``): medium. The network may still rank
  well (its PR-AUC is in the evidence), but its headline accuracy says nothing: on fraud-mlp a
  model that never flags fraud scores 98.5% against the network's 98.6%.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from auditkit.baselines.compare import (
    SklearnModule,
    accuracy_on,
    constrained_decision_attack,
    decision_attack_l2,
    latency_ms_per_1000,
    module_size,
    paired_test,
    permutation_importances,
    pr_auc_difference,
    quality_and_calibration,
    robustness_summary,
    sentiment_fraction,
    spearman,
    tabular_noise,
    tabular_scale,
    uniform_noise,
    word_occlusion_importance,
)
from auditkit.baselines.models import (
    IMAGE,
    TABULAR,
    TEXT,
    TITLES,
    BaselineError,
    FittedBaseline,
    encoded_feature_index,
    fit_baselines,
    parameter_count,
    validate_tabular,
)
from auditkit.checks import Check, ScanContext, register_check
from auditkit.metrics import softmax
from auditkit.results import Finding, to_jsonable
from auditkit.sections import middle_positive

NETWORK = "network"
DUMMY = "dummy-prior"
ROBUST_SAMPLES = {"quick": 32, "standard": 64, "thorough": 128}
PERM_REPEATS = {"quick": 1, "standard": 3, "thorough": 5}
PERM_ROWS = {"quick": 200, "standard": 1000, "thorough": 2000}
# Rows x input elements x repeats each baseline predicts for its permutation importance, at most:
# fewer rows for wide inputs. The gradient-boosted baseline predicts ~15,000 rows/s on one core
# (1,000 trees on digits), so a 16x16x3 image with 1,000 rows took 70 s of a 190 s scan; with
# this cap, 86 rows (never fewer than PERM_MIN_ROWS). Digits (64 elements) and fraud (30) keep
# every row PERM_ROWS allows.
PERM_PREDICTIONS = {"quick": 50_000, "standard": 200_000, "thorough": 1_000_000}
PERM_MIN_ROWS = 50
# Permutation importance predicts every row once per input element and repeat: images with
# more elements than this (CIFAR's 3,072) get coefficient importance only.
PERM_MAX_FEATURES = 1024
MAX_TRAIN = {"quick": 50_000, "standard": 50_000, "thorough": None}
APGD_ITERS = {"quick": 20, "standard": 50, "thorough": 100}
N_BOOT = {"quick": 100, "standard": 200, "thorough": 500}  # resamples of each bootstrap interval
LATENCY_ROWS = 1000
DUMMY_ALPHA = 0.05  # McNemar p-value at or above which the dummy ties the network (the tests' own alpha)
SECTION = "sections.baselines.data"  # where this check's evidence sits in results.json
# HopSkipJump on a scikit-learn model costs one predict_proba per query batch: few steps.
HSJ_SETTINGS = {
    "standard": {"steps": 5, "initial_gradient_eval_steps": 25, "max_gradient_eval_steps": 100,
                 "init_directions": 100},
    "thorough": {"steps": 10, "initial_gradient_eval_steps": 50, "max_gradient_eval_steps": 500},
}
# Tabular budgets, in the units of compare.tabular_distance (training standard deviations).
TABULAR_EPSILONS = [0.5, 1.0, 2.0, 4.0]
TOP_NGRAMS = 20


@register_check
class BaselineComparison(Check):
    name = "baselines"
    title = "Classical baselines"
    tasks = (IMAGE, TEXT, TABULAR)

    def skip_reason(self, ctx: ScanContext) -> str | None:
        reason = super().skip_reason(ctx)
        if reason or ctx.model.card.task != TABULAR:
            return reason
        try:
            for split, x in (("the training split", ctx.data.x_train), ("the test split", ctx.data.x_test)):
                validate_tabular(ctx.model.card.features or [], x, split)
        except BaselineError as exc:
            return f"cannot build the tabular baselines: {exc}"
        return None

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        card, data, cfg = ctx.model.card, ctx.data, ctx.config
        fitted = fit_baselines(card, data, seed=cfg.seed, max_train=MAX_TRAIN[cfg.budget])
        models: dict[str, dict[str, Any]] = {name: {} for name in [*fitted, NETWORK]}

        probs = {NETWORK: softmax(ctx.test_logits().astype(np.float64))}
        for name, b in ctx.track(list(fitted.items()), desc="baselines: predict"):
            probs[name] = b.predict_proba(data.x_test)
        _quality(ctx, probs, models)
        robust_setup = _robustness(ctx, fitted, models)
        interp_setup = _interpretability(ctx, fitted, models)
        _cost(ctx, fitted, models)

        verdict, findings = _verdict(ctx, fitted, models, self.name)
        out = {
            "task": card.task,
            "dataset": data.name,
            "primary_metric": _primary(ctx, models),
            "n_test": len(data.y_test),
            "n_train": next(iter(fitted.values())).n_train,
            "baselines": {name: models[name] for name in fitted},
            "network": models[NETWORK],
            "robustness_setup": robust_setup,
            "interpretability_setup": interp_setup,
            "verdict": verdict,
        }
        return to_jsonable(out), findings


# ----------------------------------------------------------------------------- quality


def _quality(ctx: ScanContext, probs: dict[str, np.ndarray], models: dict[str, dict[str, Any]]) -> None:
    card, y, seed = ctx.model.card, ctx.data.y_test, ctx.config.seed
    pos, n_boot = card.positive_index, N_BOOT[ctx.config.budget]
    net_correct = probs[NETWORK].argmax(1) == y
    for name, p in probs.items():
        quality, calibration = quality_and_calibration(p, y, card.class_names, pos, seed, n_boot)
        if name != NETWORK:
            quality["vs_network"] = paired_test(net_correct, p.argmax(1) == y)
            if "pr_auc" in quality:
                quality["pr_auc_vs_network"] = pr_auc_difference(probs[NETWORK][:, pos], p[:, pos], y == pos, seed,
                                                                 n_boot)
        models[name]["quality"] = quality
        models[name]["calibration"] = calibration


def _primary(ctx: ScanContext, models: dict[str, dict[str, Any]]) -> str:
    """PR-AUC for tasks with a positive class (accuracy says little at 1.5% prevalence)."""
    return "pr_auc" if "pr_auc" in models[NETWORK]["quality"] else "accuracy"


# ----------------------------------------------------------------------------- robustness


def _skipped(reason: str) -> dict[str, str]:
    return {"status": "skipped", "reason": reason}


def _test_rows(ctx: ScanContext, n: int, stream: str, eval_samples: bool) -> np.ndarray:
    """At most ``n`` sorted test indices: for tabular data with a positive class, half positives
    (as the explanation checks do: random rows would be almost all negatives); otherwise the
    scan's eval samples (``eval_samples``) or a seeded random sample of the test split."""
    card, y = ctx.model.card, ctx.data.y_test
    n = min(n, len(y))
    rng = ctx.rng(stream)
    pos = card.positive_index
    if card.task == TABULAR and pos is not None:
        positives, negatives = np.flatnonzero(y == pos), np.flatnonzero(y != pos)
        k = min(len(positives), n // 2)
        return np.sort(np.concatenate([rng.choice(positives, k, replace=False),
                                       rng.choice(negatives, min(n - k, len(negatives)), replace=False)]))
    if eval_samples:
        return ctx.eval_index[:n]
    return np.sort(rng.choice(len(y), n, replace=False))


def _epsilons(ctx: ScanContext, norm: str) -> list[float]:
    return [float(e) for e in ((ctx.config.epsilons or {}).get(norm) or ctx.model.card.epsilons.get(norm) or [])]


def _middle(eps: list[float]) -> float | None:
    """The headline ε of a grid: the robustness section's rule (:func:`auditkit.sections.middle_positive`)."""
    return middle_positive(eps)


def _robustness(ctx: ScanContext, fitted: dict[str, FittedBaseline],
                models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    card = ctx.model.card
    if card.task == TEXT:
        reason = ("not run on text: robustness to token substitutions is the robustness check's "
                  "business; no decision-based attack on token ids is defined here")
        for m in models.values():
            m["robustness"] = _skipped(reason)
        return _skipped(reason)
    n = min(ROBUST_SAMPLES[ctx.config.budget], ctx.config.samples)
    idx = _test_rows(ctx, n, "baselines-robustness", eval_samples=True)
    if card.task == IMAGE:
        if card.bounds is None:
            reason = "the card gives no input bounds, which every image threat model needs"
            for m in models.values():
                m["robustness"] = _skipped(reason)
            return _skipped(reason)
        return _robust_images(ctx, fitted, models, idx)
    return _robust_tabular(ctx, fitted, models, idx)


def _predictors(ctx: ScanContext, fitted: dict[str, FittedBaseline]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    bs = ctx.config.batch_size
    preds: dict[str, Callable[[np.ndarray], np.ndarray]] = {name: b.predict for name, b in fitted.items()}
    preds[NETWORK] = lambda a: ctx.model.logits(a, bs).argmax(1)
    return preds


def _robust_images(ctx: ScanContext, fitted: dict[str, FittedBaseline], models: dict[str, dict[str, Any]],
                   idx: np.ndarray) -> dict[str, Any]:
    from auditkit.attacks.apgd import APGD
    from auditkit.attacks.registry import norm_tolerance

    card, cfg = ctx.model.card, ctx.config
    bounds = (float(card.bounds[0]), float(card.bounds[1]))  # type: ignore[index]
    x, y = ctx.data.x_test[idx], ctx.data.y_test[idx]
    preds = _predictors(ctx, fitted)
    l2_eps, linf_eps = _epsilons(ctx, "l2"), _epsilons(ctx, "linf")
    results: dict[str, dict[str, Any]] = {name: {} for name in models}

    # (a) decision-based minimal L2 perturbations, the same attack on every model.
    if cfg.budget == "quick":
        for r in results.values():
            r["decision_attack"] = _skipped("budget 'quick' skips the decision-based attacks; use --budget standard")
    else:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for name in ctx.track(list(models), desc="baselines: HopSkipJump"):
            correct = preds[name](x) == y
            if name == DUMMY:  # a constant prediction: no perturbation changes it
                norms = np.where(correct, np.inf, 0.0)
            elif name == NETWORK:
                dev = ctx.model.device
                norms = decision_attack_l2(ctx.model.module, xt.to(dev), yt.to(dev), bounds, cfg.seed,
                                           **HSJ_SETTINGS[cfg.budget])
            else:
                norms = decision_attack_l2(SklearnModule(fitted[name].predict_proba), xt, yt, bounds, cfg.seed,
                                           **HSJ_SETTINGS[cfg.budget])
            results[name]["decision_attack"] = {"status": "ok",
                                                **robustness_summary(norms, correct, l2_eps, norm_tolerance(bounds))}

    # (b) transfer of the network's white-box adversarial examples.
    eps = _middle(linf_eps)
    transfer_setup: dict[str, Any]
    if eps is None:
        transfer_setup = _skipped("the card gives no Linf epsilons for the white-box attack")
        for r in results.values():
            r["transfer"] = transfer_setup
    else:
        dev = ctx.model.device
        attack = APGD(norm="linf", loss="ce", n_iter=APGD_ITERS[cfg.budget], seed=cfg.seed)
        out = attack.run(ctx.model.module, torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev), eps, bounds)
        x_adv = out.x_adv.detach().cpu().numpy()
        transfer_setup = {"status": "ok", "attack": "apgd-ce-linf (auditkit) on the network", "eps": eps,
                          "n": len(y), "network_fooled": int(out.success.sum())}
        for name, r in results.items():
            r["transfer"] = {"status": "ok", "eps": eps, "clean_accuracy": accuracy_on(preds[name], x, y),
                             "adversarial_accuracy": accuracy_on(preds[name], x_adv, y)}

    # (c) random noise of the same sizes.
    rng = ctx.rng("baselines-noise")
    noisy = {norm: (e, uniform_noise(x, e, norm, bounds, rng))
             for norm, e in (("linf", _middle(linf_eps)), ("l2", _middle(l2_eps))) if e is not None}
    for name, r in results.items():
        r["noise"] = {norm: {"eps": e, "accuracy": accuracy_on(preds[name], xn, y)} for norm, (e, xn) in noisy.items()}

    for name, r in results.items():
        models[name]["robustness"] = r
    return {
        "status": "ok", "samples": len(idx), "sample_index": idx.tolist(), "norm": "l2", "epsilons": l2_eps,
        "units": "input units (the card's bounds)",
        "decision_attack": ("skipped at budget quick" if cfg.budget == "quick" else
                            f"hsj-l2: foolbox HopSkipJump, {HSJ_SETTINGS[cfg.budget]['steps']} steps; scikit-learn "
                            "models queried through predict_proba (label only); norms are upper bounds"),
        "transfer": transfer_setup,
        "noise": {norm: e for norm, (e, _) in noisy.items()},
    }


def _robust_tabular(ctx: ScanContext, fitted: dict[str, FittedBaseline], models: dict[str, dict[str, Any]],
                    idx: np.ndarray) -> dict[str, Any]:
    card, cfg, data = ctx.model.card, ctx.config, ctx.data
    features = card.features or []
    scale = tabular_scale(features, data.x_train)
    x, y = data.x_test[idx], data.y_test[idx]
    preds = _predictors(ctx, fitted)
    eps_grid = TABULAR_EPSILONS
    results: dict[str, dict[str, Any]] = {name: {} for name in models}
    net_adv: tuple[np.ndarray, np.ndarray] | None = None

    if cfg.budget == "quick":
        for r in results.values():
            r["decision_attack"] = _skipped("budget 'quick' skips the decision-based attacks; use --budget standard")
    else:
        steps = 40 if cfg.budget == "thorough" else 20
        for name in ctx.track(list(models), desc="baselines: constrained attack"):
            adv, norms = constrained_decision_attack(preds[name], x, y, features, scale, cfg.seed, n_refine=steps)
            if name == NETWORK:
                net_adv = (adv, norms)
            correct = preds[name](x) == y
            results[name]["decision_attack"] = {"status": "ok", **robustness_summary(norms, correct, eps_grid)}

    # Transfer: the network's adversarial points from the same attack, where it found one.
    if net_adv is None:
        transfer_setup = _skipped("needs the network's adversarial examples from the decision-based attack, "
                                  "skipped at budget quick")
        for r in results.values():
            r["transfer"] = transfer_setup
    else:
        adv, norms = net_adv
        rows = np.isfinite(norms) & (norms > 0)  # clean-correct samples the attack broke
        transfer_setup = {"status": "ok", "attack": "constrained decision-based attack on the network",
                          "n": int(rows.sum())}
        for name, r in results.items():
            r["transfer"] = ({"status": "ok", "clean_accuracy": accuracy_on(preds[name], x[rows], y[rows]),
                              "adversarial_accuracy": accuracy_on(preds[name], adv[rows], y[rows])}
                             if rows.any() else _skipped("the attack broke none of the network's samples"))

    eps = eps_grid[len(eps_grid) // 2]
    x_noise = tabular_noise(x, eps, features, scale, ctx.rng("baselines-noise"))
    for name, r in results.items():
        r["noise"] = {"l2": {"eps": eps, "accuracy": accuracy_on(preds[name], x_noise, y)}}
    for name, r in results.items():
        models[name]["robustness"] = r
    return {
        "status": "ok", "samples": len(idx), "sample_index": idx.tolist(), "norm": "l2", "epsilons": eps_grid,
        "units": "training standard deviations of the continuous/integer features; each changed binary or "
                 "categorical feature counts 1",
        "constraints": "only features the card marks changeable move; values stay in range and keep their kind",
        "decision_attack": ("skipped at budget quick" if cfg.budget == "quick" else
                            "constrained decision-based random search (auditkit, label only): random valid "
                            "starts, binary search towards the sample, random refinement"),
        "transfer": transfer_setup,
        "noise": {"l2": eps},
    }


# ----------------------------------------------------------------------------- interpretability


def _network_attributions(ctx: ScanContext) -> tuple[str, torch.Tensor, np.ndarray] | None:
    """``(method, attributions, inputs)`` of the network: the attributions check's, else IG (or
    occlusion where IG cannot run) on the same samples the explanation checks use."""
    from auditkit.explain.check import explain_inputs
    from auditkit.explain.methods import attribute, available_methods

    inputs = explain_inputs(ctx)
    cached = ctx.cache.get("attributions") or {}
    for method in ("ig", "occlusion", *cached):
        if method in cached:
            return method, cached[method], inputs["x"].cpu().numpy()
    status = available_methods(ctx.model.card, ctx.model.module, ctx.model.eager)
    method = next((m for m in ("ig", "occlusion") if status.get(m) is None), None)
    if method is None:
        return None
    attr = attribute(method, ctx.model.module, inputs["x"], inputs["target"], ctx.model.card,
                     baseline=inputs["baseline"], seed=ctx.config.seed)
    return method, attr.detach().cpu(), inputs["x"].cpu().numpy()


def permutation_rows(width: int, budget: str) -> int:
    """Test rows for permutation importance on inputs of ``width`` elements: ``PERM_ROWS``,
    fewer where ``rows x width x repeats`` would pass ``PERM_PREDICTIONS``, at least
    ``PERM_MIN_ROWS``."""
    fit = PERM_PREDICTIONS[budget] // max(1, width * PERM_REPEATS[budget])
    return min(PERM_ROWS[budget], max(PERM_MIN_ROWS, fit))


def _interpretability(ctx: ScanContext, fitted: dict[str, FittedBaseline],
                      models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    card, data, cfg = ctx.model.card, ctx.data, ctx.config
    net = _network_attributions(ctx)
    n_rows = permutation_rows(int(np.prod(data.x_test.shape[1:])), cfg.budget)
    rows = _test_rows(ctx, n_rows, "baselines-importance", eval_samples=False)
    setup: dict[str, Any] = {"rows": len(rows), "network_method": net[0] if net else None}
    for name in fitted:
        if name == DUMMY:
            models[name]["interpretability"] = _skipped("a constant predictor: every importance is 0")
    if card.task == TEXT:
        _interpret_text(ctx, fitted, models, net, rows)
        setup["baseline_method"] = "word occlusion: accuracy drop when a word is replaced by the unknown token"
        return setup
    setup["baseline_method"] = (f"permutation importance (shuffle one column, mean score drop), "
                                f"{PERM_REPEATS[cfg.budget]} repeats, scored by "
                                f"{'PR-AUC' if card.positive_index is not None else 'accuracy'}")
    x = data.x_test[rows].reshape(len(rows), -1)
    y = data.y_test[rows]
    net_imp = None if net is None else net[1].abs().double().mean(0).reshape(-1).numpy()
    names = [f.name for f in card.features] if card.task == TABULAR and card.features else None
    gt = data.ground_truth if names and "causal_features" in data.ground_truth else None
    if net_imp is None:
        models[NETWORK]["interpretability"] = _skipped("no attribution method can run on this model")
    else:
        models[NETWORK]["interpretability"] = _importance_entry(net_imp, None, names, gt, f"mean |{net[0]}|")
    permute = x.shape[1] <= PERM_MAX_FEATURES
    if not permute:
        setup["baseline_method"] = (f"coefficients only: permutation importance over {x.shape[1]} input elements "
                                    f"(more than {PERM_MAX_FEATURES}) is too slow")
    for name in ctx.track([n for n in fitted if n != DUMMY], desc="baselines: importance"):
        b = fitted[name]
        coef = _linear_importance(b, card)
        if permute:
            perm = permutation_importances(b.pipeline, x, y, card.positive_index, PERM_REPEATS[cfg.budget], cfg.seed)
            entry = _importance_entry(perm, net_imp, names, gt, "permutation importance")
        else:
            entry = {"status": "ok", "method": "coefficients only"}
        if coef is not None:
            entry["coefficients"] = {"spearman_with_network": spearman(coef, net_imp) if net_imp is not None else None,
                                     **({"importance": dict(zip(names, coef.tolist()))} if names else {})}
        models[name]["interpretability"] = entry
    return setup


def _importance_entry(imp: np.ndarray, net_imp: np.ndarray | None, names: list[str] | None,
                      gt: dict[str, Any] | None, method: str) -> dict[str, Any]:
    from auditkit.explain.quality import tabular_ground_truth

    entry: dict[str, Any] = {"status": "ok", "method": method}
    if net_imp is not None:
        entry["spearman_with_network"] = spearman(imp, net_imp)
    if names:
        entry["importance"] = dict(zip(names, imp.tolist()))
        if gt is not None:
            entry["ground_truth"] = tabular_ground_truth(dict(zip(names, imp.tolist())), gt["causal_features"],
                                                         gt.get("non_causal_features", []))
    return entry


def _linear_importance(b: FittedBaseline, card: Any) -> np.ndarray | None:
    """Mean |coefficient| over classes per input feature of a logistic regression (tabular: the
    one-hot and scaled columns summed back onto their original feature); None for other models."""
    model = b.pipeline.named_steps["model"]
    if not hasattr(model, "coef_"):
        return None
    coef = np.abs(model.coef_).mean(0)
    if card.task == TABULAR:
        return np.bincount(encoded_feature_index(card.features), weights=coef, minlength=len(card.features))
    return coef


def _text_coefficients(b: FittedBaseline) -> tuple[list[str], np.ndarray] | None:
    """(n-grams, coefficient per n-gram) of a TF-IDF linear model (the calibrated SVM: mean over
    its folds' SVMs); None for other models."""
    steps = b.pipeline.named_steps
    if "tfidf" not in steps:
        return None
    model = steps["model"]
    if hasattr(model, "calibrated_classifiers_"):
        coef = np.mean([cc.estimator.coef_.mean(0) for cc in model.calibrated_classifiers_], axis=0)
    elif hasattr(model, "coef_"):
        coef = model.coef_.mean(0)
    else:
        return None
    return list(steps["tfidf"].get_feature_names_out()), coef


def _interpret_text(ctx: ScanContext, fitted: dict[str, FittedBaseline], models: dict[str, dict[str, Any]],
                    net: tuple[str, torch.Tensor, np.ndarray] | None, rows: np.ndarray) -> None:
    card, data = ctx.model.card, ctx.data
    text = card.text
    vocab = list(text.vocab)  # type: ignore[union-attr]
    special = {text.pad_id, text.unk_id}  # type: ignore[union-attr]
    x, y = data.x_test[rows], data.y_test[rows]
    ids = np.array([t for t in np.unique(x) if t not in special])
    sentiment = _sentiment_words(ctx)

    net_imp = None
    if net is None:
        models[NETWORK]["interpretability"] = _skipped("no attribution method can run on this model")
    else:
        method, attr, xs = net
        a, tok = attr.abs().double().numpy().ravel(), xs.ravel()
        sums = np.bincount(tok, weights=a, minlength=len(vocab))
        counts = np.bincount(tok, minlength=len(vocab))
        mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        seen = np.array([t for t in ids if counts[t] > 0])
        net_imp = dict(zip(seen.tolist(), mean[seen].tolist()))
        top = [vocab[t] for t in sorted(seen, key=lambda t: -mean[t])[:TOP_NGRAMS]]
        entry: dict[str, Any] = {"status": "ok", "method": f"mean |{method}| per word", "top_words": top}
        if sentiment:
            entry["top_words_sentiment_fraction"] = sentiment_fraction(top, sentiment)
        models[NETWORK]["interpretability"] = entry

    for name in ctx.track([n for n in fitted if n != DUMMY], desc="baselines: importance"):
        b = fitted[name]
        occl = word_occlusion_importance(b.predict, x, y, ids, text.unk_id)  # type: ignore[union-attr]
        entry = {"status": "ok", "method": "word occlusion (accuracy drop)"}
        if net_imp:
            shared = [k for k, t in enumerate(ids) if int(t) in net_imp]
            entry["spearman_with_network"] = spearman(occl[shared], [net_imp[int(ids[k])] for k in shared])
        entry["top_words"] = [vocab[int(ids[k])] for k in np.argsort(-occl, kind="stable")[:TOP_NGRAMS]]
        coefs = _text_coefficients(b)
        if coefs is not None:
            grams, coef = coefs
            top = [grams[k] for k in np.argsort(-np.abs(coef), kind="stable")[:TOP_NGRAMS]]
            entry["top_ngrams"] = top
            if sentiment:
                entry["top_ngrams_sentiment_fraction"] = sentiment_fraction(top, sentiment)
        models[name]["interpretability"] = entry


def _sentiment_words(ctx: ScanContext) -> frozenset[str] | None:
    """The words that carry the label, where the data knows them (``ground_truth["sentiment_words"]``,
    e.g. the reviews generator's) and the model's vocabulary holds them all."""
    words = frozenset(ctx.data.ground_truth.get("sentiment_words") or ())
    vocab = set(ctx.model.card.text.vocab) if ctx.model.card.text else set()
    if words and words <= vocab:
        return words
    return None


# ----------------------------------------------------------------------------- cost


def _cost(ctx: ScanContext, fitted: dict[str, FittedBaseline], models: dict[str, dict[str, Any]]) -> None:
    x = ctx.data.x_test[:LATENCY_ROWS]
    bs = ctx.config.batch_size
    for name, b in fitted.items():
        models[name]["cost"] = {
            "parameters": parameter_count(b.pipeline),
            "size_bytes": b.size_bytes,
            "timings": {"fit_seconds": b.fit_seconds, "from_cache": b.from_cache,
                        "predict_ms_per_1000": latency_ms_per_1000(b.predict_proba, x)},
        }
    params, size = module_size(ctx.model.module)
    models[NETWORK]["cost"] = {
        "parameters": params, "size_bytes": size,
        "timings": {"fit_seconds": None,
                    "predict_ms_per_1000": latency_ms_per_1000(lambda a: ctx.model.logits(a, bs), x),
                    "device": str(ctx.model.device)},
    }


# ----------------------------------------------------------------------------- verdict


def _metric_name(primary: str) -> str:
    return "PR-AUC" if primary == "pr_auc" else "accuracy"


def _versus(models: dict[str, dict[str, Any]], name: str, primary: str) -> tuple[str, str]:
    """(winner, evidence) of baseline ``name`` against the network on the primary metric."""
    q = models[name]["quality"]
    if primary == "pr_auc":
        d = q["pr_auc_vs_network"]
        return d["winner"], (f"difference {d['value']:+.3f}, 95% CI [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]; "
                             f"accuracy McNemar p={q['vs_network']['p_value']:.2g}")
    t = q["vs_network"]
    return t["winner"], f"McNemar p={t['p_value']:.2g}"


def _verdict(ctx: ScanContext, fitted: dict[str, FittedBaseline], models: dict[str, dict[str, Any]],
             section: str) -> tuple[str, list[Finding]]:
    primary = _primary(ctx, models)
    metric = _metric_name(primary)
    data = ctx.data.name
    net_value = models[NETWORK]["quality"][primary]["value"]
    net_params = models[NETWORK]["cost"]["parameters"]

    def value(name: str) -> float:
        return models[name]["quality"][primary]["value"]

    def path(name: str) -> str:
        return f"{SECTION}.baselines.{name}.quality"

    findings: list[Finding] = []
    contenders = [n for n in fitted if n != DUMMY]
    outcome = {n: _versus(models, n, primary) for n in contenders}
    winners = sorted([n for n in contenders if outcome[n][0] == "baseline"], key=value, reverse=True)
    ties = sorted([n for n in contenders if outcome[n][0] == "tie"], key=value, reverse=True)
    if winners or ties:
        best = (winners or ties)[0]
        verb = "beats" if winners else "matches"
        title = TITLES.get(best, best)
        params = models[best]["cost"]["parameters"]
        verdict = (f"{title} {verb} the network on {data} ({metric} {value(best):.3f} vs "
                   f"{net_value:.3f}, {outcome[best][1]}) with {params:,} learned "
                   f"parameters against the network's {net_params:,}.")
        kind = (f"a smaller classical model ({params:,} vs {net_params:,} learned parameters), cheaper to run, "
                "explain and audit," if params < net_params else "a classical model, simpler to maintain and explain,")
        findings.append(Finding(
            severity="medium" if winners else "low", title=f"A classical baseline {verb} the network",
            evidence=verdict, section=section, evidence_path=path(best),
            why=(f"{title} is {kind} and it does "
                 + ("better than the network" if winners else "as well as the network within the test's power")
                 + f" on {metric}: the network's extra complexity buys nothing measurable on this data."),
            action=(f"Use the baseline ({title}) unless the network wins on something you need that this section "
                    "also compares (robustness, latency, importance agreement); otherwise improve the network "
                    "(data, architecture, tuning) until it beats the baseline with significance, and keep the "
                    "baseline in the gate.")))
    elif contenders:
        best = max(contenders, key=value)
        verdict = (f"The network beats every baseline on {data} ({metric} {net_value:.3f} vs {value(best):.3f} for "
                   f"the best, {TITLES.get(best, best)}, {outcome[best][1]}).")
        findings.append(Finding(
            severity="low", title="The network beats every classical baseline", evidence=verdict,
            section=section, evidence_path=path(best),
            why="The network earns its complexity on this data: no simpler model does as well.",
            action="Nothing to fix; keep the best baseline's figure as a floor in the gate policy, so that a "
                   "later model that stops beating it fails."))
    else:
        verdict = "No baseline other than the dummy was fitted."
    if DUMMY in fitted:
        findings += _dummy_findings(ctx, models, primary, section)
    return verdict, findings


def _dummy_findings(ctx: ScanContext, models: dict[str, dict[str, Any]], primary: str,
                    section: str) -> list[Finding]:
    """The network against the constant prior-class predictor: on the primary metric, and on
    accuracy where the primary metric is PR-AUC (the accuracy a report leads with)."""
    metric = _metric_name(primary)
    data = ctx.data.name
    names = ctx.model.card.class_names
    majority = names[int(np.bincount(ctx.data.y_train, minlength=len(names)).argmax())] if names else "the majority"
    dummy_q, net_q = models[DUMMY]["quality"], models[NETWORK]["quality"]
    findings = []
    winner, evidence = _versus(models, DUMMY, primary)
    if winner != "network":
        findings.append(Finding(
            severity="high", title="A constant predictor is not significantly worse than the network",
            evidence=(f"the prior-class dummy (always '{majority}') scores {metric} {dummy_q[primary]['value']:.3f} "
                      f"vs the network's {net_q[primary]['value']:.3f} ({evidence}) on {data}"),
            section=section, evidence_path=f"{SECTION}.baselines.{DUMMY}.quality",
            why=f"Always answering '{majority}' does as well: the network shows no skill on {data}, whatever its "
                "headline figures look like.",
            action="Do not ship. Check that the features carry signal and reach the model as trained (preprocessing, "
                   "column order, labels), then retrain; compare against the dummy again before any other figure."))
    elif primary == "pr_auc":
        test = dummy_q["vs_network"]
        if test["p_value"] >= DUMMY_ALPHA or test["winner"] != "network":
            acc_d, acc_n = dummy_q["accuracy"]["value"], net_q["accuracy"]["value"]
            pos = net_q.get("positive_class") or "the positive class"
            findings.append(Finding(
                severity="medium", title=f"Accuracy is no better than always predicting '{majority}'",
                evidence=(f"the prior-class dummy scores accuracy {acc_d:.1%} vs the network's {acc_n:.1%} "
                          f"(exact McNemar p={test['p_value']:.2g}: the network alone is right on "
                          f"{test['network_only_correct']} samples, the dummy alone on {test['baseline_only_correct']}) "
                          f"on {data}; on PR-AUC the network leads, {net_q['pr_auc']['value']:.3f} vs "
                          f"{dummy_q['pr_auc']['value']:.3f}"),
                section=section, evidence_path=f"{SECTION}.baselines.{DUMMY}.quality.vs_network",
                why=f"A model that never predicts '{pos}' scores the same accuracy, so the accuracy figure says "
                    f"nothing about how well this model finds '{pos}'; readers who stop at it are misled.",
                action=f"Report and gate on PR-AUC and on '{pos}' recall and precision at a chosen threshold "
                       "(see the performance findings), not on accuracy."))
    return findings
