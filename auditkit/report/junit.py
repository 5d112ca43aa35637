"""JUnit XML for CI dashboards: one testsuite per source.

* ``gate`` — one testcase per gate rule (only when a gate decision is given); a failed rule is
  a ``<failure>``.
* ``gradient-masking`` — one testcase per masking check of the robustness section; ``fail`` is a
  ``<failure>``, ``warn`` passes with a ``<system-out>`` note, ``skipped`` is ``<skipped>``. When
  the robustness check did not run, one skipped testcase says why.
* ``checks`` — one testcase per section of the results; a section that did not run (skipped
  or not applicable) is ``<skipped>`` with its reason, a failed one an ``<error>``; the
  section's takeaway, its headline figures and its findings go to ``<system-out>``. The suite's
  properties carry the verdict and every headline (``name`` = the headline's key, ``value`` =
  ``"label: figure (95% CI …, n = …)"``), as :func:`auditkit.summary.summarize` decided them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from auditkit.report.markdown import gate_rules, model_title
from auditkit.results import AuditResult
from auditkit.summary import AuditSummary, summarize


# Characters XML 1.0 forbids anywhere (ElementTree writes them as they are, making the file
# ill-formed): C0 controls but tab/newline/CR, surrogates, U+FFFE/U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(text: object) -> str:
    """``text`` with the characters XML cannot hold shown as ``\\xNN`` escapes."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _suite(root: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(root, "testsuite", name=_x(name))


def _case(suite: ET.Element, name: str, classname: str, seconds: float | None = None) -> ET.Element:
    case = ET.SubElement(suite, "testcase", name=_x(name), classname=_x(classname))
    if seconds is not None:
        case.set("time", f"{seconds:.3f}")
    return case


def _child(case: ET.Element, tag: str, message: str, text: str | None = None) -> None:
    el = ET.SubElement(case, tag, message=_x(message[:500]))
    if text:
        el.text = _x(text)


def _out(case: ET.Element, text: str) -> None:
    ET.SubElement(case, "system-out").text = _x(text)


def _count(suite: ET.Element) -> dict[str, int]:
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    for k, v in counts.items():
        suite.set(k, str(v))
    return counts


def render_junit(result: AuditResult, gate_decision: Any = None, summary: AuditSummary | None = None) -> str:
    """The JUnit XML document (UTF-8 string with an XML declaration). ``summary``:
    :func:`~auditkit.summary.summarize` of ``result`` when the caller has it already."""
    s = summary or summarize(result)
    root = ET.Element("testsuites", name=_x(f"auditkit: {model_title(result)}"))

    if gate_decision is not None:
        suite = _suite(root, "gate")
        for rule in gate_rules(gate_decision):
            case = _case(suite, rule.name, "auditkit.gate")
            if rule.skipped:
                _child(case, "skipped", rule.message or "skipped")
            elif not rule.passed:
                _child(case, "failure", rule.message or "rule failed", rule.message)
            elif rule.message:
                _out(case, rule.message)

    suite = _suite(root, "gradient-masking")
    checks = None if s.masking is None else s.masking.checks
    if checks is None:
        rob = result.sections.get("robustness")
        reason = ("the robustness check did not run" if rob is None
                  else f"robustness check {rob.status}: {rob.reason or 'no reason given'}" if rob.status != "ok"
                  else "the robustness section has no gradient-masking checklist (it comes with norm-ball threat models)")
        _child(_case(suite, "gradient-masking", "auditkit.gradient-masking"), "skipped", reason)
    else:
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="statement", value=_x(s.masking.statement))
    for check in checks or []:
        case = _case(suite, check["name"] or "unnamed check", "auditkit.gradient-masking")
        status, evidence = check["status"], check["evidence"]
        if status == "fail":
            _child(case, "failure", evidence or "check failed", evidence)
        elif status == "warn":
            _out(case, f"warning: {evidence}")
        elif status == "skipped":
            _child(case, "skipped", evidence or "skipped")
        elif status != "pass":
            _child(case, "error", f"unknown status {status!r}: {evidence}")
        elif evidence:
            _out(case, evidence)

    suite = _suite(root, "checks")
    props = ET.SubElement(suite, "properties")
    p = result.provenance
    for key, value in (("auditkit", p.auditkit), ("model_sha256", p.model_sha256), ("data_spec", p.data_spec),
                       ("seed", str(p.seed)), ("budget", str(p.config.get("budget", ""))),
                       ("verdict", s.verdict.status), *((f"verdict reason {i + 1}", r) for i, r in
                                                       enumerate(s.verdict.reasons))):
        ET.SubElement(props, "property", name=key, value=_x(value))
    for h in s.headlines(primary_only=False):
        ET.SubElement(props, "property", name=_x(h.key), value=_x(f"{h.label}: {h.text}"))
    for name, section in result.sections.items():
        case = _case(suite, name, "auditkit.checks", section.seconds)
        if section.status in ("skipped", "not-applicable"):
            _child(case, "skipped", section.reason or section.status)
        elif section.status == "failed":
            _child(case, "error", section.reason or "check failed", section.reason)
        summary_of = s.section(name)
        text = []
        if summary_of is not None and summary_of.ran:
            text.append(summary_of.takeaway)
            text += [f"{h.label}: {h.text}" for h in summary_of.headlines]
        text += [f"[{f.severity}] {f.title}: {f.evidence}" for f in section.findings]
        if text:
            _out(case, "\n".join(text))

    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in root.findall("testsuite"):
        for k, v in _count(s).items():
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


__all__ = ["render_junit"]
