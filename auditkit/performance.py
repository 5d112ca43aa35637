"""Clean performance: accuracy with a confidence interval, per-class figures, confusion matrix,
calibration (ECE and reliability bins), and PR-AUC/ROC-AUC for imbalanced tasks."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from auditkit.checks import Check, ScanContext, register_check
from auditkit.results import Finding, to_jsonable
from auditkit.sections import PerformanceData
from auditkit.stats import bootstrap_ci, proportion


def softmax(logits: np.ndarray) -> np.ndarray:
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


def classification_report(logits: np.ndarray, y: np.ndarray, class_names: list[str],
                          positive_index: int | None, seed: int) -> dict[str, Any]:
    """Everything clean performance reports, from logits ``[N, C]`` and labels ``[N]``."""
    probs = softmax(logits)
    pred = probs.argmax(1)
    k = len(class_names)
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    per_class = []
    for c, name in enumerate(class_names):
        tp, support, predicted = int(cm[c, c]), int(cm[c].sum()), int(cm[:, c].sum())
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall)) if precision and recall else 0.0
        per_class.append({"class": name, "support": support, "precision": precision, "recall": recall,
                          "f1": f1, "recall_ci": proportion(tp, support) if support else None})
    out: dict[str, Any] = {
        "accuracy": proportion(int((pred == y).sum()), len(y)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": class_names,
        "calibration": calibration(probs, y),
        "predictions": pred.tolist(),
        "labels": y.tolist(),
    }
    if positive_index is not None:
        yb = (y == positive_index).astype(int)
        score = probs[:, positive_index]
        if 0 < yb.sum() < len(yb):
            rng_seed = seed
            pr = float(average_precision_score(yb, score))
            roc = float(roc_auc_score(yb, score))

            def boot(metric):
                def f(idx):
                    if yb[idx].min() == yb[idx].max():
                        return None
                    return metric(yb[idx], score[idx])
                return f

            out["positive_class"] = class_names[positive_index]
            out["prevalence"] = float(yb.mean())
            out["pr_auc"] = {"value": pr, **dict(zip(("ci_low", "ci_high"), bootstrap_ci(boot(average_precision_score), len(yb), rng_seed, 200))), "n": len(yb)}
            out["roc_auc"] = {"value": roc, **dict(zip(("ci_low", "ci_high"), bootstrap_ci(boot(roc_auc_score), len(yb), rng_seed + 1, 200))), "n": len(yb)}
    return out


@register_check
class CleanPerformance(Check):
    name = "performance"
    title = "Clean performance"
    tasks = ("image-classification", "text-classification", "tabular-classification")

    def run(self, ctx: ScanContext) -> tuple[PerformanceData, list[Finding]]:
        logits = ctx.test_logits()
        card = ctx.model.card
        out = classification_report(logits, ctx.data.y_test, card.class_names, card.positive_index, ctx.config.seed)
        subsets = {}
        pred = logits.argmax(1)
        for name, mask in ctx.data.subsets.items():
            correct = int((pred[mask] == ctx.data.y_test[mask]).sum())
            subsets[name] = proportion(correct, int(mask.sum()))
        out["subsets"] = subsets
        data = PerformanceData.model_validate(to_jsonable(out))  # the section's typed payload
        findings: list[Finding] = []
        acc = data.accuracy.value
        chance = 1.0 / len(card.class_names)
        if acc is not None and acc < chance + 0.1:
            findings.append(Finding(severity="high", title="Accuracy near chance",
                                    evidence=f"accuracy {acc:.3f} vs chance {chance:.3f}", section=self.name))
        ece = data.calibration.ece
        if ece > 0.1:
            findings.append(Finding(severity="medium", title="Poorly calibrated confidences",
                                    evidence=f"ECE {ece:.3f} over {len(pred)} samples", section=self.name))
        for name, p in data.subsets.items():
            if acc is not None and p.n and p.value is not None and p.value < acc - 0.05:
                findings.append(Finding(severity="medium", title=f"Weaker on the '{name}' subset",
                                        evidence=f"{p.value:.3f} on {p.n} samples vs {acc:.3f} overall",
                                        section=self.name))
        return data, findings
