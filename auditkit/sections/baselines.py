"""The ``baselines`` check's payload (written by :mod:`auditkit.baselines.check`): each
scikit-learn baseline and the network on the same test samples, with paired tests on the
primary metric (PR-AUC with a positive class, else accuracy), robustness under the same threat
model, importance agreement and cost; ``verdict`` is the check's one-sentence conclusion."""

from __future__ import annotations

from typing import Any, Literal

from auditkit.sections.common import Estimate, Proportion, Strict
from auditkit.sections.performance import Calibration

Winner = Literal["network", "baseline", "tie"]
DUMMY = "dummy-prior"


class PairedTest(Strict):
    """Exact McNemar test on per-sample correctness against the network."""

    test: str
    network_only_correct: int
    baseline_only_correct: int
    p_value: float
    winner: Winner


class Difference(Estimate):
    """Baseline minus network on a metric, with a bootstrap interval and the winner."""

    winner: Winner


class Quality(Strict):
    accuracy: Proportion
    positive_class: str | None = None
    prevalence: float | None = None
    pr_auc: Estimate | None = None
    roc_auc: Estimate | None = None
    vs_network: PairedTest | None = None
    pr_auc_vs_network: Difference | None = None


class Cost(Strict):
    """Learned parameters and size; run-dependent figures sit under ``timings``."""

    parameters: int
    size_bytes: int | None = None
    timings: dict[str, Any] = {}


class ModelFigures(Strict):
    """One model's figures (a baseline's or the network's)."""

    quality: Quality
    calibration: Calibration | None = None
    robustness: dict[str, Any] = {}
    interpretability: dict[str, Any] = {}
    cost: Cost | None = None

    def primary(self, metric: str) -> Estimate | None:
        """The figure of the primary ``metric`` (``"pr_auc"`` or ``"accuracy"``)."""
        return getattr(self.quality, metric, None)

    def winner(self, metric: str) -> Winner | None:
        """Who wins on the primary metric against the network (None for the network itself)."""
        if metric == "pr_auc" and self.quality.pr_auc_vs_network is not None:
            return self.quality.pr_auc_vs_network.winner
        return None if self.quality.vs_network is None else self.quality.vs_network.winner


class BaselinesData(Strict):
    task: str
    dataset: str
    primary_metric: Literal["pr_auc", "accuracy"]
    n_test: int
    n_train: int
    baselines: dict[str, ModelFigures]
    network: ModelFigures
    robustness_setup: dict[str, Any] = {}
    interpretability_setup: dict[str, Any] = {}
    verdict: str

    @property
    def contenders(self) -> dict[str, ModelFigures]:
        """The baselines other than the constant (dummy) predictor."""
        return {n: b for n, b in self.baselines.items() if n != DUMMY}

    def best(self) -> tuple[str, ModelFigures] | None:
        """The contender with the highest primary metric (None when there is none)."""
        ranked = [(n, b) for n, b in self.contenders.items()
                  if (b.primary(self.primary_metric) or Estimate(value=None)).value is not None]
        if not ranked:
            return None
        return max(ranked, key=lambda nb: nb[1].primary(self.primary_metric).value)  # type: ignore[union-attr]

    @property
    def outcome(self) -> Literal["beaten", "matched", "beats all", "none"]:
        """``beaten`` when a baseline wins significantly, ``matched`` when one ties, ``beats
        all`` when the network wins against every contender, ``none`` without contenders."""
        winners = [b.winner(self.primary_metric) for b in self.contenders.values()]
        if not winners:
            return "none"
        if "baseline" in winners:
            return "beaten"
        return "matched" if "tie" in winners else "beats all"
