"""Types every section payload shares (DESIGN.md §5): an estimate with its interval, the one
curve-point shape, a curve with its headline point, and the label tables.

* :class:`Estimate` / :class:`Proportion` — ``{"value", "ci_low", "ci_high", "n"}`` as the checks
  write them (95% intervals). :meth:`Proportion.wilson` makes a new one from counts (scipy's
  Wilson score interval).
* :class:`CurvePoint` — the one shape of a robustness point, whatever the threat model writes
  (``eps``, ``k``, ``budget`` + ``evasion``, ``real_judged_real``...): ``x`` in the curve's unit
  and ``robust``, the share of attacked samples the model still gets right, as a Proportion.
  Where the natural figure is the attacker's success (tabular evasion), ``evasion`` holds it
  too, explicitly (``robust`` is its complement).
* :class:`Curve` — the points of one threat model with their labels, the rule that picks the
  headline point (decided here, once), and :meth:`Curve.robust_at`.

A leaf: pydantic and the standard library (scipy only inside :meth:`Proportion.wilson`), so
``import auditkit.sections`` never loads torch.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict

NORM_LABELS: dict[str, str] = {"linf": "L∞", "l2": "L2"}
CONFIDENCE = 0.95
EPS_MATCH = 1e-9  # two grid values closer than this are the same point


def norm_label(norm: str) -> str:
    """``"linf"`` -> ``"L∞"``, ``"l2"`` -> ``"L2"`` (anything else unchanged)."""
    return NORM_LABELS.get(norm, norm)


def middle_positive(values: Iterable[float | None]) -> float | None:
    """The middle of the positive values of a grid (the upper middle for an even count), None
    when there is none: THE headline point of an eps grid, neither trivially high nor zero."""
    positive = sorted(float(v) for v in values if v is not None and v > 0)
    return positive[len(positive) // 2] if positive else None


class Strict(BaseModel):
    """A payload part whose layout is settled: an undeclared key is an error, so a check that
    writes a field no model declares fails loudly (add the field to the model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Open(BaseModel):
    """A payload part whose layout is still growing (the robustness check's): undeclared keys
    are kept as they are, declared ones are validated."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Estimate(Strict):
    """A figure with its 95% interval and sample count (a bootstrap AUC, a proportion...).
    ``value`` is None where it is undefined (no samples)."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None


class Proportion(Estimate):
    """A share of ``n`` samples, in [0, 1], with its Wilson 95% interval."""

    @classmethod
    def wilson(cls, successes: int, n: int) -> "Proportion":
        """``successes`` of ``n`` with the Wilson score interval (scipy); value None when n = 0."""
        if n <= 0:
            return cls(value=None, ci_low=0.0, ci_high=1.0, n=0)
        from auditkit.stats import wilson_interval

        lo, hi = wilson_interval(successes, n, CONFIDENCE)
        return cls(value=successes / n, ci_low=lo, ci_high=hi, n=int(n))

    @classmethod
    def of_fraction(cls, fraction: float | None, n: int | None) -> "Proportion":
        """A stored fraction of ``n`` samples (e.g. a win rate) with its Wilson interval."""
        if fraction is None or not n or not math.isfinite(fraction):
            return cls(value=fraction, n=n)
        return cls.wilson(round(fraction * n), n)

    def complement(self) -> "Proportion":
        """``1 - p`` with the interval flipped (e.g. robust accuracy from an evasion rate)."""
        flip = (lambda v: None if v is None else 1.0 - v)
        return Proportion(value=flip(self.value), ci_low=flip(self.ci_high), ci_high=flip(self.ci_low), n=self.n)


class CurvePoint(BaseModel):
    """One point of a robustness curve, whatever the threat model: at ``x`` (the curve's unit),
    ``robust`` of the attacked samples are still handled correctly. ``evasion`` is the
    attacker's success where that is the natural figure (tabular: ``robust`` = 1 - evasion).
    ``source`` is the raw point's JSON path in results.json."""

    model_config = ConfigDict(frozen=True)

    x: float
    robust: Proportion
    evasion: Proportion | None = None
    source: str = ""


class Curve(BaseModel):
    """A threat model's curve, normalised: what ``x`` and ``robust`` mean, the grid points, a
    denser curve for charts where there is one, and the headline point.

    ``headline_index`` indexes ``points``; None for a diagnostic curve (charts only, no
    headline). ``headline_figure`` says which figure the headline reports: ``robust`` or, for
    tabular evasion, ``evasion`` (its label says so). ``headline_rule`` states how the point
    was chosen.
    """

    key: str
    title: str
    x_label: str
    x_symbol: str  # how an x value is written in labels: "ε", "k", "cost ≤"
    y_label: str
    caption: str
    metric: str  # what the headline figure is called, e.g. "Robust accuracy"
    context: str = ""  # e.g. "L∞", "label-preserving word substitutions"
    points: list[CurvePoint]
    fine_points: list[CurvePoint] = []
    source: str
    fine_source: str | None = None
    headline_index: int | None = None
    headline_rule: str = ""
    headline_figure: Literal["robust", "evasion"] = "robust"
    higher_is_better: bool = True

    @property
    def headline(self) -> CurvePoint | None:
        """THE headline point (None for a diagnostic curve)."""
        return None if self.headline_index is None else self.points[self.headline_index]

    def x_text(self, x: float) -> str:
        """``"ε = 0.1"``, ``"k = 3"``, ``"cost ≤ 0.01"``."""
        sep = " " if self.x_symbol.endswith(("≤", "≥")) else " = "
        return f"{self.x_symbol}{sep}{x:g}"

    def label_at(self, x: float) -> str:
        """What the curve's figure at ``x`` is called, e.g. ``"Robust accuracy (L∞, ε = 0.15)"``."""
        inside = ", ".join(t for t in (self.context, self.x_text(x)) if t)
        return f"{self.metric} ({inside})"

    @property
    def headline_label(self) -> str | None:
        """The headline point's label (see :meth:`label_at`); None without a headline."""
        p = self.headline
        return None if p is None else self.label_at(p.x)

    @property
    def headline_value(self) -> Proportion | None:
        p = self.headline
        if p is None:
            return None
        return p.evasion if self.headline_figure == "evasion" and p.evasion is not None else p.robust

    def at(self, x: float) -> CurvePoint | None:
        """The grid point at ``x`` (within 1e-9), None when ``x`` is not on the grid."""
        return next((p for p in self.points if abs(p.x - x) <= EPS_MATCH), None)

    def lookup(self, x: float) -> tuple[CurvePoint, bool] | None:
        """``(point, exact)``: the grid point at ``x``, else the nearest evaluated point above
        ``x`` on the dense or the grid curve (robust accuracy never rises with the budget, so
        that point never overstates robustness at ``x``); None beyond the largest evaluated x."""
        exact = self.at(x)
        if exact is not None:
            return exact, True
        above = sorted((p for p in [*self.fine_points, *self.points] if p.x >= x), key=lambda p: p.x)
        return (above[0], False) if above else None

    def robust_at(self, x: float) -> Proportion | None:
        """Robust accuracy at ``x``: the grid point, else the conservative point above (see
        :meth:`lookup`); None when ``x`` is beyond what was evaluated."""
        found = self.lookup(x)
        return None if found is None else found[0].robust


def is_estimate(d: Any) -> bool:
    """A ``{"value", "ci_low", "ci_high"[, "n"]}`` dict (how plugins write headline figures)."""
    return isinstance(d, dict) and "value" in d and "ci_low" in d and "ci_high" in d


__all__ = ["CONFIDENCE", "Curve", "CurvePoint", "EPS_MATCH", "Estimate", "NORM_LABELS", "Open", "Proportion",
           "Strict", "is_estimate", "middle_positive", "norm_label"]
