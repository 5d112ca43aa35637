"""Clean performance: accuracy with a confidence interval, per-class figures, confusion matrix,
calibration (ECE and reliability bins), and PR-AUC/ROC-AUC for imbalanced tasks.

Findings (each says why it matters and what to do; thresholds are the constants below):

* accuracy within ``CHANCE_MARGIN`` of chance (1 / classes): high;
* a minority class — share of the test split below ``MINORITY_SHARE`` of a balanced class's
  (1 / classes) — whose recall or precision is more than ``MINORITY_GAP`` below the headline
  accuracy, judged on the upper end of its 95% Wilson interval so that a handful of samples
  does not raise it: high when the class's recall (upper end) is below ``MINORITY_RECALL_HIGH``
  (the model misses most of it), else medium. On fraud-mlp: 98.6% accuracy, 10.7% of fraud caught;
* expected calibration error above ``ECE_BOUND``: medium;
* a named data subset more than ``SUBSET_GAP`` below the overall accuracy: medium.

For a task with a positive class, ``operating_points`` give the precision a threshold on the
positive-class probability would reach at the recalls in ``TARGET_RECALLS`` (test split: an
indication for the finding's next step, not a tuned threshold).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve

from auditkit.checks import Check, ScanContext, register_check
from auditkit.metrics import calibration, softmax  # noqa: F401  (re-exported)
from auditkit.results import Finding, to_jsonable
from auditkit.sections import PerformanceData
from auditkit.stats import proportion, ranking_metrics_with_intervals

CHANCE_MARGIN = 0.1  # accuracy below chance + this: the model has learned (almost) nothing
MINORITY_SHARE = 0.5  # a class under this fraction of 1/classes of the test split is a minority
MINORITY_GAP = 0.2  # recall/precision this far (upper 95% bound) below accuracy earns a finding
MINORITY_RECALL_HIGH = 0.5  # ...high when the class's recall (upper bound) is below this
ECE_BOUND = 0.1  # expected calibration error (top-class confidence, 10 bins) above this
SUBSET_GAP = 0.05  # a data subset this far below overall accuracy
TARGET_RECALLS = (0.5, 0.8, 0.9)  # recalls at which operating points are reported
SECTION = "sections.performance.data"  # where this check's evidence sits in results.json


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
                          "f1": f1, "recall_ci": proportion(tp, support) if support else None,
                          "precision_ci": proportion(tp, predicted) if predicted else None})
    out: dict[str, Any] = {
        "accuracy": proportion(int((pred == y).sum()), len(y)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": class_names,
        "calibration": calibration(probs, y),
        "predictions": pred.tolist(),
        "labels": y.tolist(),
        # Top-class probability per sample, 4 decimals: the dashboard filters samples by it.
        "confidences": np.round(probs.max(1), 4).tolist(),
    }
    if positive_index is not None:
        yb = (y == positive_index).astype(int)
        score = probs[:, positive_index]
        if 0 < yb.sum() < len(yb):
            out["positive_class"] = class_names[positive_index]
            out["prevalence"] = float(yb.mean())
            out.update(ranking_metrics_with_intervals(yb.astype(bool), score, seed, 200))
            out["operating_points"] = operating_points(yb, score)
    return out


def operating_points(yb: np.ndarray, score: np.ndarray,
                     targets: tuple[float, ...] = TARGET_RECALLS) -> list[dict[str, Any]]:
    """For each target recall, the highest threshold on ``score`` (``[N]`` positive-class
    probabilities) whose recall on binary labels ``yb`` (``[N]``, 1 = positive) reaches it, with
    the precision there and how many samples it flags."""
    precision, recall, thresholds = precision_recall_curve(yb, score)
    out = []
    for target in targets:
        # precision/recall have one more entry than thresholds (the final recall-0 point).
        ok = np.flatnonzero(recall[:-1] >= target)
        if not len(ok):
            continue
        i = ok[-1]  # thresholds increase with the index: the last one keeps the most precision
        out.append({"target_recall": target, "threshold": float(thresholds[i]), "recall": float(recall[i]),
                    "precision": float(precision[i]), "flagged": int((score >= thresholds[i]).sum())})
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
        return data, performance_findings(data, len(card.class_names), self.name)


def performance_findings(data: PerformanceData, n_classes: int, section: str = "performance") -> list[Finding]:
    """The findings of a performance payload (rules and thresholds in the module docstring)."""
    findings: list[Finding] = []
    acc = data.accuracy.value
    chance = 1.0 / max(n_classes, 1)
    if acc is not None and acc < chance + CHANCE_MARGIN:
        findings.append(Finding(
            severity="high", title="Accuracy near chance",
            evidence=f"accuracy {acc:.3f} on {data.accuracy.n} test samples vs chance {chance:.3f}",
            section=section, evidence_path=f"{SECTION}.accuracy",
            why="A model at chance has learned nothing usable: every other figure of this audit describes a "
                "model that does not work.",
            action="Check that the data matches the card (class order, preprocessing, input scaling) and that "
                   "the right weights were saved; then retrain. Do not ship."))
    if acc is not None:
        findings += _minority_findings(data, acc, n_classes, section)
    ece = data.calibration.ece
    if ece > ECE_BOUND:
        worst = max((b for b in data.calibration.bins if b.n and b.confidence is not None and b.accuracy is not None),
                    key=lambda b: b.n * abs(b.confidence - b.accuracy), default=None)  # type: ignore[operator]
        example = (f"; predictions made with {worst.confidence:.0%} confidence are right {worst.accuracy:.0%} of the "
                   f"time ({worst.n} samples)" if worst is not None else "")
        findings.append(Finding(
            severity="medium", title=f"Poorly calibrated confidences (ECE {ece:.3f} > {ECE_BOUND:g})",
            evidence=f"expected calibration error {ece:.3f} over {len(data.labels)} test samples "
                     f"({data.calibration.n_bins} bins){example}",
            section=section, evidence_path=f"{SECTION}.calibration",
            why=f"The model's confidence is off by {ece:.1%} on average: thresholds, abstention rules or risk "
                "scores built on its probabilities will accept wrong answers (or reject right ones) more often "
                "than they say.",
            action="Recalibrate with temperature scaling fitted on a held-out split (one parameter; accuracy is "
                   "unchanged), then re-run the audit and check the ECE; until then do not treat the outputs as "
                   "probabilities."))
    for name, p in data.subsets.items():
        if acc is not None and p.n and p.value is not None and p.value < acc - SUBSET_GAP:
            findings.append(Finding(
                severity="medium", title=f"Weaker on the '{name}' subset",
                evidence=f"{p.value:.3f} on {p.n} samples vs {acc:.3f} overall",
                section=section, evidence_path=f"{SECTION}.subsets.{name}",
                why=f"Users whose inputs look like the '{name}' subset get wrong answers more often than the "
                    "headline accuracy suggests.",
                action=f"Collect or up-weight training data like the '{name}' subset and retrain; report and gate "
                       "on the subset's accuracy, not only the overall figure."))
    return findings


def _minority_findings(data: PerformanceData, acc: float, n_classes: int, section: str) -> list[Finding]:
    """Minority classes whose recall or precision lies far below the headline accuracy."""
    findings = []
    n = sum(c.support for c in data.per_class)
    if n == 0:
        return findings
    balanced = 1.0 / max(n_classes, 1)
    for k, c in enumerate(data.per_class):
        share = c.support / n
        if not c.support or share >= MINORITY_SHARE * balanced:
            continue
        recall, precision = c.recall_ci, c.precision_ci
        # Upper ends of the intervals: a gap a few samples could explain earns no finding.
        low_recall = recall is not None and recall.ci_high is not None and recall.ci_high < acc - MINORITY_GAP
        low_precision = (precision is not None and precision.ci_high is not None
                         and precision.ci_high < acc - MINORITY_GAP)
        if not (low_recall or low_precision):
            continue
        tp = round((c.recall or 0.0) * c.support)
        predicted = precision.n if precision is not None else 0
        caught = f"catches {c.recall:.1%} of '{c.class_name}' ({tp} of {c.support})"
        right = (f"{c.precision:.1%} of its '{c.class_name}' predictions are right ({tp} of {predicted})"
                 if c.precision is not None else f"it never predicts '{c.class_name}'")
        misses_most = recall is not None and recall.ci_high is not None and recall.ci_high < MINORITY_RECALL_HIGH
        title = (f"Catches only {c.recall:.1%} of '{c.class_name}' despite {acc:.1%} accuracy" if low_recall
                 else f"Only {c.precision:.1%} of '{c.class_name}' predictions are right despite {acc:.1%} accuracy")
        tuning = ""
        if c.class_name == data.positive_class and data.operating_points:
            tuning = " At this model's scores, " + "; ".join(
                f"a threshold of {op.threshold:.3g} would catch {op.recall:.0%} with {op.precision:.0%} precision"
                for op in data.operating_points[:2]) + " (test split: an indication only)."
        findings.append(Finding(
            severity="high" if misses_most else "medium", title=title,
            evidence=f"the model {caught}; {right}; the class is {share:.1%} of {n} test samples, so accuracy "
                     f"({acc:.1%}) mostly measures the other classes",
            section=section, evidence_path=f"{SECTION}.per_class[{k}]",
            why=f"On imbalanced data accuracy is dominated by the majority: a model that never predicts "
                f"'{c.class_name}' already scores about {1 - share:.1%}. What a user of this model needs is how "
                f"many '{c.class_name}' cases it catches (recall) and how many of its '{c.class_name}' calls are "
                "right (precision).",
            action=f"Choose the decision threshold for the recall you need on validation data instead of argmax."
                   f"{tuning} If no threshold gives usable precision and recall, reweight the loss (class weights "
                   f"about 1/prevalence) or collect more '{c.class_name}' examples and retrain; gate on recall and "
                   "PR-AUC, not accuracy."))
    return findings
