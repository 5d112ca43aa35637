"""The ``robustness`` check's payload (written by :mod:`auditkit.attacks.check`): per task,
norm-ball threat models with per-sample records and the gradient-masking checklist (images),
the constrained tabular attack, word substitutions (text) or attacks on a GAN's
discriminator.

Each threat model gives its curve in the one shape of :class:`~auditkit.sections.common.Curve`
(:meth:`RobustnessData.curves`), with THE headline point chosen here, once:

* norm balls (Linf, L2) and the discriminator: the middle positive ε of the grid;
* tabular evasion: the smallest cost budget at which at least half of the caught positives
  evade, else the largest budget (the point that says most to a reader);
* word substitutions: the largest k, on the label-preserving run when there is one (the
  realistic attack), else on the unconstrained run (an upper bound on vulnerability).

The robustness payload is still growing (attack engines add fields), so its parts are
:class:`~auditkit.sections.common.Open`: declared fields are validated, new ones are kept.
"""

from __future__ import annotations

from typing import Any, Literal

from auditkit.sections.common import (
    Curve,
    CurvePoint,
    Estimate,
    Open,
    Proportion,
    middle_positive,
    norm_label,
)

BASE = "sections.robustness.data"
TABULAR_HEADLINE_EVASION = 0.5
MaskingStatus = Literal["pass", "warn", "fail", "skipped"]


def _index_of(points: list[CurvePoint], x: float | None) -> int | None:
    if x is None:
        return None
    return next((i for i, p in enumerate(points) if p.x == x), None)


# --------------------------------------------------------------------------- norm balls


class EnsemblePoint(Open):
    """Worst case over the ensemble at ``eps``: ``n_robust`` of ``n`` samples robust."""

    eps: float
    robust_accuracy: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int
    n_robust: int | None = None

    def point(self, source: str) -> CurvePoint:
        return CurvePoint(x=self.eps, robust=Proportion(value=self.robust_accuracy, ci_low=self.ci_low,
                                                         ci_high=self.ci_high, n=self.n), source=source)


class AttackStats(Open):
    """One attack of the ensemble: its own and the cumulative robust accuracy per ε, cost."""

    kind: str | None = None
    family: str | None = None
    norm: str | None = None
    source: str | None = None
    settings: dict[str, Any] = {}
    robust_accuracy: list[float | None] = []
    cumulative_robust_accuracy: list[float | None] = []
    seconds: float | None = None
    n_attacked: int | None = None
    n_attacked_at_eps: list[int | None] = []
    n_near_at_eps: list[int | None] = []
    warm_start: bool | None = None
    near_run: dict[str, Any] | None = None
    forward_passes: int | None = None
    backward_passes: int | None = None
    queries: int | None = None
    n_smallest: int | None = None


class Records(Open):
    """Per-sample records, columnar (one entry per attacked sample in every list)."""

    index: list[int]
    label: list[int]
    clean_pred: list[int]
    clean_correct: list[bool]
    min_norm: list[float | None]
    broken_by: list[str | None]
    per_attack: dict[str, Any] = {}


class NormBallThreatModel(Open):
    """An ``EnsembleResult.to_dict()``: the ensemble's curve over the ε grid (``curve``), a
    dense curve for charts (``fine_curve``), per-attack statistics and per-sample records."""

    norm: str
    epsilons: list[float]
    budget: str | None = None
    bounds: list[float] | None = None
    seed: int | None = None
    attacks: list[str] = []
    tolerance: float | None = None
    per_attack: dict[str, AttackStats] = {}
    records: Records | None = None
    curve: list[EnsemblePoint]
    fine_curve: list[EnsemblePoint] = []
    gallery: list[dict[str, Any]] = []

    def to_curve(self, key: str, path: str) -> Curve:
        """This threat model as a :class:`Curve` (``path``: its JSON path)."""
        label = norm_label(self.norm)
        points = [p.point(f"{path}.curve[{i}]") for i, p in enumerate(self.curve)]
        fine = [p.point(f"{path}.fine_curve[{i}]") for i, p in enumerate(self.fine_curve)]
        return Curve(
            key=key, title=f"{label} robust accuracy", x_label=f"ε ({label} radius)", x_symbol="ε",
            y_label="robust accuracy", metric="Robust accuracy", context=label,
            caption="Accuracy under attack: the per-sample worst case over the attacks of the ensemble.",
            points=points, fine_points=fine, source=f"{path}.curve",
            fine_source=f"{path}.fine_curve" if fine else None,
            headline_index=_index_of(points, middle_positive(p.x for p in points)),
            headline_rule="the middle positive ε of the grid")


