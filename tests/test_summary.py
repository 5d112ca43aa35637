"""The summary layer (auditkit.summary) and the consistency it buys: one real quick scan per zoo
model (shared with tests/test_report.py), summarised once, and the same headline numbers,
labels, intervals and masking statement read back out of every consumer: the HTML report, the
Markdown summary, JUnit, the terminal summary, the dashboard helpers and the gate.
"""

from __future__ import annotations

import copy
import html as htmlmod
import io
import re
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

import auditkit.cli as cli
from auditkit.policy import Policy, Rule, gate
from auditkit.report import render_html, render_junit, render_markdown
from auditkit.results import SEVERITIES, AuditResult, Section
from auditkit.summary import AuditSummary, Headline, summarize
from tests.test_report import MODELS, _scan_zoo, resolve


@pytest.fixture(scope="session")
def scans() -> dict[str, AuditResult]:
    """Real quick scans of cnn-digits (with three defenses), lstm-reviews, fraud-mlp and
    gan-digits, 16 samples each (the same session cache as the report tests)."""
    return _scan_zoo()


@pytest.fixture(scope="session")
def summaries(scans: dict[str, AuditResult]) -> dict[str, AuditSummary]:
    return {name: summarize(r) for name, r in scans.items()}


# --------------------------------------------------------------------------- the layer itself


@pytest.mark.parametrize("name", MODELS)
def test_every_headline_is_read_from_its_evidence(name: str, scans: dict[str, AuditResult],
                                                  summaries: dict[str, AuditSummary]) -> None:
    result, s = scans[name], summaries[name]
    doc = result.model_dump(mode="json")
    assert s.verdict == result.verdict
    ran = [sec for sec in s.sections if sec.ran]
    assert ran and [sec.name for sec in s.sections][: len(ran)] == [sec.name for sec in ran]  # ran first
    for sec in s.sections:
        assert sec.takeaway and not sec.takeaway[0].islower() and sec.takeaway.endswith(".")
        assert sec.note is None, sec.note  # every zoo payload matches its model
        for h in sec.headlines:
            assert h.key.startswith(sec.name + ".") and h.label and h.display != "—"
            node = resolve(doc, h.evidence)  # the evidence path exists...
            if h.kind == "count":
                assert h.display.startswith(f"{h.value:.0f} of ")
                continue
            stored = node["value"] if isinstance(node, dict) and "value" in node else (
                node["robust_accuracy"] if isinstance(node, dict) else node)
            # ...and holds the figure (win rates are stored as fractions of n: k/n)
            assert h.value == pytest.approx(stored, abs=1e-6), h.key
            if h.kind == "proportion":
                assert h.display == f"{100 * h.value:.1f}%" and h.unit == "%"
            if h.ci_low is not None:
                assert h.ci_low <= h.value + 1e-9 <= h.ci_high + 2e-9 and h.ci_display
    order = [(SEVERITIES.index(f.severity), f.subject != "model") for f in s.findings]
    assert order == sorted(order) and sorted(map(id, s.findings)) == sorted(map(id, result.findings))
    assert sum(s.finding_counts.values()) == len(result.findings)


def test_headline_points_agree_with_the_findings(summaries: dict[str, AuditSummary],
                                                 scans: dict[str, AuditResult]) -> None:
    """The robustness check writes its findings with its own copy of the headline rules; the
    summary's headline point must be the point those findings name."""
    checked = 0
    for name, s in summaries.items():
        titles = [f.title for f in scans[name].findings if f.section == "robustness"]
        for h in s.section("robustness").headlines if s.section("robustness") else []:
            key = h.key.split(".", 1)[1]
            if key not in ("linf", "l2", "tabular", "text"):
                continue
            x = float(re.search(r"(?:ε =|k =|cost ≤) ([\d.e+-]+)\)", h.label).group(1))
            if key in ("linf", "l2"):
                assert f"Robust accuracy {h.value:.1%} at {key} eps={x:g}" in titles
            elif key == "tabular":
                assert any(t.startswith(f"{h.value:.0%} of caught") and f"≤ {x:g} feature units" in t for t in titles)
            elif key == "text":
                assert f"Robust accuracy {h.value:.1%} under {x:g} word substitution(s)" in titles
            else:
                continue
            checked += 1
    assert checked >= 4  # linf, l2, tabular, text


def test_unknown_and_mismatched_sections_are_summarised_generically(scans: dict[str, AuditResult]) -> None:
    result = copy.deepcopy(scans["cnn-digits"])
    result.sections["my-plugin"] = Section(name="my-plugin", data={
        "recall": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9, "n": 50}, "note": "free text"})
    result.sections["performance"].data = {"accuracy": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 10},
                                           "per_class": "unexpected"}
    s = summarize(result)
    plugin = s.section("my-plugin")
    assert plugin is not None and plugin.note is None
    assert [(h.key, h.label, h.display, h.ci_display, h.n) for h in plugin.headlines] == [
        ("my-plugin.recall", "my-plugin: recall", "80.0%", "70.0–90.0%", 50)]
    perf = s.section("performance")
    assert perf is not None and "does not match the performance model" in (perf.note or "")
    assert [h.display for h in perf.headlines] == ["50.0%"]
    # Not-run sections say why, in one sentence.
    gan = s.section("gan")
    assert gan is not None and not gan.ran and gan.reason and gan.reason in gan.takeaway


