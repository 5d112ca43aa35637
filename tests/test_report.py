"""Reports from real scans of every zoo model: HTML (self-contained, one plotly.js, every figure
traceable to the results JSON), Markdown summary, JUnit XML, atomic writing, bad input."""

from __future__ import annotations

import copy
import functools
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import auditkit
import auditkit.report.html as report_html
from auditkit.report import FILES, load_result, render_html, render_junit, render_markdown, write_reports
from auditkit.results import AuditResult, Finding, ResultsError, Section
from auditkit.summary import summarize
from tests.conftest import zoo_model_path

MODELS = ["cnn-digits", "lstm-reviews", "fraud-mlp", "gan-digits"]
MAX_HTML_BYTES = 1_500_000  # issue 14: a report is at most 1.5 MB, plotly.js included
MAX_EXTRA_BYTES = 400_000  # the report without plotly.js
HEADINGS = {
    "cnn-digits": ["Summary", "Model card", "Clean performance", "Attributions", "Explanation quality",
                   "Adversarial robustness", "Defenses", "Baseline comparison", "Provenance"],
    "lstm-reviews": ["Summary", "Model card", "Clean performance", "Attributions", "Explanation quality", "Provenance"],
    "fraud-mlp": ["Summary", "Model card", "Clean performance", "Attributions", "Explanation quality", "Provenance"],
    "gan-digits": ["Summary", "Model card", "GAN artifact", "Provenance"],
}


def _robustness_section(model_path: Path) -> Section:
    """A robustness section from the real ensemble (used only while the scan has no robustness
    check of its own): quick budget, 8 samples, both norms, and a masking checklist of each status."""
    from auditkit.attacks import run_ensemble
    from auditkit.data import load_data
    from auditkit.loading import load_model

    model = load_model(model_path)
    data = load_data("digits", card=model.card)
    x, y = torch.from_numpy(data.x_test[:8]).float(), torch.from_numpy(data.y_test[:8]).long()
    tms = {norm: run_ensemble(model.module, x, y, norm, model.card.epsilons[norm], budget="quick",
                              bounds=tuple(model.card.bounds)).to_dict() for norm in ("linf", "l2")}
    checks = [{"name": "accuracy-monotone", "status": "pass", "evidence": "robust accuracy never rises with eps"},
              {"name": "black-box-weaker", "status": "warn", "evidence": "square found 1 sample PGD missed"},
              {"name": "large-eps-reaches-zero", "status": "fail", "evidence": "accuracy 0.4 at eps 0.3"}]
    return Section(name="robustness", data={"budget": "quick", "threat_models": tms,
                                            "masking": {"checks": checks, "suspected": True}})


# Every check runs (the summary's consistency test, tests/test_summary.py, shares these scans);
# per model, what keeps the fixture quick: cnn-digits evaluates three cheap defenses, and
# fraud-mlp leaves out the baselines (10 s of permutation importance on its 15,000 rows).
SCAN_OPTIONS: dict[str, dict[str, Any]] = {
    "cnn-digits": {"defenses": ["squeeze-bits", "smoothing", f"adversarial-training={zoo_model_path('cnn-digits-at')}"]},
    "fraud-mlp": {"skip": ["baselines"]},
}


@pytest.fixture(scope="session")
def zoo_results() -> dict[str, AuditResult]:
    """A real quick scan of each zoo model (shared with the browser tests). Tests that change a
    result work on a deep copy."""
    return _scan_zoo()


@functools.cache
def _scan_zoo() -> dict[str, AuditResult]:
    # Memoised so that the browser and summary tests, which import it, do not scan again.
    torch.set_num_threads(1)
    out = {}
    for name in MODELS:
        result = auditkit.scan(zoo_model_path(name), budget="quick", samples=16, progress=False, threads=1,
                               **SCAN_OPTIONS.get(name, {}))
        if name == "cnn-digits" and "robustness" not in result.sections:
            result.sections["robustness"] = _robustness_section(zoo_model_path(name))
        out[name] = result
    return out


@pytest.fixture(scope="session")
def zoo_html(zoo_results: dict[str, AuditResult]) -> dict[str, str]:
    return {name: render_html(r) for name, r in zoo_results.items()}


