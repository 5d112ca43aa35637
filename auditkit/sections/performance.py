"""The ``performance`` check's payload: clean accuracy, per-class figures, calibration and, for
tasks with a positive class, PR-AUC/ROC-AUC (written by :mod:`auditkit.performance`)."""

from __future__ import annotations

from pydantic import Field

from auditkit.sections.common import Estimate, Proportion, Strict


class ClassFigures(Strict):
    """One class: ``support`` test samples, precision/recall (None when undefined), F1."""

    class_name: str = Field(alias="class")
    support: int
    precision: float | None
    recall: float | None
    f1: float | None
    recall_ci: Proportion | None = None
    precision_ci: Proportion | None = None


class CalibrationBin(Strict):
    """Equal-width confidence bin ``[lo, hi)``: mean confidence and accuracy (None when empty)."""

    lo: float
    hi: float
    n: int
    confidence: float | None
    accuracy: float | None


class Calibration(Strict):
    """Expected calibration error of the top-class confidence and its reliability bins."""

    ece: float
    n_bins: int
    bins: list[CalibrationBin]


class OperatingPoint(Strict):
    """The positive class flagged at the highest score ``threshold`` (softmax probability of the
    positive class) whose recall on the test split reaches ``target_recall``: what choosing a
    threshold instead of argmax would give (read it as an indication: a threshold for use is
    chosen on validation data, not on the test split)."""

    target_recall: float
    threshold: float
    recall: float
    precision: float
    flagged: int


class PerformanceData(Strict):
    """Clean performance on the whole test split. ``predictions``/``labels`` are per test
    sample (``[N]`` class indices), so that a gate can pair two results sample by sample;
    ``confidences`` the top-class probability per sample (``[N]``, absent in older results)."""

    accuracy: Proportion
    per_class: list[ClassFigures]
    confusion_matrix: list[list[int]]
    class_names: list[str]
    calibration: Calibration
    predictions: list[int]
    labels: list[int]
    confidences: list[float] | None = None
    subsets: dict[str, Proportion] = {}
    positive_class: str | None = None
    prevalence: float | None = None
    pr_auc: Estimate | None = None
    roc_auc: Estimate | None = None
    operating_points: list[OperatingPoint] | None = None

    def class_figures(self, name: str | None) -> ClassFigures | None:
        """The per-class figures of class ``name`` (None when absent)."""
        return next((c for c in self.per_class if c.class_name == name), None) if name is not None else None

    @property
    def positive_recall(self) -> Proportion | None:
        """Recall of the positive class with its interval (tasks with a positive class)."""
        c = self.class_figures(self.positive_class)
        return None if c is None else c.recall_ci
