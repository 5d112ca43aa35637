"""The verdict: the one answer every view shows first (pass / attention / fail / incomplete).

Decided from three things only, in this order:

1. **incomplete** — a core check for the task did not run, failed, or ran with parts missing
   (an attack that raised...): its figures cannot be trusted as a clean bill of health. Takes
   precedence even over a failed gate: a gate cannot vouch for what was not measured.
2. **fail** — with a gate policy, the policy failed (the policy is the arbiter of failure);
   without one, a high-severity finding about the model itself.
3. **attention** — findings about the model of high (under a passing gate) or medium severity.
4. **pass** — none of the above. Findings about optional defenses, the data or the evaluation
   are shown, but never turn a verdict by themselves.

A leaf over :mod:`auditkit.results` (no torch).
"""

from __future__ import annotations

from typing import Any

from auditkit.results import AuditResult, Finding, GateOutcome, Section, Verdict

# Checks whose absence makes an audit incomplete, per task.
CORE_CHECKS: dict[str, tuple[str, ...]] = {
    "image-classification": ("performance", "attributions", "robustness"),
    "text-classification": ("performance", "attributions", "robustness"),
    "tabular-classification": ("performance", "attributions", "robustness"),
    "gan": ("gan", "robustness"),
}
MAX_REASONS = 3


def core_checks(task: str) -> tuple[str, ...]:
    """Names of the checks an audit of ``task`` cannot be complete without."""
    return CORE_CHECKS.get(task, ())


def incomplete_reasons(sections: dict[str, Section], task: str) -> list[str]:
    """Why the core checks of ``task`` are incomplete (empty when they all ran in full)."""
    reasons = []
    for name in core_checks(task):
        section = sections.get(name)
        if section is None:
            reasons.append(f"{name} was not run (left out by --only/--skip)")
        elif section.status in ("skipped", "failed"):
            reasons.append(f"{name} {section.status}: {section.reason or 'no reason given'}")
        elif section.incomplete:
            reasons.append(f"{name} incomplete: {'; '.join(section.incomplete)}")
    return reasons


def gate_outcome(decision: Any) -> GateOutcome:
    """A stored :class:`GateOutcome` from the object :func:`auditkit.policy.gate` returns."""
    rules = list(getattr(decision, "rules", []) or [])
    failed = [r for r in rules if not r.passed]
    return GateOutcome(passed=bool(decision.passed), policy=getattr(decision, "policy", None) or None,
                       failed_rules=[r.name for r in failed], messages=[f"{r.name}: {r.message}" for r in failed])


def _finding_reason(f: Finding) -> str:
    return f"{f.severity}: {f.title}"


def decide(sections: dict[str, Section], findings: list[Finding], task: str,
           gate: GateOutcome | None = None) -> Verdict:
    """The verdict of an audit (rules in this module's docstring), with its deciding reasons."""
    model_findings = [f for f in findings if f.subject == "model"]
    high = [f for f in model_findings if f.severity == "high"]
    medium = [f for f in model_findings if f.severity == "medium"]
    missing = incomplete_reasons(sections, task)
    if missing:
        reasons = missing + ([f"gate failed: {', '.join(gate.failed_rules)}"] if gate and not gate.passed else [])
        return Verdict(status="incomplete", reasons=reasons[:MAX_REASONS], gate=gate)
    if gate is not None and not gate.passed:
        return Verdict(status="fail", reasons=gate.messages[:MAX_REASONS] or ["gate failed"], gate=gate)
    if gate is None and high:
        return Verdict(status="fail", reasons=[_finding_reason(f) for f in high][:MAX_REASONS], gate=gate)
    if high or medium:
        return Verdict(status="attention", reasons=[_finding_reason(f) for f in high + medium][:MAX_REASONS],
                       gate=gate)
    reasons = ["every core check ran in full", "no high or medium finding about the model"]
    if gate is not None:
        reasons.append("gate passed")
    return Verdict(status="pass", reasons=reasons, gate=gate)


def verdict_of(result: AuditResult, gate: GateOutcome | None = None) -> Verdict:
    """:func:`decide` for a whole result (its card's task), e.g. after a gate ran on it."""
    task = str(result.provenance.card.get("task", ""))
    return decide(result.sections, result.findings, task, gate)