def test_the_masking_statement_follows_the_checks(scans: dict[str, AuditResult]) -> None:
    result = copy.deepcopy(scans["cnn-digits"])
    checks = result.sections["robustness"].data["masking"]["checks"]
    for c in checks:
        c["status"] = "pass"
    checks[0]["status"] = "warn"
    s = summarize(result)
    assert s.masking is not None and s.masking.outcome == "warned"
    assert s.masking.statement.startswith("No gradient-masking check failed; 1 warned")
    md = render_markdown(result)
    assert s.masking.statement in md and "No sign of gradient masking" not in render_html(result)
    checks[1]["status"] = "fail"
    s = summarize(result)
    assert s.masking.outcome == "failed" and s.masking.statement.startswith("1 gradient-masking check(s) failed")


# --------------------------------------------------------------------------- every consumer agrees


Figure = tuple[str, str, str, str]  # label, display, ci display ("" when none), n ("" when none)


def _expected(s: AuditSummary) -> dict[str, Figure]:
    return {h.label: (h.label, h.display, h.ci_display, "" if h.n is None else str(h.n)) for h in s.headlines()}


def _from_markdown(md: str) -> dict[str, Figure]:
    out = {}
    for label, value, ci, n in re.findall(r"^\| (.+?) \| (.+?) \| (.+?) \| (.+?) \|$", md, re.M):
        if label in ("metric", "---", "…", "rule") or value in ("pass", "**FAIL**", "skipped"):
            continue
        out[label] = (label, value, "" if ci == "—" else ci, "" if n == "—" else n)
    return out


def _from_html(page: str) -> dict[str, Figure]:
    out = {}
    for source, label, value, ci, n in re.findall(
            r'<div class="metric" title="Source: ([^"]*)">\s*<div class="m-label">(.*?)</div>\s*'
            r'<div class="m-value">(.*?)</div>\s*(?:<div class="m-ci">(.*?)</div>\s*)?'
            r'(?:<div class="m-n">(.*?)</div>)?', page, re.S):
        label = htmlmod.unescape(label)
        n_text = re.match(r"n = (\d+)", htmlmod.unescape(n or ""))
        out[label] = (label, htmlmod.unescape(value), htmlmod.unescape(ci).removeprefix("95% CI "),
                      n_text.group(1) if n_text else "")
    return out


def _parse_text(label: str, text: str) -> Figure:
    """``"98.4% (95% CI 96.8–99.2%, n = 450)"`` -> the figure's parts."""
    m = re.fullmatch(r"(.+?)(?: \((?:95% CI ([^,)]+))?(?:, )?(?:n = (\d+))?\))?", text.strip())
    assert m, text
    return (label, m.group(1), m.group(2) or "", m.group(3) or "")


def _from_junit(xml: str, s: AuditSummary) -> dict[str, Figure]:
    props = {p.get("name"): p.get("value") for p in
             ET.fromstring(xml).find("testsuite[@name='checks']/properties").findall("property")}
    out = {}
    for h in s.headlines():
        value = props[h.key]
        assert value.startswith(h.label + ": "), value
        out[h.label] = _parse_text(h.label, value.removeprefix(h.label + ": "))
    return out


def _from_terminal(result: AuditResult, s: AuditSummary,
                   monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Figure], str]:
    buf = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buf, width=400, highlight=False, color_system=None))
    cli._print_summary(result, cli.Path("out/results.json"))
    text = buf.getvalue()
    out = {}
    for h in s.headlines():
        line = next((ln for ln in text.splitlines() if ln.startswith(f"  {h.label}: ")), None)
        if line is not None:
            out[h.label] = _parse_text(h.label, line.removeprefix(f"  {h.label}: "))
    return out, text


def _from_dashboard(result: AuditResult) -> tuple[dict[str, Figure], dict[str, str], dict[str, str]]:
    """(the overview's metric cards, its side-by-side table, its masking statements)."""
    from auditkit import dashboard as dash

    audit = dash.make_audits([("x", None, result)])[0]
    cards = {m.label: (m.label, m.display, m.ci_display, "" if m.n is None else str(m.n))
             for m in dash.headline_metrics(audit)}
    table = {row["metric"]: row[audit.label] for row in dash.headline_table([audit])}
    masking = {label: m.statement for label, m in dash.masking_summaries([audit]).items()}
    return cards, table, masking


