"""The short Markdown summary (a pull-request comment or ``$GITHUB_STEP_SUMMARY``), and the
summary facts the HTML and JUnit reports share with it: headline metrics, findings by
severity, the gradient-masking checklist and the gate's rules.

Everything is read from the :class:`~auditkit.results.AuditResult`; nothing is recomputed.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Iterable

from auditkit.errors import one_line
from auditkit.results import AuditResult, Finding

SEVERITIES = ("high", "medium", "low")
MAX_LINES = 60
_MARK = {"high": "🔴", "medium": "🟠", "low": "🔵"}
_NORM = {"linf": "L∞", "l2": "L2"}


@dataclass
class Metric:
    """A headline figure: ``value`` with its 95% interval and sample count where it has them.

    ``kind`` says how to print it: ``"pct"`` (a proportion) or ``"num"``. ``source`` is its
    JSON path in results.json.
    """

    label: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    kind: str = "pct"
    source: str = ""
    note: str = ""


@dataclass
class Rule:
    """One gate rule, whatever object or dict the gate gave."""

    name: str
    passed: bool
    message: str = ""
    skipped: bool = False


# --------------------------------------------------------------------------- formatting


def fmt(v: Any, kind: str = "num") -> str:
    """A value for people: proportions as percentages, floats to 4 significant digits."""
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


def fmt_ci(m: Metric) -> str:
    if m.ci_low is None or m.ci_high is None:
        return "—"
    if m.kind == "pct":
        return f"{100 * m.ci_low:.1f}–{100 * m.ci_high:.1f}%"
    return f"{m.ci_low:.4g}–{m.ci_high:.4g}"


def _ci_metric(label: str, d: Any, source: str, kind: str = "pct", note: str = "") -> Metric | None:
    """A Metric from a ``{"value", "ci_low", "ci_high", "n"}`` dict (None if it is not one)."""
    if not isinstance(d, dict) or not isinstance(d.get("value"), (int, float)):
        return None
    return Metric(label, float(d["value"]), _float(d.get("ci_low")), _float(d.get("ci_high")),
                  d.get("n") if isinstance(d.get("n"), int) else None, kind, source, note)


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def is_ci_dict(d: Any) -> bool:
    """A ``{"value", "ci_low", "ci_high"[, "n"]}`` headline figure."""
    return isinstance(d, dict) and "value" in d and "ci_low" in d and "ci_high" in d


# --------------------------------------------------------------------------- shared facts


X_KEYS = ("eps", "epsilon", "k", "budget", "fraction", "n_steps", "steps", "step", "threshold", "x")


def curve_axes(v: Any) -> tuple[str, list[str], bool] | None:
    """``(x key, series keys, band)`` when ``v`` is a curve: a list of points (dicts) sharing a
    numeric x key (``eps``, ``k``, ``budget``...) and numeric or CI-figure series. ``band``: the
    points carry ``ci_low``/``ci_high`` for the first series. None otherwise."""
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


def headline_eps(tm: dict[str, Any], section_data: dict[str, Any], norm: str) -> float | None:
    """The ε of a threat model's headline robust accuracy.

    The robustness section may name it (``headline_eps: {norm: eps}``); otherwise the middle
    of the grid's positive radii, so that the headline is neither trivially high nor zero."""
    named = section_data.get("headline_eps")
    if isinstance(named, dict) and isinstance(named.get(norm), (int, float)):
        return float(named[norm])
    grid = [p.get("eps") for p in tm.get("curve") or [] if isinstance(p, dict)]
    positive = sorted(e for e in grid if isinstance(e, (int, float)) and e > 0)
    return positive[len(positive) // 2] if positive else None


def _performance_metrics(d: dict[str, Any]) -> list[Metric]:
    out, src = [], "sections.performance.data"
    for key, label, kind in (("accuracy", "Clean accuracy", "pct"), ("pr_auc", "PR-AUC", "num"),
                             ("roc_auc", "ROC-AUC", "num")):
        m = _ci_metric(label, d.get(key), f"{src}.{key}", kind)
        if m:
            out.append(m)
    ece = (d.get("calibration") or {}).get("ece")
    if isinstance(ece, (int, float)):
        out.append(Metric("ECE", float(ece), kind="num", source=f"{src}.calibration.ece",
                          note="expected calibration error"))
    return out


def _curves(v: Any, path: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every curve (see :func:`curve_axes`) inside ``v``, depth first, with its JSON path."""
    if curve_axes(v) is not None:
        return [(path, v)]
    if isinstance(v, dict):
        return [c for k, x in v.items() for c in _curves(x, f"{path}.{k}")]
    return []


def _part_metric(part: str, v: Any, src: str) -> Metric | None:
    """The last point of a non-image threat model's curve (tabular evasion, word substitutions,
    the discriminator under attack); the label-preserving curve where there is one."""
    curves = _curves(v, f"{src}.{part}")
    curves = [c for c in curves if "label_preserving" in c[0]] or curves
    if not curves:
        return None
    path, points = curves[0]
    x, series, band = curve_axes(points)  # type: ignore[misc]
    last, key = points[-1], series[0]
    value = last[key]
    if is_ci_dict(value):
        lo, hi, n, value = value.get("ci_low"), value.get("ci_high"), value.get("n"), value.get("value")
    else:
        lo, hi, n = (last.get("ci_low"), last.get("ci_high"), last.get("n")) if band else (None, None, last.get("n"))
    kind = "pct" if isinstance(value, (int, float)) and 0 <= value <= 1 else "num"
    return Metric(f"{key.replace('_', ' ').capitalize()} ({part.replace('_', ' ')}, {x}={last[x]:g})", _float(value),
                  _float(lo), _float(hi), n if isinstance(n, int) else None, kind, f"{path}[{len(points) - 1}]")


def _robustness_metrics(d: dict[str, Any]) -> list[Metric]:
    out = []
    for part in ("tabular", "text", "discriminator"):
        m = _part_metric(part, d.get(part), "sections.robustness.data") if part in d else None
        if m is not None:
            out.append(m)
    for norm, tm in (d.get("threat_models") or {}).items():
        if not isinstance(tm, dict):
            continue
        eps = headline_eps(tm, d, norm)
        for i, p in enumerate(tm.get("curve") or []):
            if isinstance(p, dict) and eps is not None and p.get("eps") == eps:
                out.append(Metric(f"Robust accuracy {_NORM.get(norm, norm)} ε={eps:g}", _float(p.get("robust_accuracy")),
                                  _float(p.get("ci_low")), _float(p.get("ci_high")), p.get("n"), "pct",
                                  f"sections.robustness.data.threat_models.{norm}.curve[{i}]"))
    return out


def _gan_metrics(d: dict[str, Any]) -> list[Metric]:
    out = []
    q, c, mem = d.get("quality") or {}, d.get("coverage") or {}, d.get("memorisation") or {}
    if isinstance(q.get("fid"), (int, float)):
        ref = q.get("fid_real_vs_real")
        out.append(Metric("FID", float(q["fid"]), kind="num", n=q.get("n_samples"), source="sections.gan.data.quality.fid",
                          note=f"real-vs-real reference {ref:.4g}" if isinstance(ref, (int, float)) else ""))
    if isinstance(c.get("classes_covered"), int):
        out.append(Metric("Classes covered", float(c["classes_covered"]), kind="num", n=c.get("n_samples"),
                          source="sections.gan.data.coverage.classes_covered", note=f"of {len(c.get('histogram') or [])}"))
    if isinstance(mem.get("near_copy_fraction"), (int, float)):
        out.append(Metric("Near-copies of training images", float(mem["near_copy_fraction"]), n=mem.get("n_samples"),
                          source="sections.gan.data.memorisation.near_copy_fraction"))
    return out


def _generic_metrics(name: str, d: dict[str, Any]) -> list[Metric]:
    """A section the report does not know: its first few top-level CI figures."""
    out = []
    for key, v in [(k, v) for k, v in d.items() if is_ci_dict(v)][:3]:
        kind = "pct" if isinstance(v["value"], (int, float)) and 0 <= v["value"] <= 1 else "num"
        m = _ci_metric(f"{name}: {key.replace('_', ' ')}", v, f"sections.{name}.data.{key}", kind)
        if m:
            out.append(m)
    return out


HEADLINES = {"performance": _performance_metrics, "robustness": _robustness_metrics, "gan": _gan_metrics}


def headline_metrics(result: AuditResult) -> list[Metric]:
    """The few figures a reader needs first, each with its CI and n where the results have them.

    Data of an unexpected layout gives no headline rather than an error (the HTML report shows
    that section's data as recorded)."""
    out: list[Metric] = []
    for name, sec in result.sections.items():
        if sec.status != "ok":
            continue
        try:
            out += HEADLINES[name](sec.data) if name in HEADLINES else _generic_metrics(name, sec.data)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            continue
    order = {n: i for i, n in enumerate(("performance", "robustness", "gan"))}
    return sorted(out, key=lambda m: order.get(m.source.split(".")[1], len(order)))


def findings_by_severity(result: AuditResult) -> dict[str, list[Finding]]:
    groups: dict[str, list[Finding]] = {s: [] for s in SEVERITIES}
    for f in result.findings:
        groups.setdefault(f.severity, []).append(f)
    return groups


def masking_checks(result: AuditResult) -> list[dict[str, Any]] | None:
    """The robustness section's gradient-masking checklist (None where it did not run)."""
    rob = result.sections.get("robustness")
    if rob is None or rob.status != "ok":
        return None
    masking = rob.data.get("masking")
    if not isinstance(masking, dict):
        return None
    return [c for c in masking.get("checks") or [] if isinstance(c, dict)]


def masking_suspected(result: AuditResult) -> bool | None:
    rob = result.sections.get("robustness")
    if rob is None or rob.status != "ok" or not isinstance(rob.data.get("masking"), dict):
        return None
    return bool(rob.data["masking"].get("suspected"))


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


def render_markdown(result: AuditResult, gate_decision: Any = None) -> str:
    """A summary under 60 lines: headline metrics with CIs, findings by severity, the masking
    checklist, the gate outcome (when a decision is given) and the checks that did not run."""
    p = result.provenance
    card = p.card or {}
    lines = [
        f"## auditkit: {_cell(model_title(result))} ({card.get('task', 'unknown task')})",
        "",
        f"{_code(p.model_path)} (sha256 {_code(p.model_sha256[:12])}), data {_code(p.data_spec)}, "
        f"budget {p.config.get('budget', '?')}, {p.config.get('samples', '?')} samples, seed {p.seed}, "
        f"auditkit {p.auditkit}.",
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
    metrics = headline_metrics(result)
    if metrics:
        lines += ["", "| metric | value | 95% CI | n |", "|---|---|---|---|"]
        _capped(lines, (f"| {_cell(m.label)} | {fmt(m.value, m.kind)} | {fmt_ci(m)} | {fmt(m.n)} |" for m in metrics),
                8, "| … | {n} more in report.html | | |")
    groups = findings_by_severity(result)
    counts = ", ".join(f"{len(groups[s])} {s}" for s in SEVERITIES)
    lines += ["", f"### Findings ({counts})" if result.findings else "### Findings: none"]
    if result.findings:
        lines.append("")
        _capped(lines, (f"- {_MARK.get(f.severity, '')} **{f.severity}** {_cell(f.title)} — "
                        f"{_cell(_short(f.evidence, 140))} _({_cell(f.section)})_"
                        for s in SEVERITIES for f in groups[s]), 10, "- … and {n} more (see report.html)")
    checks = masking_checks(result)
    if checks is not None:
        tally = {s: sum(1 for c in checks if c.get("status") == s) for s in ("pass", "warn", "fail")}
        suspected = masking_suspected(result)
        lines += ["", f"### Gradient masking: {tally['pass']} pass, {tally['warn']} warn, {tally['fail']} fail"
                      + (" — **masking suspected**" if suspected else "")]
        bad = [c for c in checks if c.get("status") in ("fail", "warn")]
        if bad:
            lines.append("")
            _capped(lines, (f"- {'❌' if c.get('status') == 'fail' else '⚠️'} {_cell(str(c.get('name', '?')))}: "
                            f"{_cell(_short(str(c.get('evidence', '')), 120))}" for c in bad), 6, "- … and {n} more")
    not_run = [(name, s) for name, s in result.sections.items() if s.status != "ok"]
    ran = [name for name, s in result.sections.items() if s.status == "ok"]
    lines += ["", f"Checks run: {', '.join(ran) or 'none'}."]
    if not_run:
        lines.append("Not run: " + "; ".join(f"{_cell(n)} ({s.status}: {_cell(_short(s.reason or 'no reason given', 70))})"
                                              for n, s in not_run[:6]) + ("; …" if len(not_run) > 6 else "") + ".")
    if len(lines) > MAX_LINES:  # defensive: the caps above keep it shorter
        lines = lines[: MAX_LINES - 1] + ["… (truncated; see report.html)"]
    return "\n".join(lines) + "\n"


__all__ = [
    "Metric", "Rule", "curve_axes", "findings_by_severity", "fmt", "fmt_ci", "gate_passed", "gate_rules", "headline_eps",
    "headline_metrics", "is_ci_dict", "masking_checks", "masking_suspected", "model_title", "render_markdown",
]
