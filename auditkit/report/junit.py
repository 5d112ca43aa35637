"""JUnit XML for CI dashboards: one testsuite per source.

* ``gate`` — one testcase per gate rule (only when a gate decision is given); a failed rule is
  a ``<failure>``.
* ``gradient-masking`` — one testcase per masking check of the robustness section; ``fail`` is a
  ``<failure>``, ``warn`` passes with a ``<system-out>`` note, ``skipped`` is ``<skipped>``. When
  the robustness check did not run, one skipped testcase says why.
* ``checks`` — one testcase per section of the results; a skipped section is ``<skipped>`` with
  its reason, a failed one an ``<error>``; findings go to ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from auditkit.report.markdown import gate_rules, masking_checks, model_title
from auditkit.results import AuditResult


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


def render_junit(result: AuditResult, gate_decision: Any = None) -> str:
    """The JUnit XML document (UTF-8 string with an XML declaration)."""
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
    checks = masking_checks(result)
    if checks is None:
        rob = result.sections.get("robustness")
        reason = ("the robustness check did not run" if rob is None
                  else f"robustness check {rob.status}: {rob.reason or 'no reason given'}")
        _child(_case(suite, "gradient-masking", "auditkit.gradient-masking"), "skipped", reason)
    for check in checks or []:
        case = _case(suite, str(check.get("name", "unnamed check")), "auditkit.gradient-masking")
        status, evidence = str(check.get("status", "")), str(check.get("evidence", "") or "")
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
                       ("seed", str(p.seed)), ("budget", str(p.config.get("budget", "")))):
        ET.SubElement(props, "property", name=key, value=_x(value))
    for name, section in result.sections.items():
        case = _case(suite, name, "auditkit.checks", section.seconds)
        if section.status == "skipped":
            _child(case, "skipped", section.reason or "skipped")
        elif section.status == "failed":
            _child(case, "error", section.reason or "check failed", section.reason)
        if section.findings:
            _out(case, "\n".join(f"[{f.severity}] {f.title}: {f.evidence}" for f in section.findings))

    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in root.findall("testsuite"):
        for k, v in _count(s).items():
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


__all__ = ["render_junit"]