def _plotly_js() -> str:
    """The embedded (compressed, base64) plotly.js as it appears in the page."""
    from auditkit.report.html import plotly_bundle

    return plotly_bundle()[1]


@functools.lru_cache(maxsize=1)
def _embedded_plotly_code() -> str:
    """The plotly.js source a page unpacks: the embedded bundle, base64-decoded and gunzipped."""
    import base64
    import gzip

    return gzip.decompress(base64.b64decode(_plotly_js())).decode()


def resolve(doc: Any, path: str) -> Any:
    """The value at a report source path such as ``sections.x.data.curve[3].eps``."""
    for part in path.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        assert m, f"bad path part {part!r} in {path}"
        doc = doc[m.group(1)]
        for i in re.findall(r"\[(\d+)\]", m.group(2)):
            doc = doc[int(i)]
    return doc


def figures(html: str) -> list[tuple[str, dict[str, Any], str]]:
    """(id, plotly spec, source path) of every figure in the page."""
    out = []
    for m in re.finditer(r'<div id="(fig-\d+)" class="chart"[^>]*></div>\s*'
                         r'<script type="application/json" id="\1-data">(.*?)</script>\s*'
                         r'<figcaption>.*?Source: <code>([^<]+)</code>', html, re.S):
        out.append((m.group(1), json.loads(m.group(2)), m.group(3)))
    return out


# --------------------------------------------------------------------------- HTML


@pytest.mark.parametrize("name", MODELS)
def test_html_is_self_contained_with_every_section(name: str, zoo_html: dict[str, str]) -> None:
    html = zoo_html[name]
    for title in HEADINGS[name]:
        assert re.search(rf"<h2>{re.escape(title)}\b", html), f"missing section {title!r}"
    js = _plotly_js()
    assert html.count(js) == 1, "plotly.js must be embedded exactly once"
    rest = html.replace(js, "")
    # Nothing outside plotly.js points at the network: no scripts, styles, fonts or images.
    assert "http://" not in rest and "https://" not in rest
    for pattern in (r"<script[^>]+src=", r"<link\b", r"@import", r"url\(", r"<img\b", r"@font-face"):
        assert not re.search(pattern, rest, re.I), pattern
    size = len(html.encode())
    assert size < MAX_HTML_BYTES, size
    assert size - len(js.encode()) < MAX_EXTRA_BYTES, size - len(js.encode())
    assert 'class="note note-render-error"' not in html, "a known section fell back to the generic view"


def test_the_embedded_plotly_js_is_the_version_python_writes_for() -> None:
    """The page carries the plotly.js that the ``plotly`` package's figure JSON is written for,
    as the vendored cartesian bundle (every trace type the reports use), compressed."""
    from plotly.offline import get_plotlyjs_version

    from auditkit.report.html import plotly_bundle

    version = plotly_bundle()[0]
    code = _embedded_plotly_code()
    assert version == get_plotlyjs_version() and f"plotly.js (cartesian - minified) v{version}" in code[:300]
    assert "window.Plotly = Plotly" in code
    # every trace type the report builders use is registered in this bundle
    for trace in ("scatter", "bar", "heatmap", "image"):
        assert f'moduleType:"trace",name:"{trace}"' in code.replace(" ", ""), trace


@pytest.mark.parametrize("name", MODELS)
def test_every_figure_names_a_json_path_that_exists(name: str, zoo_results: dict[str, AuditResult],
                                                    zoo_html: dict[str, str]) -> None:
    html = zoo_html[name]
    doc = json.loads(zoo_results[name].to_json())
    figs = figures(html)
    n_meta = int(re.search(r'<meta name="auditkit-figures" content="(\d+)">', html).group(1))
    assert len(figs) == n_meta == html.count('class="chart"') >= 3
    bundled = set(re.findall(r'moduleType:"trace",name:"([a-z0-9]+)"', _embedded_plotly_code()))
    for fig_id, spec, source in figs:
        assert spec["data"], fig_id
        assert {t.get("type", "scatter") for t in spec["data"]} <= bundled, fig_id  # drawable offline
        assert "template" not in spec["layout"], "figures share one base layout; no per-figure template"
        value = resolve(doc, source)
        assert value not in (None, [], {}), f"{fig_id}: {source} is empty"


