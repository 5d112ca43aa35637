"""The headline layer (DESIGN.md §5): what every view of an audit shows first, decided once.

:func:`summarize` turns an :class:`~auditkit.results.AuditResult` into an
:class:`AuditSummary`: the verdict, the findings in display order, the gradient-masking
statement, and one :class:`SectionSummary` per section (title, status, a one-sentence
takeaway and its :class:`Headline` figures). A headline is a figure with everything a view
needs to show it: a stable ``key`` (``"performance.accuracy"``, ``"robustness.linf"``...), its
``label``, ``value``, the formatted ``display`` string and ``unit``, the 95% interval
(``ci_low``/``ci_high`` and ``ci_display``), ``n`` and the JSON path of its ``evidence``.

Everything here is a pure function of the typed section payloads (:mod:`auditkit.sections`),
which own the derived facts (which ε is the headline, whether a method beats a random
ranking...). The HTML and Markdown reports, JUnit, the terminal summary, the dashboard and the
gate all read this layer and format nothing themselves beyond layout, so that every view of
one result says the same thing. To add a figure to every view, add it here.

A section whose data does not match its model (a result built or edited in memory) or that no
built-in check writes (a plugin) is summarised generically: its top-level
``{"value", "ci_low", "ci_high"}`` figures, with a note. No torch.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

from auditkit.results import SEVERITIES, AuditResult, Finding, Section, Status, Verdict
from auditkit.sections import (
    AttributionsData,
    BaselinesData,
    DefensesData,
    Estimate,
    ExplanationQualityData,
    GanData,
    PayloadError,
    PerformanceData,
    RobustnessData,
    norm_label,
)
from auditkit.sections.common import is_estimate
from auditkit.sections.defenses import OVERSTATEMENT_POINTS
from auditkit.sections.explanation_quality import BEATS_RANDOM_RULE, HIT_AT_1_MIN, PRECISION_AT_K_MIN

Kind = Literal["proportion", "score", "distance", "count", "number"]
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
# Reading order of the built-in sections; others follow in the order they ran.
ORDER = ("performance", "attributions", "explanation-quality", "gan", "robustness", "defenses", "baselines")
TITLES = {
    "performance": "Clean performance",
    "attributions": "Attributions",
    "explanation-quality": "Explanation quality",
    "robustness": "Adversarial robustness",
    "defenses": "Defenses",
    "baselines": "Baseline comparison",
    "gan": "GAN artifact",
}
# Sections whose headlines lead the audit (the top table of every view); the others' headlines
# open their own section.
LEADING = ("performance", "robustness", "gan")
MAX_GENERIC = 3


# --------------------------------------------------------------------------- formatting (the one place)


def format_value(value: float | None, kind: Kind) -> str:
    """A figure for people: proportions as percentages (one decimal), scores to 3 decimals,
    distances to 1, counts whole, other numbers to 4 significant digits; "—" when undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if kind == "proportion":
        return f"{100 * value:.1f}%"
    if kind == "score":
        return f"{value:.3f}"
    if kind == "distance":
        return f"{value:.1f}"
    if kind == "count":
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_interval(lo: float | None, hi: float | None, kind: Kind) -> str:
    """``"96.8–99.2%"`` for proportions, ``"0.300–0.419"`` for scores; "" without an interval."""
    if lo is None or hi is None:
        return ""
    if kind == "proportion":
        return f"{100 * lo:.1f}–{100 * hi:.1f}%"
    return f"{format_value(lo, kind)}–{format_value(hi, kind)}"


# --------------------------------------------------------------------------- types