# --------------------------------------------------------------------------- masking


class MaskingCheck(Open):
    name: str
    status: MaskingStatus
    evidence: str = ""
    data: Any = None


class Masking(Open):
    """The gradient-masking checklist; ``suspected`` when a check that signals masking fails."""

    checks: list[MaskingCheck]
    suspected: bool = False
    n_fail: int | None = None
    n_warn: int | None = None

    def with_status(self, status: MaskingStatus) -> list[MaskingCheck]:
        return [c for c in self.checks if c.status == status]

    @property
    def tally(self) -> dict[str, int]:
        """Checks per status: ``{"pass", "warn", "fail", "skipped"}``."""
        return {s: len(self.with_status(s)) for s in ("pass", "warn", "fail", "skipped")}

    @property
    def outcome(self) -> Literal["suspected", "failed", "warned", "clean"]:
        """``suspected`` (masking signature), ``failed`` (a check failed), ``warned``, ``clean``."""
        if self.suspected:
            return "suspected"
        if self.with_status("fail"):
            return "failed"
        return "warned" if self.with_status("warn") else "clean"

    @property
    def statement(self) -> str:
        """One sentence that agrees with the checklist below it, whatever its statuses."""
        t = self.tally
        names = lambda status: ", ".join(c.name for c in self.with_status(status))  # noqa: E731
        skipped = f" ({t['skipped']} skipped)" if t["skipped"] else ""
        if self.suspected:
            return (f"Gradient masking is suspected: {t['fail']} check(s) failed ({names('fail')}); the robust "
                    "accuracy may overstate the model's robustness.")
        if t["fail"]:
            return (f"{t['fail']} gradient-masking check(s) failed ({names('fail')}): the robustness evaluation "
                    f"may be unreliable, though no masking signature was found{skipped}.")
        if t["warn"]:
            return f"No gradient-masking check failed; {t['warn']} warned ({names('warn')}){skipped}."
        return f"All {t['pass']} gradient-masking checks passed{skipped}."


# --------------------------------------------------------------------------- tabular


class EvasionPoint(Open):
    budget: float
    evasion: Proportion


class TabularAttack(Open):
    """The card's constrained threat model on caught positives: the share that evades within
    each cost budget, the cheapest change per sample, what features moved."""

    threat_model: str | None = None
    cost_definition: str | None = None
    discrete_cost: float | None = None
    changeable_features: list[str] = []
    fixed_features: list[str] = []
    positive_class: str | None = None
    n_samples: int | None = None
    n_positive: int | None = None
    n_attacked: int | None = None
    curve: list[EvasionPoint] = []
    median_cost: float | None = None
    cheapest: list[dict[str, Any]] = []
    feature_table: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    sample_index: list[int] = []

    def to_curve(self, path: str) -> Curve:
        positive = self.positive_class or "positive"
        points = [CurvePoint(x=p.budget, robust=p.evasion.complement(), evasion=p.evasion,
                             source=f"{path}.curve[{i}].evasion") for i, p in enumerate(self.curve)]
        head = next((i for i, p in enumerate(self.curve)
                     if p.evasion.value is not None and p.evasion.value >= TABULAR_HEADLINE_EVASION),
                    len(points) - 1 if points else None)
        return Curve(
            key="tabular", title=f"Caught {positive} cases still detected", x_label="cost budget (feature-range units)",
            x_symbol="cost ≤", y_label="still detected (1 − evasion rate)", metric=f"Evasion of caught {positive}",
            caption=(f"Share of the caught {positive} cases the model still flags after the cheapest change within "
                     "the budget, under the card's feature constraints (1 − the evasion rate)."),
            points=points, source=f"{path}.curve", headline_index=head,
            headline_rule=f"the smallest budget at which at least {TABULAR_HEADLINE_EVASION:.0%} of caught cases "
                          "evade, else the largest budget",
            headline_figure="evasion", higher_is_better=False)