def test_image_report_shows_attributions_and_adversarial_triples(zoo_results: dict[str, AuditResult],
                                                                 zoo_html: dict[str, str]) -> None:
    html = zoo_html["cnn-digits"]
    figs = {source: spec for _, spec, source in figures(html)}
    gallery = figs["sections.attributions.data.gallery"]
    methods = [m for m, r in zoo_results["cnn-digits"].sections["attributions"].data["methods"].items()
               if r["status"] == "ok"]
    n_items = len(zoo_results["cnn-digits"].sections["attributions"].data["gallery"])
    heatmaps = [t for t in gallery["data"] if t["type"] == "heatmap"]
    # per sample: the input, then each method as an overlay (input beneath + attribution)
    assert len(heatmaps) == n_items * (1 + 2 * len(methods))
    rob = zoo_results["cnn-digits"].sections["robustness"].data
    for norm, tm in rob["threat_models"].items():
        curve = figs[f"sections.robustness.data.threat_models.{norm}.fine_curve"]
        names = {t.get("name") for t in curve["data"]}
        assert {"worst case over attacks", "95% CI (Wilson)", "grid points"} <= names
        assert len(curve["data"][2]["y"]) == len(tm["fine_curve"])
        for attack in tm["attacks"]:
            assert f"<td>{attack}</td>" in html
        if tm["gallery"]:
            triples = figs[f"sections.robustness.data.threat_models.{norm}.gallery"]
            assert len([a for a in triples["layout"]["annotations"] if a["text"].startswith("δ")]) == len(tm["gallery"])
    assert "Gradient-masking checklist" in html
    for c in rob["masking"]["checks"]:
        assert f'<span class="badge badge-{c["status"]}">{c["status"]}</span> <strong>{c["name"]}</strong>' in html
    if rob["masking"]["suspected"]:
        assert "Gradient masking is suspected" in html


def test_text_report_highlights_tokens(zoo_results: dict[str, AuditResult], zoo_html: dict[str, str]) -> None:
    html = zoo_html["lstm-reviews"]
    item = zoo_results["lstm-reviews"].sections["attributions"].data["gallery"][0]
    spans = re.findall(r'<span class="tok" style="background: rgba\((\d+),\d+,\d+,([\d.]+)\)[^"]*" '
                       r'title="[^"]*">([^<]*)</span>', html)
    assert [s[2] for s in spans[: len(item["input"])]] == item["input"]
    assert any(float(a) > 0.5 for _, a, _ in spans), "the strongest token of a line is shaded strongly"
    assert "vocabulary size" in html
    vocab = zoo_results["lstm-reviews"].provenance.card["text"]["vocab"]
    assert f"<th>vocabulary size</th><td>{len(vocab)}</td>" in html
    assert "infidelity and sensitivity perturb continuous inputs" in html  # says why it did not run


def test_tabular_report_names_features(zoo_results: dict[str, AuditResult], zoo_html: dict[str, str]) -> None:
    html = zoo_html["fraud-mlp"]
    card = zoo_results["fraud-mlp"].provenance.card
    for f in card["features"]:
        assert f"<td>{f['name']}</td>" in html
    figs = {source: spec for _, spec, source in figures(html)}
    bars = figs["sections.attributions.data.global_importance"]
    importance = zoo_results["fraud-mlp"].sections["attributions"].data["global_importance"]
    assert [t["name"] for t in bars["data"]] == list(importance)
    assert set(bars["data"][0]["y"]) == {f["name"] for f in card["features"]}
    assert max(bars["data"][0]["x"]) == 1.0  # each method scaled to its own largest feature
    assert "PR-AUC" in html and "precision@k" in html


def test_gan_report_shows_samples_and_references(zoo_results: dict[str, AuditResult], zoo_html: dict[str, str]) -> None:
    html = zoo_html["gan-digits"]
    sources = [s for _, _, s in figures(html)]
    for part in ("sample_grid", "coverage.histogram", "quality", "memorisation.closest_pairs", "discriminator",
                 "latent.mean_abs_attribution"):
        assert f"sections.gan.data.{part}" in sources, part
    q = zoo_results["gan-digits"].sections["gan"].data["quality"]
    assert f"<th>FID</th><td>{q['fid']:.4g}</td>" in html


