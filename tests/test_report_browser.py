"""Each zoo model's HTML report in a real headless Chromium: no console or page errors, no
network request, every chart drawn, and a full-page screenshot kept in test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from auditkit.report import write_reports
from auditkit.results import AuditResult
from tests.test_report import MODELS, HEADINGS, zoo_results  # noqa: F401  (session fixture shared with the fast tests)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="browser tests need /usr/bin/chromium (`make browser`, or apt-get install "
                                       "chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.mark.parametrize("name", MODELS)
def test_report_renders_in_chromium(name: str, zoo_results: dict[str, AuditResult], browser,  # noqa: F811
                                    tmp_path: Path, artifacts_dir: Path) -> None:
    html_path = write_reports(zoo_results[name], tmp_path, formats=("html",))["html"]
    html = html_path.read_text()
    n_figures = int(re.search(r'<meta name="auditkit-figures" content="(\d+)">', html).group(1))
    assert n_figures >= 3

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("request", lambda req: requests.append(req.url))
    try:
        page.goto(html_path.as_uri())
        page.wait_for_load_state("load")
        # Every figure drawn (plotly draws asynchronously): its class, an SVG and its traces.
        page.wait_for_function(f"""() => document.querySelectorAll('.js-plotly-plot').length >= {n_figures}
            && Array.from(document.querySelectorAll('div.chart')).every(
                d => d.querySelector('svg.main-svg') && d.data && d.data.length > 0)""", timeout=60_000)
        # The decision first: the verdict banner and the top finding within the first 1,000 px.
        first_screen = page.evaluate("""() => {
            const v = document.querySelector('.verdict'), f = document.querySelector('#sec-summary li.finding');
            return {verdict: v ? v.getBoundingClientRect().bottom : null,
                    finding: f ? f.getBoundingClientRect().top : null,
                    status: v ? v.className : null}}""")
        assert first_screen["verdict"] is not None and first_screen["verdict"] < 1000, first_screen
        assert f"verdict-{zoo_results[name].verdict.status}" in first_screen["status"]
        if zoo_results[name].findings:
            assert first_screen["finding"] is not None and first_screen["finding"] < 1000, first_screen
        page.screenshot(path=str(artifacts_dir / f"report-{name}-first-screen.png"))
        # Every section with charts opens with one, drawn and visible (the rest collapsed).
        lead = page.evaluate("""() => Array.from(document.querySelectorAll('main > section')).map(s => ({
            id: s.id, charts: s.querySelectorAll('div.chart').length,
            visible: Array.from(s.querySelectorAll('div.chart')).filter(
                d => !d.closest('details:not([open])') && d.getBoundingClientRect().width > 100).length}))""")
        for sec in lead:
            if sec["charts"]:
                assert sec["visible"] >= 1, sec
        # Details are collapsed; opening them lays their charts out at full width.
        page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
        page.wait_for_timeout(300)
        drawn = page.evaluate("""() => Array.from(document.querySelectorAll('div.chart')).map(d => ({
            id: d.id, plot: d.classList.contains('js-plotly-plot'),
            svg: !!d.querySelector('svg.main-svg'), width: d.getBoundingClientRect().width,
            traces: d.data ? d.data.length : 0}))""")
        assert len(drawn) == n_figures == page.locator(".js-plotly-plot").count()
        for d in drawn:
            assert d["plot"] and d["svg"] and d["width"] > 100 and d["traces"] > 0, d
        headings = page.locator("h2").all_inner_texts()
        for title in HEADINGS[name]:
            assert any(h.startswith(title) for h in headings), (title, headings)
        page.screenshot(path=str(artifacts_dir / f"report-{name}.png"), full_page=True)
    finally:
        page.close()
    assert problems == []
    external = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    assert external == [], "the report must not touch the network"


COMMITTED = sorted((Path(__file__).resolve().parents[1] / "reports").glob("*/report.html"))


@pytest.mark.parametrize("html_path", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_reports_open_with_the_decision_first(html_path: Path, browser) -> None:  # noqa: F811
    """The zoo's committed reports (``make reports``) as a reader gets them: at most 1.5 MB, no
    console errors, every chart drawn, the verdict and the top finding within the first 1,000 px."""
    assert html_path.stat().st_size <= 1_500_000, html_path.stat().st_size
    result = AuditResult.read(html_path.parent / "results.json")  # validates against the typed models
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(html_path.as_uri())
        page.wait_for_function("() => document.body.getAttribute('data-charts') === 'drawn'", timeout=60_000)
        top = page.evaluate("""() => {
            const v = document.querySelector('.verdict'), f = document.querySelector('#sec-summary li.finding');
            return {verdict: v && v.getBoundingClientRect().bottom, cls: v && v.className,
                    finding: f && f.getBoundingClientRect().top}}""")
    finally:
        page.close()
    assert problems == []
    assert top["verdict"] is not None and top["verdict"] < 1000 and f"verdict-{result.verdict.status}" in top["cls"]
    if result.findings:
        assert top["finding"] is not None and top["finding"] < 1000, top