class Headline(BaseModel):
    """One headline figure (see the module docstring). ``display`` is the value as every view
    prints it; ``unit`` what it counts in (``"%"`` for proportions, ``""`` for scores);
    ``higher_is_better`` None where neither is. ``primary`` headlines lead the audit."""

    model_config = ConfigDict(frozen=True)

    key: str
    label: str
    value: float | None
    display: str
    unit: str = ""
    kind: Kind = "number"
    ci_low: float | None = None
    ci_high: float | None = None
    ci_display: str = ""
    n: int | None = None
    evidence: str = ""
    higher_is_better: bool | None = True
    note: str = ""
    primary: bool = False

    @property
    def text(self) -> str:
        """``"98.4% (95% CI 96.8–99.2%, n = 450)"``: the figure with its interval and n."""
        extra = [f"95% CI {self.ci_display}"] if self.ci_display else []
        if self.n is not None:
            extra.append(f"n = {self.n}")
        return self.display + (f" ({', '.join(extra)})" if extra else "")


class MaskingSummary(BaseModel):
    """The gradient-masking checklist: ``outcome`` (suspected / failed / warned / clean), one
    ``statement`` that agrees with the checks, the tally by status and the checks themselves."""

    outcome: Literal["suspected", "failed", "warned", "clean"]
    statement: str
    tally: dict[str, int]
    checks: list[dict[str, str]]
    evidence: str = "sections.robustness.data.masking.checks"

    @property
    def suspected(self) -> bool:
        return self.outcome == "suspected"


class SectionSummary(BaseModel):
    """One section: its ``title``, ``status`` (``incomplete`` lists what it could not do), a
    one-sentence ``takeaway`` and its headlines. ``note``: why the section is summarised
    generically (its data does not match its model)."""

    name: str
    title: str
    status: Status
    reason: str | None = None
    incomplete: list[str] = []
    takeaway: str
    headlines: list[Headline] = []
    n_findings: int = 0
    evidence: str
    note: str | None = None

    @property
    def ran(self) -> bool:
        return self.status == "ok"


class AuditSummary(BaseModel):
    """The whole audit, summarised: verdict first, then findings and sections in display order."""

    model: str
    task: str
    verdict: Verdict
    findings: list[Finding]
    finding_counts: dict[str, int]
    sections: list[SectionSummary]
    masking: MaskingSummary | None = None

    def section(self, name: str) -> SectionSummary | None:
        return next((s for s in self.sections if s.name == name), None)

    def headlines(self, primary_only: bool = True) -> list[Headline]:
        """Headlines in section order (only the leading ones by default)."""
        return [h for s in self.sections for h in s.headlines if h.primary or not primary_only]

    def headline(self, key: str) -> Headline | None:
        return next((h for s in self.sections for h in s.headlines if h.key == key), None)

    def findings_by_severity(self) -> dict[str, list[Finding]]:
        """``{severity: [finding, ...]}`` for every severity in :data:`SEVERITIES` (empty kept)."""
        return {s: [f for f in self.findings if f.severity == s] for s in SEVERITIES}


# --------------------------------------------------------------------------- building headlines


def _headline(key: str, label: str, est: Estimate | float | int | None, kind: Kind, evidence: str, *,
              display: str | None = None, higher: bool | None = True, note: str = "", primary: bool = False,
              n: int | None = None) -> Headline | None:
    """A Headline from an estimate (value + interval + n) or a bare number; None when the
    figure is missing."""
    if est is None:
        return None
    if isinstance(est, Estimate):
        value, lo, hi, n = est.value, est.ci_low, est.ci_high, est.n if n is None else n
    else:
        value, lo, hi = float(est), None, None
    return Headline(key=key, label=label, value=value, display=display or format_value(value, kind),
                    unit="%" if kind == "proportion" else "", kind=kind, ci_low=lo, ci_high=hi,
                    ci_display=format_interval(lo, hi, kind), n=n, evidence=evidence, higher_is_better=higher,
                    note=note, primary=primary)


def _count(key: str, label: str, k: int, total: int, evidence: str, *, higher: bool | None = True,
           note: str = "", primary: bool = False, n: int | None = None) -> Headline:
    return Headline(key=key, label=label, value=float(k), display=f"{k} of {total}", unit="", kind="count",
                    n=n, evidence=evidence, higher_is_better=higher, note=note, primary=primary)


def _keep(items: list[Headline | None]) -> list[Headline]:
    return [h for h in items if h is not None]


# --------------------------------------------------------------------------- per section