def test_skipped_sections_say_why(zoo_results: dict[str, AuditResult], zoo_html: dict[str, str]) -> None:
    result = zoo_results["cnn-digits"]
    reason = result.sections["gan"].reason
    assert result.sections["gan"].status == "not-applicable" and reason
    html = zoo_html["cnn-digits"]
    assert f"This check did not run (not-applicable): {reason}." in html
    assert f"gan (not-applicable: {reason})" in render_markdown(result)
    suite = ET.fromstring(render_junit(result)).find("testsuite[@name='checks']")
    skipped = suite.find("testcase[@name='gan']/skipped")
    assert skipped is not None and skipped.get("message") == reason


def test_unknown_sections_and_unexpected_data_render_generically(zoo_results: dict[str, AuditResult]) -> None:
    result = copy.deepcopy(zoo_results["cnn-digits"])
    result.sections.pop("defenses")
    result.sections["my-defenses"] = Section(name="my-defenses", data={  # a plugin's section
        "method": "adversarial-training", "epochs": 2,
        "robust_accuracy": {"value": 0.41, "ci_low": 0.3, "ci_high": 0.52, "n": 64},
        "models": {"pgd-at": {"clean": {"value": 0.9, "ci_low": 0.85, "ci_high": 0.94, "n": 64}, "seconds": 3.2,
                              "curve": [{"eps": 0, "robust_accuracy": 0.9}, {"eps": 0.1, "robust_accuracy": 0.4}]},
                   "trades": {"clean": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.88, "n": 64}, "seconds": 4.1,
                              "curve": [{"eps": 0, "robust_accuracy": 0.8}, {"eps": 0.1, "robust_accuracy": 0.5}]}},
        "nested": {"a": {"b": [1, 2, {"c": None}]}}})
    result.sections["baselines"] = Section(name="baselines", status="failed", reason="sklearn exploded")
    # A known section whose data has a layout the report does not expect.
    result.sections["performance"].data = {"accuracy": "high", "per_class": 5, "calibration": [1, 2]}
    with pytest.warns(UserWarning, match="performance"):
        html = render_html(result)
    assert "<h2>My defenses" in html and "adversarial-training" in html
    assert "41.0%" in html and "30.0–52.0%" in html  # CI figure of an unknown section
    # one comparison table (a row per model), and each model's curve drawn with its source path
    assert "<td>pgd-at</td>" in html and "<td>trades</td>" in html and "90.0% (85.0%–94.0%, n = 64)" in html
    sources = [src for _, _, src in figures(html)]
    assert {"sections.my-defenses.data.models.pgd-at.curve",
            "sections.my-defenses.data.models.trades.curve"} <= set(sources)
    assert "nested" in html
    assert "This check did not run (failed): sklearn exploded." in html
    assert html.count('class="note note-render-error"') == 1  # performance only, with its data shown
    figs = figures(html)
    assert len(figs) == html.count('class="chart"')  # no orphaned figure from the failed builder
    md = render_markdown(result)
    assert "my-defenses: robust accuracy" in md
    junit = ET.fromstring(render_junit(result))
    assert junit.find("testsuite[@name='checks']/testcase[@name='baselines']/error").get("message") == "sklearn exploded"


def test_robustness_section_without_optional_parts(zoo_results: dict[str, AuditResult]) -> None:
    result = copy.deepcopy(zoo_results["cnn-digits"])
    linf = copy.deepcopy(zoo_results["cnn-digits"].sections["robustness"].data["threat_models"]["linf"])
    for key in ("fine_curve", "gallery", "records", "per_attack"):
        linf.pop(key)
    result.sections["robustness"] = Section(name="robustness", data={
        "threat_models": {"linf": linf}, "text": {"substitutions": {"k": 2, "success": 0.3}},
        "skipped": {"l2": "no epsilons for this norm"}})
    html = render_html(result)
    assert 'class="note note-render-error"' not in html
    assert "l2: not run — no epsilons for this norm" in html
    assert any(s.endswith("threat_models.linf.curve") for _, _, s in figures(html))


# --------------------------------------------------------------------------- Markdown