# --------------------------------------------------------------------------- text


class SubstitutionPoint(Open):
    k: int
    robust_accuracy: Proportion


class SubstitutionRun(Open):
    curve: list[SubstitutionPoint] = []
    n_flipped: int | None = None
    examples: list[dict[str, Any]] = []
    true_label_changed: Proportion | None = None


class TextAttack(Open):
    """Greedy word substitutions among embedding neighbours, up to k words; ``label_preserving``
    keeps only substitutes that keep the true label (the realistic attack)."""

    clean_accuracy: Proportion | None = None
    unconstrained: SubstitutionRun
    label_preserving: SubstitutionRun | None = None
    candidates: dict[str, list[str]] = {}
    candidates_label_preserving: dict[str, list[str]] = {}
    note: str | None = None
    params: dict[str, Any] = {}

    def to_curves(self, path: str) -> list[Curve]:
        def curve(run: SubstitutionRun, key: str, sub: str, title: str, context: str, caption: str,
                  headline: bool) -> Curve:
            points = [CurvePoint(x=p.k, robust=p.robust_accuracy, source=f"{path}.{sub}.curve[{i}].robust_accuracy")
                      for i, p in enumerate(run.curve)]
            return Curve(key=key, title=title, x_label="word substitutions (k)", x_symbol="k",
                         y_label="robust accuracy", metric="Robust accuracy", context=context, caption=caption,
                         points=points, source=f"{path}.{sub}.curve",
                         headline_index=(len(points) - 1 if points else None) if headline else None,
                         headline_rule="the largest k" if headline else "")

        still = "Share of sentences still classified correctly after up to k word substitutions"
        out = []
        if self.label_preserving is not None:
            out.append(curve(self.label_preserving, "text", "label_preserving",
                             "Robust accuracy under label-preserving word substitutions",
                             "label-preserving word substitutions",
                             still + " that keep the true label (the realistic attack).", True))
        out.append(curve(self.unconstrained, "text-unconstrained" if out else "text", "unconstrained",
                         "Robust accuracy under any neighbour substitution",
                         "unconstrained word substitutions, an upper bound",
                         still + " among embedding neighbours, which may change the true label: an upper bound on "
                                 "vulnerability.", not out))
        return out


class EmbeddingPoint(Open):
    eps: float
    eps_relative: float | None = None
    robust_accuracy: Proportion


class EmbeddingDiagnostic(Open):
    curve: list[EmbeddingPoint] = []
    median_embedding_norm: float | None = None
    median_neighbour_distance: float | None = None
    note: str | None = None
    params: dict[str, Any] = {}

    def to_curve(self, path: str) -> Curve:
        points = [CurvePoint(x=p.eps, robust=p.robust_accuracy, source=f"{path}.curve[{i}].robust_accuracy")
                  for i, p in enumerate(self.curve)]
        return Curve(key="embedding", title="Embedding-space diagnostic", x_label="ε (L2 in embedding space)",
                     x_symbol="ε", y_label="robust accuracy", metric="Robust accuracy", context="embedding space",
                     caption="Accuracy under perturbations of the word embeddings: a smoothness diagnostic, not a "
                             "realisable attack.", points=points, source=f"{path}.curve")


# --------------------------------------------------------------------------- GAN discriminator


class DiscriminatorPoint(Open):
    eps: float
    real_judged_real: Proportion
    fake_judged_fake: Proportion