SectionParts = tuple[list[Headline], str]  # (headlines, takeaway)


def _performance(d: PerformanceData) -> SectionParts:
    src = "sections.performance.data"
    pos = d.positive_class
    recall = d.positive_recall
    rec_idx = next((i for i, c in enumerate(d.per_class) if c.class_name == pos), None)
    heads = _keep([
        _headline("performance.accuracy", "Clean accuracy", d.accuracy, "proportion", f"{src}.accuracy",
                  primary=True),
        _headline("performance.pr_auc", f"PR-AUC ({pos})", d.pr_auc, "score", f"{src}.pr_auc", primary=True),
        _headline("performance.roc_auc", f"ROC-AUC ({pos})", d.roc_auc, "score", f"{src}.roc_auc", primary=True),
        _headline("performance.recall", f"Recall of {pos}", recall, "proportion",
                  f"{src}.per_class[{rec_idx}].recall_ci", primary=True) if pos else None,
        _headline("performance.ece", "Expected calibration error (ECE)", d.calibration.ece, "score",
                  f"{src}.calibration.ece", higher=False, n=len(d.labels), primary=True),
    ])
    h = {x.key: x for x in heads}
    parts = [f"clean accuracy {h['performance.accuracy'].display} (95% CI {h['performance.accuracy'].ci_display}) "
             f"on {d.accuracy.n} test samples"]
    if "performance.pr_auc" in h:
        prevalence = "" if d.prevalence is None else f" at {format_value(d.prevalence, 'proportion')} prevalence"
        parts.append(f"PR-AUC {h['performance.pr_auc'].display} for {pos}{prevalence}")
    if recall is not None and recall.value is not None:
        caught = round(recall.value * (recall.n or 0))
        parts.append(f"it catches {h['performance.recall'].display} of {pos} cases ({caught} of {recall.n})")
    parts.append(f"ECE {h['performance.ece'].display}")
    return heads, _sentence("; ".join(parts))


def _attributions(d: AttributionsData) -> SectionParts:
    ok, total = len(d.methods_ok), len(d.methods)
    head = _count("attributions.methods", "Attribution methods that ran", ok, total,
                  "sections.attributions.data.methods", n=d.n_samples)
    skipped = d.methods_skipped
    text = f"{ok} of {total} attribution methods ran on {d.n_samples} samples, explaining the {d.target}"
    if skipped:
        text += f" (not run: {', '.join(skipped)})"
    return [head], _sentence(text)


def _quality(d: ExplanationQualityData) -> SectionParts:
    src = "sections.explanation-quality.data"
    heads: list[Headline | None] = []
    parts = []
    comp = d.ig_completeness
    if comp is not None:
        heads.append(_headline("explanation-quality.ig_completeness_p95", "IG completeness error (p95)", comp.p95,
                               "number", f"{src}.ig_completeness.p95", higher=False, n=comp.n_samples,
                               note=f"tolerance {comp.tol:g}; {'met' if comp.met else 'not met'} at "
                                    f"{comp.n_steps} steps"))
        parts.append(f"integrated gradients {'add up' if comp.met else 'do not add up'} (p95 completeness error "
                     f"{format_value(comp.p95, 'number')} {'<' if comp.met else '≥'} {comp.tol:g})")
    rand = d.randomisation
    if rand is not None and rand.methods:
        k, total = len(rand.passed), len(rand.methods)
        heads.append(_count("explanation-quality.randomisation", "Methods passing the randomisation test", k, total,
                            f"{src}.randomisation.methods", n=rand.n_samples,
                            note=f"both final rank correlations below {rand.threshold:g} after every layer is "
                                 "re-initialised"))
        parts.append(f"{k} of {total} methods pass the randomisation test")
    if d.deletion_insertion:
        k, total = len(d.beating_random), len(d.deletion_insertion)
        heads.append(_count("explanation-quality.beats_random", "Methods that beat a random ranking", k, total,
                            f"{src}.deletion_insertion", note="a method " + BEATS_RANDOM_RULE))
        for m, c in d.deletion_insertion.items():
            for curve in ("deletion", "insertion"):
                heads.append(_headline(f"explanation-quality.deletion_insertion.{m}.{curve}",
                                       f"{m}: samples where {curve} beats a random ranking", c.wins(curve),
                                       "proportion", f"{src}.deletion_insertion.{m}.{curve}_win_rate"))
        parts.append(f"{k} of {total} beat a random ranking on most samples")
    if d.ground_truth:
        k, total = len(d.agreeing), len(d.ground_truth)
        first = next(iter(d.ground_truth.values()))
        rule = (f"precision@k ≥ {PRECISION_AT_K_MIN:g}" if hasattr(first, "precision_at_k")
                else f"hit@1 ≥ {HIT_AT_1_MIN:g}")
        heads.append(_count("explanation-quality.ground_truth", "Methods that agree with the known causes", k, total,
                            f"{src}.ground_truth", note=rule))
        parts.append(f"{k} of {total} agree with the known causes ({rule})")
    return _keep(heads), _sentence("; ".join(parts) or "no explanation-quality test applied")