@pytest.mark.parametrize("name", MODELS)
def test_markdown_summary_is_short_and_has_the_headline(name: str, zoo_results: dict[str, AuditResult]) -> None:
    result = zoo_results[name]
    md = render_markdown(result)
    assert len(md.splitlines()) < 60
    perf = result.sections.get("performance")
    if perf is not None and perf.status == "ok":
        acc = perf.data["accuracy"]
        assert f"| Clean accuracy | {100 * acc['value']:.1f}% | {100 * acc['ci_low']:.1f}–{100 * acc['ci_high']:.1f}% | {acc['n']} |" in md
    if name == "gan-digits":
        assert "| FID (generated vs test) |" in md
    rob = result.sections.get("robustness")
    if rob is not None and rob.status == "ok":
        metrics = [h for h in summarize(result).headlines() if h.key.startswith("robustness.")]
        if rob.data.get("threat_models") or any(k in rob.data for k in ("text", "discriminator", "tabular")):
            assert metrics, "a robustness headline (with its CI) is expected"
        for m in metrics:
            assert f"| {m.label} | {m.display} | {m.ci_display} | {m.n} |" in md
            point = resolve(json.loads(result.to_json()), m.evidence)  # the figure is read, not recomputed
            assert m.value == pytest.approx(point["value"] if "value" in point else point["robust_accuracy"])
        if "masking" in rob.data:
            assert "### Gradient masking:" in md
            assert summarize(result).masking.statement in md  # the statement that agrees with the checklist
    assert "**Verdict: " in md and result.verdict.status.upper() in md


@dataclass
class _Rule:
    name: str
    passed: bool
    message: str


@dataclass
class _Decision:
    passed: bool
    rules: list[_Rule]


def test_markdown_stays_short_with_many_findings_and_rules(zoo_results: dict[str, AuditResult]) -> None:
    result = copy.deepcopy(zoo_results["cnn-digits"])
    result.findings = [Finding(severity=("high", "medium", "low")[i % 3], title=f"finding {i}",
                               evidence="x " * 200, section="performance") for i in range(40)]
    decision = _Decision(False, [_Rule(f"rule-{i}", i % 2 == 0, "because " * 30) for i in range(30)])
    md = render_markdown(result, decision)
    assert len(md.splitlines()) < 60
    assert "**Gate: ❌ failed** (15/30 rules passed)" in md
    assert "14 high, 13 medium, 13 low" in md and "more (see report.html)" in md


# --------------------------------------------------------------------------- JUnit


def test_junit_has_one_suite_per_source(zoo_results: dict[str, AuditResult]) -> None:
    result = zoo_results["cnn-digits"]
    decision = {"passed": False, "rules": [{"name": "min-accuracy", "passed": True, "message": "0.98 >= 0.9"},
                                           {"name": "robust-linf", "passed": False, "message": "0.1 < 0.5"}]}
    root = ET.fromstring(render_junit(result, decision))
    assert [s.get("name") for s in root.findall("testsuite")] == ["gate", "gradient-masking", "checks"]
    gate = root.find("testsuite[@name='gate']")
    assert gate.get("tests") == "2" and gate.get("failures") == "1"
    assert gate.find("testcase[@name='robust-linf']/failure").get("message") == "0.1 < 0.5"
    assert gate.find("testcase[@name='min-accuracy']/failure") is None
    checks = root.find("testsuite[@name='checks']")
    assert [c.get("name") for c in checks.findall("testcase")] == list(result.sections)
    masking = root.find("testsuite[@name='gradient-masking']")
    expected = result.sections["robustness"].data["masking"]["checks"]
    cases = masking.findall("testcase")
    assert [c.get("name") for c in cases] == [c["name"] for c in expected]
    for case, check in zip(cases, expected):
        assert (case.find("failure") is not None) == (check["status"] == "fail")
        if check["status"] == "warn":
            assert case.find("system-out").text.startswith("warning:")
    totals = {k: sum(int(s.get(k)) for s in root.findall("testsuite")) for k in ("tests", "failures", "skipped")}
    assert {k: int(root.get(k)) for k in totals} == totals