@pytest.mark.parametrize("name", MODELS)
def test_every_consumer_shows_the_same_headlines(name: str, scans: dict[str, AuditResult],
                                                 summaries: dict[str, AuditSummary],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    result, s = scans[name], summaries[name]
    expected = _expected(s)
    assert expected, "every zoo audit has headline figures"
    md, page, xml = render_markdown(result), render_html(result), render_junit(result)
    terminal, text = _from_terminal(result, s, monkeypatch)
    dashboard, dash_table, dash_masking = _from_dashboard(result)
    assert dash_table == {h.label: h.text for h in s.headlines()}
    views = {"markdown": _from_markdown(md), "html": _from_html(page), "junit": _from_junit(xml, s),
             "terminal": terminal, "dashboard": dashboard}
    for view, got in views.items():
        # Markdown caps its table at 8 rows; every row it shows agrees.
        wanted = {k: v for k, v in expected.items() if view != "markdown" or k in got}
        assert len(wanted) >= min(len(expected), 8), view
        assert {k: got.get(k) for k in wanted} == wanted, view

    # The gate reads the same figures under the same labels.
    rules, heads = [], {}
    for h in s.headlines():
        key = h.key.split(".", 1)[1]
        if h.key in ("performance.accuracy", "performance.pr_auc", "performance.ece", "gan.fid_ratio"):
            metric = h.evidence + (".value" if h.key in ("performance.accuracy", "performance.pr_auc") else "")
            rules.append(Rule(h.key, metric, "<=" if h.higher_is_better is False else ">=", 0.0 if
                              h.higher_is_better is not False else 1e9))
        elif h.key.startswith("robustness.") and key in ("linf", "l2"):
            x = float(re.search(r"ε = ([\d.e+-]+)\)", h.label).group(1))
            rules.append(Rule(h.key, f"sections.robustness.data.threat_models.{key}.curve", ">=", 0.0, norm=key, eps=x))
        else:
            continue
        heads[h.key] = h
    decision = gate(result, Policy(rules=rules, fail_on_masking=True))
    for rule in decision.rules:
        if rule.kind != "threshold":
            continue
        h: Headline = heads[rule.name]
        assert rule.value == pytest.approx(h.value), rule.name
        assert rule.message.startswith(h.label + " ") and h.display in rule.message, rule.message
        if h.ci_display:
            assert h.ci_display in rule.message, rule.message
    assert rules and len([r for r in decision.rules if r.kind == "threshold"]) == len(rules)

    # One masking statement, wherever the checklist appears.
    if s.masking is not None:
        statement = s.masking.statement
        assert statement in md and statement in htmlmod.unescape(page) and statement in text
        assert list(dash_masking.values()) == [statement]
        props = ET.fromstring(xml).find("testsuite[@name='gradient-masking']/properties")
        assert props.find("property[@name='statement']").get("value") == statement
        masking_rule = next(r for r in decision.rules if r.kind == "masking")
        assert masking_rule.passed == (s.masking.outcome in ("clean", "warned"))
        if masking_rule.passed:
            assert masking_rule.message.startswith(statement.rstrip("."))
    # The verdict, first everywhere it is shown.
    assert "**Verdict: " in md and s.verdict.status.upper() in md.split("\n| metric")[0]
    assert text.startswith(f"verdict: {s.verdict.status.upper()}")
    assert ET.fromstring(xml).find("testsuite[@name='checks']/properties/property[@name='verdict']").get(
        "value") == s.verdict.status


def test_explanation_quality_tables_use_the_models_labels_and_rules(scans: dict[str, AuditResult],
                                                                    summaries: dict[str, AuditSummary]) -> None:
    from auditkit.sections.explanation_quality import RHO_ABS_LABEL, RHO_SIGNED_LABEL

    for name in ("cnn-digits", "lstm-reviews"):
        page = htmlmod.unescape(render_html(scans[name]))
        assert f"<th>{RHO_ABS_LABEL}</th>" in page and f"<th>{RHO_SIGNED_LABEL}</th>" in page
        assert "final Spearman |ρ|" not in page and ">both<" not in page
        quality = scans[name].payload("explanation-quality")
        for m, c in quality.deletion_insertion.items():
            d, i = c.beats_random("deletion"), c.beats_random("insertion")
            badge = ("deletion and insertion" if d and i else "deletion only" if d else "insertion only" if i
                     else "neither")
            # the row of method m ends with its badge, decided by the win-rate rule
            rows = re.findall(rf"<td>{re.escape(m)}</td>(.*?)</tr>", page, re.S)
            assert any(row.rstrip().endswith(f">{badge}</span></td>") for row in rows), (name, m)
            for curve in ("deletion", "insertion"):
                h = summaries[name].headline(f"explanation-quality.deletion_insertion.{m}.{curve}")
                assert h is not None and h.value == pytest.approx(getattr(c, f"{curve}_win_rate"), abs=1e-6)