class DiscriminatorAttack(Open):
    """APGD on the discriminator's realness logit: real images pushed towards "fake" and
    generated ones towards "real" within ε (Linf)."""

    curve: list[DiscriminatorPoint] = []
    clean_mean_logit: dict[str, float] = {}
    threshold: float | None = None
    note: str | None = None
    params: dict[str, Any] = {}

    def to_curves(self, path: str) -> list[Curve]:
        out = []
        mid = middle_positive(p.eps for p in self.curve)
        for key, field, title, metric, y_label, caption in (
                ("disc-real", "real_judged_real", "Discriminator: real images still judged real",
                 "Real images still judged real", "share still judged real",
                 "Real images pushed towards 'fake' within ε."),
                ("disc-fake", "fake_judged_fake", "Discriminator: generated images still judged fake",
                 "Generated images still judged fake", "share still judged fake",
                 "Generated images pushed towards 'real' within ε.")):
            points = [CurvePoint(x=p.eps, robust=getattr(p, field), source=f"{path}.curve[{i}].{field}")
                      for i, p in enumerate(self.curve)]
            out.append(Curve(key=key, title=title, x_label="ε (L∞ radius)", x_symbol="ε",
                             y_label=y_label, metric=metric, context="L∞",
                             caption=caption, points=points, source=f"{path}.curve",
                             headline_index=_index_of(points, mid), headline_rule="the middle positive ε of the grid"))
        return out


# --------------------------------------------------------------------------- the section


class RobustnessData(Open):
    """What the robustness check wrote for the task: ``threat_models`` (+ ``masking``) for
    images, ``tabular``, ``text`` (+ ``embedding_diagnostic``) or ``discriminator``.
    ``skipped``: per norm (images) or for the whole task, why a part did not run."""

    budget: str | None = None
    sample_index: list[int] | None = None
    threat_models: dict[str, NormBallThreatModel] = {}
    skipped: dict[str, str] | str | None = None
    masking: Masking | None = None
    tabular: TabularAttack | None = None
    text: TextAttack | None = None
    embedding_diagnostic: EmbeddingDiagnostic | None = None
    discriminator: DiscriminatorAttack | None = None

    def curves(self) -> list[Curve]:
        """Every curve in reading order. Keys: ``linf``/``l2`` (images), ``text`` (and
        ``text-unconstrained`` beside a label-preserving run), ``embedding``, ``tabular``,
        ``disc-real``/``disc-fake``. Diagnostic curves have no headline."""
        out = [tm.to_curve(norm, f"{BASE}.threat_models.{norm}") for norm, tm in self.threat_models.items()]
        if self.text is not None:
            out += self.text.to_curves(f"{BASE}.text")
        if self.embedding_diagnostic is not None:
            out.append(self.embedding_diagnostic.to_curve(f"{BASE}.embedding_diagnostic"))
        if self.tabular is not None:
            out.append(self.tabular.to_curve(f"{BASE}.tabular"))
        if self.discriminator is not None:
            out += self.discriminator.to_curves(f"{BASE}.discriminator")
        return out

    def curve(self, key: str) -> Curve | None:
        return next((c for c in self.curves() if c.key == key), None)

    def threat_model_curve(self, norm: str) -> Curve | None:
        """The norm-ball curve of ``norm`` (None when that threat model did not run)."""
        tm = self.threat_models.get(norm)
        return None if tm is None else tm.to_curve(norm, f"{BASE}.threat_models.{norm}")

    def skip_reason(self, part: str) -> str | None:
        """Why ``part`` (a norm) did not run, when the check said so."""
        if isinstance(self.skipped, dict):
            return self.skipped.get(part)
        return self.skipped


__all__ = ["AttackStats", "DiscriminatorAttack", "EmbeddingDiagnostic", "Estimate", "Masking", "MaskingCheck",
           "NormBallThreatModel", "Records", "RobustnessData", "SubstitutionRun", "TabularAttack", "TextAttack"]