def test_junit_without_robustness_or_gate(zoo_results: dict[str, AuditResult]) -> None:
    result = copy.deepcopy(zoo_results["fraud-mlp"])
    result.sections.pop("robustness", None)
    root = ET.fromstring(render_junit(result))
    assert [s.get("name") for s in root.findall("testsuite")] == ["gradient-masking", "checks"]
    skipped = root.find("testsuite[@name='gradient-masking']/testcase/skipped")
    assert skipped.get("message") == "the robustness check did not run"
    result.sections["robustness"] = Section(name="robustness", data={"masking": {"checks": [
        {"name": "eval-mode", "status": "skipped", "evidence": "TorchScript"}], "suspected": False}})
    case = ET.fromstring(render_junit(result)).find("testsuite[@name='gradient-masking']/testcase[@name='eval-mode']")
    assert case.find("skipped").get("message") == "TorchScript"


def test_real_gate_decision_in_every_format(zoo_results: dict[str, AuditResult]) -> None:
    gate = pytest.importorskip("auditkit.policy")
    decision = gate.GateDecision(passed=False, rules=[
        gate.RuleOutcome(name="min_clean_accuracy", passed=True, message="0.98 >= 0.95"),
        gate.RuleOutcome(name="gradient masking", passed=False, message="2 masking checks failed")])
    result = zoo_results["fraud-mlp"]
    assert "**Gate: ❌ failed** (1/2 rules passed)" in render_markdown(result, decision)
    assert "| gradient masking | **FAIL** | 2 masking checks failed |" in render_markdown(result, decision)
    failure = ET.fromstring(render_junit(result, decision)).find("testsuite[@name='gate']/testcase/failure")
    assert failure.get("message") == "2 masking checks failed"
    assert "Gate failed: 1 of 2 rules passed." in render_html(result, decision)


def test_gate_decision_without_rules_is_refused(zoo_results: dict[str, AuditResult]) -> None:
    with pytest.raises(ValueError, match="rules"):
        render_junit(zoo_results["gan-digits"], {"passed": True})


# --------------------------------------------------------------------------- writing


def test_write_reports_from_a_results_file_equals_from_the_result(zoo_results: dict[str, AuditResult],
                                                                  tmp_path: Path) -> None:
    result = zoo_results["lstm-reviews"]
    path = result.write(tmp_path / "scan" / "results.json")
    a = write_reports(path, tmp_path / "a")
    b = write_reports(result, tmp_path / "b")
    c = write_reports(path.parent, tmp_path / "c", formats=("md",))  # a folder holding results.json
    assert set(a) == set(FILES) and set(c) == {"md"}
    for kind in FILES:
        assert a[kind].name == FILES[kind]
        assert a[kind].read_bytes() == b[kind].read_bytes(), f"{kind} differs between file and in-memory result"
    assert c["md"].read_bytes() == a["md"].read_bytes()
    assert load_result(path.parent).provenance == result.provenance


def test_a_failing_render_leaves_no_file(zoo_results: dict[str, AuditResult], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = zoo_results["gan-digits"]
    old = write_reports(result, tmp_path / "old")
    before = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("renderer failed half way")

    monkeypatch.setattr(report_html, "_provenance_blocks", boom)
    for out in (tmp_path / "old", tmp_path / "new"):
        with pytest.raises(RuntimeError, match="half way"):
            write_reports(result, out)
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before  # untouched, no temp files
    assert set(before) == {p.name for p in old.values()}


def test_unknown_schema_version_is_refused(zoo_results: dict[str, AuditResult], tmp_path: Path) -> None:
    doc = json.loads(zoo_results["gan-digits"].to_json())
    doc["schema_version"] = "9.0"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match="schema_version '9.0' is not supported"):
        write_reports(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ResultsError, match="does not exist"):
        write_reports(tmp_path / "missing.json", tmp_path / "out")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not a results JSON file"):
        write_reports(tmp_path / "bad.json", tmp_path / "out")


def test_unknown_format_is_refused(zoo_results: dict[str, AuditResult], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown report format.*pdf"):
        write_reports(zoo_results["gan-digits"], tmp_path, formats=("html", "pdf"))
    with pytest.raises(ValueError, match="no report format"):
        write_reports(zoo_results["gan-digits"], tmp_path, formats=())
    assert not any(tmp_path.iterdir())


def test_rendering_is_deterministic(zoo_results: dict[str, AuditResult]) -> None:
    result = zoo_results["fraud-mlp"]
    assert render_html(result) == render_html(AuditResult.model_validate_json(result.to_json()))
