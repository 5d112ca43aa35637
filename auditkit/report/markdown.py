"""The short Markdown summary (a pull-request comment or ``$GITHUB_STEP_SUMMARY``), and the
few helpers the HTML and JUnit reports share with it (gate rules, value formatting for
generic tables, the model's title).

Every headline, label, takeaway and the masking statement come from
:func:`auditkit.summary.summarize`; this module only lays them out. Nothing is recomputed.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Iterable

from auditkit.errors import one_line
from auditkit.results import SEVERITIES, AuditResult
from auditkit.sections.common import is_estimate as is_ci_dict
from auditkit.summary import AuditSummary, summarize

MAX_LINES = 60
MAX_HEADLINES = 8
_MARK = {"high": "🔴", "medium": "🟠", "low": "🔵"}
_VERDICT = {"pass": "✅ PASS", "attention": "⚠️ ATTENTION", "fail": "❌ FAIL", "incomplete": "⏸️ INCOMPLETE"}


@dataclass
class Rule:
    """One gate rule, whatever object or dict the gate gave."""

    name: str
    passed: bool
    message: str = ""
    skipped: bool = False


# --------------------------------------------------------------------------- formatting


def fmt(v: Any, kind: str = "num") -> str:
    """A raw value for the generic tables of the HTML report: proportions (``kind="pct"``) as
    percentages, floats to 4 significant digits. Headline figures are formatted by
    :mod:`auditkit.summary`, not here."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if kind == "pct":
            return f"{100 * v:.1f}%"
        return f"{v:.4g}"
    return str(v)


X_KEYS = ("eps", "epsilon", "k", "budget", "fraction", "n_steps", "steps", "step", "threshold", "x")


def curve_axes(v: Any) -> tuple[str, list[str], bool] | None:
    """``(x key, series keys, band)`` when ``v`` is a curve of a section the report draws
    generically: a list of points (dicts) sharing a numeric x key (``eps``, ``k``,
    ``budget``...) and numeric or CI-figure series. ``band``: the points carry
    ``ci_low``/``ci_high`` for the first series. None otherwise."""
    if not isinstance(v, list) or len(v) < 2 or not all(isinstance(p, dict) for p in v):
        return None
    x = next((k for k in X_KEYS if all(isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool)
                                        for p in v)), None)
    if x is None:
        return None
    skip = {x, "n", "ci_low", "ci_high", "eps_relative"}
    series = [k for k in v[0] if k not in skip and not k.startswith("n_")
              and all(is_ci_dict(p.get(k)) or (isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool))
                      for p in v)]
    if not series:
        return None
    band = all(isinstance(p.get("ci_low"), (int, float)) and isinstance(p.get("ci_high"), (int, float)) for p in v)
    return x, series[:6], band


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def gate_rules(decision: Any) -> list[Rule]:
    """The rules of a gate decision: any object (or dict) with ``rules``, each with ``name``,
    ``passed`` and ``message`` (attributes or keys); ``skipped`` is honoured when present."""
    if decision is None:
        return []
    rules = _get(decision, "rules")
    if rules is None:
        raise ValueError("the gate decision has no 'rules'; pass the object auditkit.gate returns")
    out = []
    for r in rules:
        name = _get(r, "name")
        if name is None:
            raise ValueError(f"a gate rule has no 'name': {r!r}")
        out.append(Rule(str(name), bool(_get(r, "passed", False)), str(_get(r, "message", "") or ""),
                        bool(_get(r, "skipped", False))))
    return out


def gate_passed(decision: Any) -> bool:
    passed = _get(decision, "passed")
    if passed is None:
        return all(r.passed or r.skipped for r in gate_rules(decision))
    return bool(passed)


def model_title(result: AuditResult) -> str:
    card = result.provenance.card or {}
    return str(card.get("name") or result.provenance.model_path)


# --------------------------------------------------------------------------- Markdown


def _cell(text: object) -> str:
    """Plain text for Markdown, one line: no raw HTML (``<`` ``>`` ``&`` as entities), and the
    characters that would start markup or end a table cell backslash-escaped."""
    escaped = html.escape(one_line(text), quote=False)
    return re.sub(r"([\\`*_\[\]|#~!])", r"\\\1", escaped)


