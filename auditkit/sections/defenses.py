"""The ``defenses`` check's payload (written by :mod:`auditkit.defenses.check`): each defense
named with ``--defense``, with the *adaptive* figure (an attack that knows the defense) beside
the *non-adaptive* one a naive evaluation would report and the undefended model's.

Headline points are chosen here: for image classifiers the Linf ε of the section's
``headline_eps`` (the middle positive ε of its grid, the same rule as the robustness section),
for randomized smoothing its ``headline_radius``, for tabular adversarial training the
smallest cost budget at which at least half of the undefended model's caught cases evade (the
robustness section's tabular rule), else the largest.
"""

from __future__ import annotations

from typing import Any, Literal

from auditkit.sections.common import EPS_MATCH, Proportion, Strict, middle_positive

TABULAR_HEADLINE_EVASION = 0.5
OVERSTATEMENT_POINTS = 10.0  # non-adaptive minus adaptive, in points, that earns a finding
GAIN_POINTS = 5.0  # robust accuracy gain over the undefended model below which "no real gain"


class EpsProportion(Proportion):
    eps: float


class RadiusProportion(Proportion):
    radius: float


class DefensePoint(Strict):
    """One ε (images) or cost budget (tabular): the undefended model, the defense under a
    non-adaptive and under an adaptive attack. Images: robust accuracy; tabular: evasion rate
    of caught positives (lower is better)."""

    eps: float | None = None
    budget: float | None = None
    undefended: Proportion
    non_adaptive: Proportion
    adaptive: Proportion
    adaptive_bpda_only: Proportion | None = None

    @property
    def x(self) -> float:
        return float(self.eps if self.eps is not None else self.budget)  # type: ignore[arg-type]


class CertifiedPoint(Strict):
    """Certified accuracy at an L2 radius (randomized smoothing): ``n_certified`` of ``n``."""

    radius: float
    certified_accuracy: float
    ci: list[float]
    n: int
    n_certified: int

    @property
    def proportion(self) -> Proportion:
        return Proportion(value=self.certified_accuracy, ci_low=self.ci[0], ci_high=self.ci[1], n=self.n)


class Overstatement(Strict):
    """The largest gap (in points) by which a non-adaptive evaluation overstates robustness."""

    eps: float | None = None
    budget: float | None = None
    points: float


class DefenseHeadline(Strict):
    """A defense's headline: ``value`` at ``x`` (ε, radius or cost budget). ``figure`` says
    what it is: ``robust`` (adaptive robust accuracy), ``certified`` or ``evasion``."""

    figure: Literal["robust", "certified", "evasion"]
    x_symbol: str
    x: float
    value: Proportion
    non_adaptive: Proportion | None = None
    undefended: Proportion | None = None


class DefenseResult(Strict):
    """One defense. ``status`` ``skipped`` entries carry only ``kind`` and ``reason``."""

    kind: Literal["purification", "certification", "adversarial-training"]
    status: Literal["ok", "skipped"]
    reason: str | None = None
    seconds: float | None = None
    verdict: str | None = None
    summary: str | None = None
    real_gain: bool | None = None
    clean_accuracy: Proportion | None = None
    undefended_clean_accuracy: Proportion | None = None
    curve: list[DefensePoint] = []
    max_overstatement: Overstatement | None = None
    attacks: dict[str, str] = {}
    seconds_per_sample: float | None = None
    records: dict[str, Any] | None = None
    # purification
    defense: str | None = None
    randomised: bool | None = None
    norm: str | None = None
    budget: str | None = None
    n: int | None = None
    epsilons: list[float] | None = None
    purifier: str | None = None
    eot_iter: int | None = None
    # certification (randomized smoothing)
    sigma: float | None = None
    n0: int | None = None
    alpha: float | None = None
    max_certifiable_radius: float | None = None
    headline_radius: float | None = None
    abstain_rate: float | None = None
    certified: list[CertifiedPoint] = []
    undefended_empirical_l2: list[RadiusProportion] = []
    # adversarial training
    counterpart: str | None = None
    metric: str | None = None
    training_cost: dict[str, Any] | None = None
    training_cost_ratio: float | None = None
    undefended_seconds_per_sample: float | None = None
    n_caught: dict[str, int] | None = None
    ranking: dict[str, dict[str, float]] | None = None

    @property
    def tabular(self) -> bool:
        return any(p.budget is not None for p in self.curve)

    def point_at(self, x: float | None) -> DefensePoint | None:
        if x is None:
            return None
        return next((p for p in self.curve if abs(p.x - x) <= EPS_MATCH), None)

    def headline(self, eps: float | None) -> DefenseHeadline | None:
        """The headline figure (see the module docstring); ``eps``: the section's headline ε."""
        if self.status != "ok":
            return None
        if self.kind == "certification":
            r = self.headline_radius
            point = next((c for c in self.certified if r is not None and abs(c.radius - r) <= EPS_MATCH), None)
            empirical = next((e for e in self.undefended_empirical_l2 if r is not None
                              and abs(e.radius - r) <= EPS_MATCH), None)
            if point is None or r is None:
                return None
            plain = None if empirical is None else Proportion(**empirical.model_dump(exclude={"radius"}))
            return DefenseHeadline(figure="certified", x_symbol="L2 radius", x=r, value=point.proportion,
                                   undefended=plain)
        if self.tabular:
            head = next((p for p in self.curve if p.undefended.value is not None
                         and p.undefended.value >= TABULAR_HEADLINE_EVASION), self.curve[-1] if self.curve else None)
            if head is None:
                return None
            return DefenseHeadline(figure="evasion", x_symbol="cost ≤", x=head.x, value=head.adaptive,
                                   non_adaptive=head.non_adaptive, undefended=head.undefended)
        point = self.point_at(eps)
        if point is None:
            return None
        return DefenseHeadline(figure="robust", x_symbol="ε", x=point.x, value=point.adaptive,
                               non_adaptive=point.non_adaptive, undefended=point.undefended)


class Undefended(Strict):
    clean_accuracy: Proportion
    robust_accuracy_apgd_ce: list[EpsProportion] = []


class DefensesData(Strict):
    """``defenses`` by name; images add the shared grid (``epsilons``, ``l2_radii``), the
    undefended model's figures and ``headline_eps``. ``comparison``: one table row per defense
    at the headline point, as the check wrote it."""

    budget: str
    defenses: dict[str, DefenseResult]
    comparison: list[dict[str, Any]] = []
    norm: str | None = None
    epsilons: list[float] | None = None
    l2_radii: list[float] | None = None
    n_samples: int | None = None
    sample_index: list[int] | None = None
    undefended: Undefended | None = None
    headline_eps: float | None = None

    @property
    def headline_x(self) -> float | None:
        """The headline Linf ε of the image defenses (stored, else the middle positive ε)."""
        if self.headline_eps is not None:
            return self.headline_eps
        return middle_positive(self.epsilons or [])

    def headlines(self) -> dict[str, DefenseHeadline]:
        """Each evaluated defense's headline figure, in run order."""
        out = {}
        for name, entry in self.defenses.items():
            h = entry.headline(self.headline_x)
            if h is not None:
                out[name] = h
        return out