def _robustness(d: RobustnessData) -> SectionParts:
    heads: list[Headline] = []
    for curve in d.curves():
        point, value = curve.headline, curve.headline_value
        if point is None or value is None:
            continue
        heads.append(Headline(
            key=f"robustness.{curve.key}", label=curve.headline_label or curve.title, value=value.value,
            display=format_value(value.value, "proportion"), unit="%", kind="proportion", ci_low=value.ci_low,
            ci_high=value.ci_high, ci_display=format_interval(value.ci_low, value.ci_high, "proportion"), n=value.n,
            evidence=point.source, higher_is_better=curve.higher_is_better,
            note=f"headline point: {curve.headline_rule}", primary=True))
    parts = [f"{h.label.lower()[:1]}{h.label[1:]} {h.display}" for h in heads]
    if d.masking is not None:
        t = d.masking.tally
        heads.append(_count("robustness.masking", "Gradient-masking checks failed", t["fail"], len(d.masking.checks),
                            "sections.robustness.data.masking.checks", higher=False, note=d.masking.statement))
        parts.append(d.masking.statement[:1].lower() + d.masking.statement[1:].rstrip("."))
    if not heads and isinstance(d.skipped, str):
        parts.append(f"not run: {d.skipped}")
    return heads, _sentence("; ".join(parts) or "no threat model applied")


def _defenses(d: DefensesData) -> SectionParts:
    heads: list[Headline] = []
    gains, overstated = [], []
    for name, h in d.headlines().items():
        entry = d.defenses[name]
        i = next((k for k, p in enumerate(entry.curve) if abs(p.x - h.x) <= 1e-9), None)
        if h.figure == "certified":
            label = f"{name}: certified accuracy (L2 radius {h.x:g})"
            k = next(k for k, c in enumerate(entry.certified) if abs(c.radius - h.x) <= 1e-9)
            evidence = f"sections.defenses.data.defenses.{name}.certified[{k}].certified_accuracy"
        elif h.figure == "evasion":
            label = f"{name}: evasion under adaptive attack (cost ≤ {h.x:g})"
            evidence = f"sections.defenses.data.defenses.{name}.curve[{i}].adaptive"
        else:
            label = f"{name}: adaptive robust accuracy ({norm_label(d.norm or 'linf')}, ε = {h.x:g})"
            evidence = f"sections.defenses.data.defenses.{name}.curve[{i}].adaptive"
        note = "; ".join(t for t in (
            "" if h.non_adaptive is None else f"a non-adaptive evaluation would report "
                                              f"{format_value(h.non_adaptive.value, 'proportion')}",
            "" if h.undefended is None else f"undefended {format_value(h.undefended.value, 'proportion')}") if t)
        heads.append(_keep([_headline(f"defenses.{name}", label, h.value, "proportion", evidence,
                                      higher=h.figure != "evasion", note=note)])[0])
        if entry.real_gain:
            gains.append(name)
        over = entry.max_overstatement
        if over is not None and over.points > OVERSTATEMENT_POINTS:
            overstated.append(name)
    ran = [n for n, e in d.defenses.items() if e.status == "ok"]
    text = f"{len(ran)} of {len(d.defenses)} defenses evaluated; " + (
        f"a real gain under adaptive attack from {', '.join(gains)}" if gains else "none gives a real gain under adaptive attack")
    if overstated:
        text += (f"; a non-adaptive evaluation would overstate {', '.join(overstated)} by more than "
                 f"{OVERSTATEMENT_POINTS:g} points")
    return heads, _sentence(text)