def _code(text: object) -> str:
    """``text`` as an inline code span whose fence is longer than any backtick run inside it."""
    s = one_line(text).replace("|", "¦")  # a pipe would end a table cell even inside code
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _short(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def _capped(lines: list[str], items: Iterable[str], cap: int, more: str) -> None:
    items = list(items)
    lines.extend(items[:cap])
    if len(items) > cap:
        lines.append(more.format(n=len(items) - cap))


def render_markdown(result: AuditResult, gate_decision: Any = None, summary: AuditSummary | None = None) -> str:
    """A summary under 60 lines: the verdict, the headline figures with their CIs, findings by
    severity, the masking statement, the gate outcome (when a decision is given) and the
    checks that did not run. ``summary``: :func:`~auditkit.summary.summarize` of ``result``
    when the caller has it already."""
    s = summary or summarize(result)
    p = result.provenance
    lines = [
        f"## auditkit: {_cell(s.model)} ({_cell(s.task or 'unknown task')})",
        "",
        f"{_code(p.model_path)} (sha256 {_code(p.model_sha256[:12])}), data {_code(p.data_spec)}, "
        f"budget {_cell(p.config.get('budget', '?'))}, {_cell(p.config.get('samples', '?'))} samples, seed {p.seed}, "
        f"auditkit {_cell(p.auditkit)}.",
        "",
        f"**Verdict: {_VERDICT.get(s.verdict.status, s.verdict.status)}**"
        + (" — " + "; ".join(_cell(_short(r, 110)) for r in s.verdict.reasons) if s.verdict.reasons else ""),
    ]
    if gate_decision is not None:
        rules = gate_rules(gate_decision)
        ok = gate_passed(gate_decision)
        failed = [r for r in rules if not r.passed and not r.skipped]
        lines += ["", f"**Gate: {'✅ passed' if ok else '❌ failed'}** "
                      f"({sum(r.passed for r in rules)}/{len(rules)} rules passed)"]
        shown = failed or rules
        if shown:
            lines += ["", "| rule | result | detail |", "|---|---|---|"]
            _capped(lines, (f"| {_cell(r.name)} | {'skipped' if r.skipped else 'pass' if r.passed else '**FAIL**'} | "
                            f"{_cell(_short(r.message, 120))} |" for r in shown), 6, "| … | {n} more | |")
    heads = s.headlines()
    if heads:
        lines += ["", "| metric | value | 95% CI | n |", "|---|---|---|---|"]
        _capped(lines, (f"| {_cell(h.label)} | {_cell(h.display)} | {_cell(h.ci_display or '—')} | "
                        f"{'—' if h.n is None else h.n} |" for h in heads),
                MAX_HEADLINES, "| … | {n} more in report.html | | |")
    groups = s.findings_by_severity()
    counts = ", ".join(f"{s.finding_counts[sev]} {sev}" for sev in SEVERITIES)
    lines += ["", f"### Findings ({counts})" if s.findings else "### Findings: none"]
    if s.findings:
        lines.append("")
        _capped(lines, (f"- {_MARK.get(f.severity, '')} **{f.severity}** {_cell(f.title)} — "
                        f"{_cell(_short(f.evidence, 140))} _({_cell(f.section)}"
                        f"{'' if f.subject == 'model' else ', about the ' + f.subject})_"
                        + (f"\n  - what to do: {_cell(_short(f.action, 160))}" if f.action else "")
                        for sev in SEVERITIES for f in groups[sev]), 10, "- … and {n} more (see report.html)")
    if s.masking is not None:
        t = s.masking.tally
        lines += ["", f"### Gradient masking: {t['pass']} pass, {t['warn']} warn, {t['fail']} fail",
                  "", _cell(s.masking.statement)]
        bad = [c for c in s.masking.checks if c["status"] in ("fail", "warn")]
        if bad:
            lines.append("")
            _capped(lines, (f"- {'❌' if c['status'] == 'fail' else '⚠️'} {_cell(c['name'])}: "
                            f"{_cell(_short(c['evidence'], 120))}" for c in bad), 6, "- … and {n} more")
    ran = [sec.name for sec in s.sections if sec.ran]
    not_run = [sec for sec in s.sections if not sec.ran]
    lines += ["", f"Checks run: {', '.join(_cell(n) for n in ran) or 'none'}."]
    if not_run:
        lines.append("Not run: " + "; ".join(f"{_cell(sec.name)} ({sec.status}: "
                                              f"{_cell(_short(sec.reason or 'no reason given', 70))})"
                                              for sec in not_run[:6]) + ("; …" if len(not_run) > 6 else "") + ".")
    if len(lines) > MAX_LINES:  # defensive: the caps above keep it shorter
        lines = lines[: MAX_LINES - 1] + ["… (truncated; see report.html)"]
    return "\n".join(lines) + "\n"


__all__ = ["Rule", "curve_axes", "fmt", "gate_passed", "gate_rules", "is_ci_dict", "model_title", "render_markdown"]
