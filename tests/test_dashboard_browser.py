"""End to end: the real dashboard server, started through ``auditkit.dashboard.launch`` on
loopback, driven in headless Chromium through Playwright.

Every wait is bounded; the server is only contacted on 127.0.0.1 and always terminated.
Screenshots of the sample explorer are kept in ``test-artifacts/dashboard.png`` and
``test-artifacts/dashboard-filters.png`` (the explorer's filters).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from auditkit import dashboard as dash
from auditkit.results import AuditResult
from tests.conftest import REPO
from tests.test_dashboard import dashboard_results

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
START_TIMEOUT = 120.0  # seconds for the server to answer its health check
WAIT_MS = 60_000  # one page update (reruns import torch/captum on first use)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} "
                                "(apt-get install chromium); the browser test needs it")


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dashboard_results(tmp_path_factory.mktemp("dashboard-results"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(results: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard on a free loopback port, via ``launch`` in a subprocess; yields its URL
    (one server for this module's tests: each opens its own browser session)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("dashboard-server") / "server.log"
    code = ("import sys; from pathlib import Path; from auditkit.dashboard import launch; "
            "sys.exit(launch([Path(p) for p in sys.argv[2:]], port=int(sys.argv[1])))")
    paths = [str(results["cnn-digits"]), str(results["lstm-reviews"])]
    with open(log, "w") as out:
        # Its own session, so that the streamlit grandchild can be stopped with it if need be.
        proc = subprocess.Popen([sys.executable, "-c", code, str(port), *paths], stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the dashboard exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not answer within {START_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()  # launch() passes SIGTERM on to streamlit
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        try:  # anything left in the session this test started (the streamlit server) goes too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_dashboard_in_a_real_browser(server, results, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    r = AuditResult.read(results["cnn-digits"])
    rec = r.sections["robustness"].data["threat_models"]["linf"]["records"]
    sample_index = r.sections["robustness"].data["sample_index"]
    # A clean-correct sample broken within the eps grid: robust at eps 0, broken at 0.3.
    row = next(i for i, (ok, n) in enumerate(zip(rec["clean_correct"], rec["min_norm"])) if ok and n is not None and n <= 0.3)
    test_index = sample_index[row]
    page_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(server + "/", timeout=WAIT_MS)
            main = page.locator('[data-testid="stMain"]')
            sidebar = page.locator('[data-testid="stSidebar"]')

            # Overview: both audits and their headline metrics.
            page.get_by_role("heading", name="Audit overview").wait_for()
            main.locator('[data-testid="stMetric"]').first.wait_for()
            for label in ("cnn-digits", "lstm-reviews"):
                main.get_by_role("heading", name=label).wait_for()
            # expect() retries: the second audit's metrics may arrive a moment after its heading.
            expect(main.locator('[data-testid="stMetricLabel"]').get_by_text("Clean accuracy", exact=True)).to_have_count(2)
            main.locator(".js-plotly-plot").first.wait_for()

            # Sample explorer: switch model, sample and epsilon.
            sidebar.get_by_text("Sample explorer", exact=True).click()
            page.get_by_role("heading", name="Sample explorer").wait_for()

            def choose(label: str, typed: str) -> None:
                box = main.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
                box.click()
                page.keyboard.type(typed)
                page.keyboard.press("Enter")

            choose("Audit", "lstm-reviews")
            main.locator("span[title]").first.wait_for()  # highlighted tokens of a text sample
            choose("Audit", "cnn-digits")
            main.get_by_role("heading", name="Adversarial robustness").wait_for()
            verdict = main.locator('[data-testid="stAlert"]').first
            verdict.wait_for()
            before = verdict.inner_text()

            choose("Sample", f"test #{test_index} ")  # the verdicts below name this sample's own norm
            thumb = main.locator('[data-testid="stSlider"]').filter(has_text="ε").get_by_role("slider")
            thumb.focus()
            page.keyboard.press("Home")  # smallest eps: 0
            main.locator('[data-testid="stAlert"]').filter(has_text="robust at ε=0:").wait_for()
            at_zero = verdict.inner_text()
            thumb.focus()
            page.keyboard.press("End")  # largest eps: 0.3
            main.locator('[data-testid="stAlert"]').filter(has_text="broken at ε=0.3").wait_for()
            at_top = verdict.inner_text()
            assert len({before, at_zero, at_top}) >= 2 and at_zero != at_top
            assert f"{rec['min_norm'][row]:.4g}" in at_top
            main.locator(".js-plotly-plot").first.wait_for()
            page.wait_for_timeout(1500)  # let plotly finish drawing before the screenshot

            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
            page.screenshot(path=str(artifacts_dir / "dashboard.png"))
        finally:
            browser.close()
    assert page_errors == []


def test_explorer_filters_in_a_real_browser(server, results, artifacts_dir):
    """Misclassified samples, then samples broken at the smallest ε: the count and the sample
    list follow the filters; a screenshot shows them."""
    from playwright.sync_api import expect, sync_playwright

    audit = dash.make_audits([("x", results["cnn-digits"], AuditResult.read(results["cnn-digits"]))])[0]
    n = len(dash.sample_catalogue(audit))
    wrong = dash.filter_samples(audit, dash.FilterSpec(correctness="misclassified"))
    eps = min(e for e in audit.result.sections["robustness"].data["threat_models"]["linf"]["epsilons"] if e > 0)
    broken = dash.filter_samples(audit, dash.FilterSpec(robustness="broken", norm="linf", eps=eps))
    assert wrong and broken
    page_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(server + "/", timeout=WAIT_MS)
            main = page.locator('[data-testid="stMain"]')
            page.locator('[data-testid="stSidebar"]').get_by_text("Sample explorer", exact=True).click()
            page.get_by_role("heading", name="Sample explorer").wait_for()
            expect(main.get_by_text(f"{n} of {n} samples match the filters")).to_be_visible()

            main.locator('[data-testid="stRadio"]').filter(has_text="Clean prediction").get_by_text(
                "misclassified", exact=True).click()
            expect(main.get_by_text(f"{len(wrong)} of {n} samples match the filters")).to_be_visible()
            expect(main.get_by_role("combobox", name="Sample", exact=True)).to_have_value(
                dash.sample_option(audit, wrong[0]))

            main.locator('[data-testid="stRadio"]').filter(has_text="Clean prediction").get_by_text(
                "all", exact=True).click()
            thumb = main.locator('[data-testid="stSlider"]').filter(has_text="ε").get_by_role("slider")
            thumb.focus()
            page.keyboard.press("Home")  # eps 0
            page.keyboard.press("ArrowRight")  # the smallest positive eps
            main.locator('[data-testid="stRadio"]').filter(has_text="At ε").get_by_text("broken", exact=True).click()
            expect(main.get_by_text(f"{len(broken)} of {n} samples match the filters")).to_be_visible()
            main.locator('[data-testid="stAlert"]').filter(has_text=f"at ε={eps:g}").first.wait_for()
            page.wait_for_timeout(1000)  # let plotly finish drawing before the screenshot
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(artifacts_dir / "dashboard-filters.png"))
        finally:
            browser.close()
    assert page_errors == []


def test_launch_refuses_a_missing_results_file_before_starting():
    with pytest.raises(dash.DashboardError, match="does not exist"):
        dash.launch([Path("no/such/results.json")], port=_free_port())