def _baselines(d: BaselinesData) -> SectionParts:
    metric = d.primary_metric
    name = "PR-AUC" if metric == "pr_auc" else "accuracy"
    kind: Kind = "score" if metric == "pr_auc" else "proportion"
    src = "sections.baselines.data"
    # The network's own figure is the performance section's (the same test samples).
    heads: list[Headline | None] = []
    best = d.best()
    if best is not None:
        bname, fig = best
        heads.append(_headline("baselines.best", f"Best baseline {name} ({bname})", fig.primary(metric), kind,
                               f"{src}.baselines.{bname}.quality.{metric}",
                               note=f"outcome against the network: {fig.winner(metric) or 'untested'}"))
    if "dummy-prior" in d.baselines:
        heads.append(_headline("baselines.dummy", f"Constant-prior {name}", d.baselines["dummy-prior"].primary(metric),
                               kind, f"{src}.baselines.dummy-prior.quality.{metric}"))
    return _keep(heads), d.verdict


def _gan(d: GanData) -> SectionParts:
    src = "sections.gan.data"
    q, c, mem = d.quality, d.coverage, d.memorisation
    heads: list[Headline | None] = []
    parts = []
    if q is not None:
        heads.append(_headline("gan.fid", "FID (generated vs test)", q.fid, "distance", f"{src}.quality.fid",
                               higher=False, n=q.n_samples, primary=True,
                               note=f"real-vs-real reference {format_value(q.fid_real_vs_real, 'distance')}"))
        heads.append(_headline("gan.fid_reference", "FID reference (train vs test)", q.fid_real_vs_real, "distance",
                               f"{src}.quality.fid_real_vs_real", higher=False, n=q.n_samples))
        heads.append(_headline("gan.fid_ratio", "FID / real-vs-real reference", q.fid_ratio, "number",
                               f"{src}.quality.fid_ratio", higher=False, primary=True))
        parts.append(f"FID {format_value(q.fid, 'distance')} against a real-vs-real reference of "
                     f"{format_value(q.fid_real_vs_real, 'distance')}")
    if c is not None:
        heads.append(_count("gan.classes_covered", "Classes covered (judge)", c.classes_covered, len(c.histogram),
                            f"{src}.coverage.classes_covered", n=c.n_samples, primary=True))
        heads.append(_headline("gan.recognisable", "Samples the judge recognises", c.confident, "proportion",
                               f"{src}.coverage.confident_fraction",
                               note=f"judge confidence ≥ {c.confidence_threshold:g}"))
        parts.append(f"{c.classes_covered} of {len(c.histogram)} classes covered")
    heads.append(_headline("gan.near_copies", "Near-copies of training images", mem.near_copies, "proportion",
                           f"{src}.memorisation.near_copy_fraction", higher=False, primary=True))
    parts.append(f"{format_value(mem.near_copies.value, 'proportion')} near-copies of training images")
    real = d.discriminator.realness
    heads.append(_headline("gan.discriminator_auc", "Discriminator AUC (real vs generated)", real.auc_real_vs_fake,
                           "score", f"{src}.discriminator.realness.auc_real_vs_fake", n=real.n_real + real.n_fake,
                           primary=True))
    return _keep(heads), _sentence("; ".join(parts))


BUILDERS: dict[str, Callable[[Any], SectionParts]] = {
    "performance": _performance,
    "attributions": _attributions,
    "explanation-quality": _quality,
    "robustness": _robustness,
    "defenses": _defenses,
    "baselines": _baselines,
    "gan": _gan,
}


def _generic(name: str, data: dict[str, Any]) -> SectionParts:
    """A section without a model (or whose data does not match it): its first top-level
    ``{"value", "ci_low", "ci_high"}`` figures."""
    heads = []
    for key, v in [(k, v) for k, v in data.items() if is_estimate(v)][:MAX_GENERIC]:
        value = v.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        kind: Kind = "proportion" if 0 <= value <= 1 else "number"
        est = Estimate(value=float(value), ci_low=_num(v.get("ci_low")), ci_high=_num(v.get("ci_high")),
                       n=v.get("n") if isinstance(v.get("n"), int) else None)
        heads.append(_keep([_headline(f"{name}.{key}", f"{name}: {key.replace('_', ' ')}", est, kind,
                                      f"sections.{name}.data.{key}", higher=None, primary=True)])[0])
    text = "; ".join(f"{h.label.split(': ', 1)[1]} {h.display}" for h in heads)
    return heads, _sentence(text or f"{len(data)} recorded figures")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def summarize_section(section: Section) -> SectionSummary:
    """One section's summary (see :class:`SectionSummary`)."""
    name = section.name
    base = dict(name=name, title=TITLES.get(name, name.replace("-", " ").capitalize()), status=section.status,
                reason=section.reason, incomplete=list(section.incomplete), n_findings=len(section.findings),
                evidence=f"sections.{name}")
    if section.status != "ok":
        return SectionSummary(**base, takeaway=_sentence(f"not run ({section.status}): "
                                                         f"{section.reason or 'no reason given'}"))
    note = None
    try:
        payload = section.payload()
    except PayloadError as exc:
        payload, note = None, f"its data does not match the {name} model ({exc}); shown as recorded"
    if payload is None:
        heads, takeaway = _generic(name, section.data)
    else:
        heads, takeaway = BUILDERS[name](payload)
    if name not in LEADING and payload is not None:
        heads = [h.model_copy(update={"primary": False}) for h in heads]
    if section.incomplete:
        takeaway += f" Incomplete: {'; '.join(section.incomplete)}."
    return SectionSummary(**base, takeaway=takeaway, headlines=heads, note=note)


def _masking(result: AuditResult) -> MaskingSummary | None:
    section = result.sections.get("robustness")
    try:
        rob = section.payload() if section is not None else None
    except PayloadError:
        return None
    if not isinstance(rob, RobustnessData) or rob.masking is None:
        return None
    m = rob.masking
    return MaskingSummary(outcome=m.outcome, statement=m.statement, tally=m.tally,
                          checks=[{"name": c.name, "status": c.status, "evidence": c.evidence} for c in m.checks])


def display_order(result: AuditResult) -> list[str]:
    """Section names in reading order (:data:`ORDER`, then others as they ran), the sections
    that ran first."""
    known = [n for n in ORDER if n in result.sections]
    names = known + [n for n in result.sections if n not in known]
    return [n for n in names if result.sections[n].status == "ok"] + \
        [n for n in names if result.sections[n].status != "ok"]


def summarize(result: AuditResult) -> AuditSummary:
    """The :class:`AuditSummary` of ``result`` (pure: reads the result, computes nothing new
    beyond intervals of stored counts)."""
    card = result.provenance.card or {}
    findings = sorted(result.findings, key=lambda f: (SEVERITY_RANK.get(f.severity, len(SEVERITIES)),
                                                       f.subject != "model"))
    return AuditSummary(
        model=str(card.get("name") or result.provenance.model_path), task=str(card.get("task", "")),
        verdict=result.verdict, findings=findings,
        finding_counts={s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES},
        sections=[summarize_section(result.sections[n]) for n in display_order(result)],
        masking=_masking(result))


__all__ = ["AuditSummary", "Headline", "MaskingSummary", "ORDER", "SectionSummary", "TITLES", "display_order",
           "format_interval", "format_value", "summarize", "summarize_section"]
