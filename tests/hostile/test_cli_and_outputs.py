"""Hostile input beyond model files: bad results and policies, bad CLI arguments, Ctrl-C, and
text crafted to break the outputs (HTML, Markdown, JUnit XML, the terminal).

Every case goes through the real CLI in a subprocess and asserts the documented exit code,
exactly one line on stderr, no traceback and nothing half-written (DESIGN.md §6).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, zoo_model_path

# Text that reaches every output: HTML comments and script tags, a JSON-breaking quote, markup
# for rich and Markdown, backticks, an ANSI escape and XML-forbidden control characters.
INJECTION = '<!--<script>window.__xss=1</script>"`x`[red]*b*\x1b[31m\x01\x0b'
INJECTED_CLASSES = ["<!--<script>", "</script><script>window.__xss=2</script>", "a`b``c", "[bold]x[/]",
                    "\x1b]0;title\x07", "é&amp;<img src=x onerror=window.__xss=3>", "six", "seven", "eight",
                    "nine"]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, case: str) -> str:
    """The documented exit code, one non-empty line on stderr, no traceback; returns the line."""
    assert proc.returncode == code, f"{case}: exit {proc.returncode} (wanted {code})\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case}: stderr has {len(lines)} lines:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr + proc.stdout, case
    assert "\x1b" not in proc.stderr, f"{case}: raw escape codes on stderr"
    return lines[0]


@pytest.fixture(scope="module")
def good_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real results.json of a quick, small scan (the base that the bad cases tamper with)."""
    out = tmp_path_factory.mktemp("good")
    proc = run_cli("scan", str(zoo_model_path("fraud-mlp")), "--out", str(out), "--budget", "quick",
                   "--samples", "16", "--threads", "1", "--only", "performance", "--no-report", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out / "results.json"


# --------------------------------------------------------------------------- results and policies

def _nested_json(depth: int) -> str:
    return '{"schema_version": "2.0", "x": ' + "[" * depth + "]" * depth + "}"


RESULTS_CASES = {
    "deeply nested JSON": lambda tmp, good: _write(tmp / "r.json", _nested_json(200_000)),
    "JSON that is a list": lambda tmp, good: _write(tmp / "r.json", "[]"),
    "not UTF-8": lambda tmp, good: _write_bytes(tmp / "r.json", b"\xff\xfe\x00garbage\x80"),
    "old schema 1.0": lambda tmp, good: _write(tmp / "r.json", json.dumps({**json.loads(good.read_text()),
                                                                             "schema_version": "1.0"})),
    "section data of the wrong type": lambda tmp, good: _write(tmp / "r.json", json.dumps(
        _tamper(good, lambda d: d["sections"]["performance"].update(data=5)))),
    "a verdict that is not one": lambda tmp, good: _write(tmp / "r.json", json.dumps(
        _tamper(good, lambda d: d["verdict"].update(status="great")))),
    "a FIFO": lambda tmp, good: _fifo(tmp / "r.json"),
    "a folder without results.json": lambda tmp, good: _mkdir(tmp / "r.json"),
    "a huge sparse file": lambda tmp, good: _sparse(tmp / "r.json", 600 * 2**20),
    "truncated JSON": lambda tmp, good: _write(tmp / "r.json", good.read_text()[: len(good.read_text()) // 2]),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _tamper(good: Path, change) -> dict:  # type: ignore[no-untyped-def]
    doc = json.loads(good.read_text())
    change(doc)
    return doc


@pytest.mark.parametrize("case", list(RESULTS_CASES))
@pytest.mark.parametrize("command", ["report", "gate"])
def test_bad_results_file(case: str, command: str, tmp_path: Path, good_results: Path) -> None:
    bad = RESULTS_CASES[case](tmp_path, good_results)
    out = tmp_path / "out"
    args = [command, str(bad)] + (["--out", str(out)] if command == "report" else ["--junit", str(out / "g.xml")])
    proc = run_cli(*args, timeout=60)
    line = assert_one_line_error(proc, 2, f"{command}: {case}")
    assert line.startswith("error:"), line
    assert not out.exists(), f"{case}: something was written"


POLICY_CASES = {
    "deeply nested TOML": "[gate]\nx = " + "[" * 50_000 + "]" * 50_000 + "\n",
    "not UTF-8": b"\xff\xfe[gate]\x80",
    "unknown key": "[gate]\nmin_clean_acuracy = 0.9\n",
    "threshold of the wrong type": "[gate]\nmax_ece = 'low'\n",
    "rule with no metric": "[gate]\n[[gate.rule]]\nname = 'x'\nmin = 0.1\n",
    "metric path into nowhere": "[gate]\n[[gate.rule]]\nname = 'x'\nmetric = 'sections.nope.data.x'\nmin = 0.1\n",
}


@pytest.mark.parametrize("case", list(POLICY_CASES))
def test_bad_policy(case: str, tmp_path: Path, good_results: Path) -> None:
    policy = tmp_path / "auditkit.toml"
    text = POLICY_CASES[case]
    policy.write_bytes(text if isinstance(text, bytes) else text.encode())
    proc = run_cli("gate", str(good_results), "--policy", str(policy), "--junit", str(tmp_path / "o" / "g.xml"),
                   timeout=60)
    assert_one_line_error(proc, 2, case)
    assert not (tmp_path / "o").exists()


def test_policy_that_is_a_fifo_or_folder(tmp_path: Path, good_results: Path) -> None:
    for policy in (_fifo(tmp_path / "fifo.toml"), _mkdir(tmp_path / "dir.toml")):
        proc = run_cli("gate", str(good_results), "--policy", str(policy), timeout=60)
        assert_one_line_error(proc, 2, str(policy))


# --------------------------------------------------------------------------- CLI arguments

def _scan(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("scan", str(zoo_model_path("fraud-mlp")), "--budget", "quick", "--samples", "8",
                   "--threads", "1", "--only", "performance", "--quiet", *extra, timeout=120)


def _out_is_a_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("keep me")
    return ["--out", str(tmp / "file")]


def _out_under_a_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("keep me")
    return ["--out", str(tmp / "file" / "sub")]


def _report_html_is_a_folder(tmp: Path) -> list[str]:
    (tmp / "out" / "report.html").mkdir(parents=True)
    return ["--out", str(tmp / "out")]


CLI_CASES: dict[str, tuple[object, int]] = {
    "--out is a file": (_out_is_a_file, 2),
    "--out under a file": (_out_under_a_file, 2),
    "OUT/report.html is a folder": (_report_html_is_a_folder, 2),
    "--seed -1": (["--seed", "-1"], 2),
    "--seed 2**70": (["--seed", str(2**70)], 2),
    "--seed not a number": (["--seed", "x"], 2),
    "--device cuda without CUDA": (["--device", "cuda"], 2),
    "--device bogus": (["--device", "bogus"], 2),
    "--device cuda:x": (["--device", "cuda:x"], 2),
    "--defense bogus": (["--defense", "bogus"], 2),
    "--samples 0": (["--samples", "0"], 2),
    "--budget bogus": (["--budget", "bogus"], 2),
    "--only bogus": (["--only", "bogus"], 2),
    "--threads 0": (["--threads", "0"], 2),
    "unknown option": (["--frobnicate"], 2),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_cli_arguments(case: str, tmp_path: Path) -> None:
    import torch

    make, code = CLI_CASES[case]
    if case == "--device cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    extra = make(tmp_path) if callable(make) else list(make)  # type: ignore[operator]
    if "--out" not in extra:
        extra += ["--out", str(tmp_path / "out")]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = _scan(tmp_path, *extra)
    assert_one_line_error(proc, code, case)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"{case}: wrote {set(after) - set(before)}"
    if (tmp_path / "file").exists():
        assert (tmp_path / "file").read_text() == "keep me"


def test_report_with_unknown_format(tmp_path: Path, good_results: Path) -> None:
    proc = run_cli("report", str(good_results), "--format", "pdf", "--out", str(tmp_path / "o"), timeout=60)
    assert_one_line_error(proc, 2, "report --format pdf")
    assert not (tmp_path / "o").exists()


def test_incomplete_audit_under_gate_exits_4(tmp_path: Path) -> None:
    """Leaving a core check out makes the audit incomplete: --gate exits 4, never 0 or 1."""
    proc = _scan(tmp_path, "--out", str(tmp_path / "out"), "--gate", "--no-report")
    assert proc.returncode == 4, proc.stderr
    line = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(line) == 1 and line[0].startswith("incomplete:") and "robustness" in line[0], proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["verdict"]["status"] == "incomplete" and doc["verdict"]["gate"] is not None


def test_gate_junit_leaves_the_scans_junit_alone(tmp_path: Path, good_results: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("report", str(good_results), "--out", str(out), "--format", "junit").returncode == 0
    scan_junit = (out / "junit.xml").read_text()
    proc = run_cli("gate", str(good_results), "--junit", str(out / "gate.xml"), timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    assert (out / "junit.xml").read_text() == scan_junit
    ET.parse(out / "gate.xml")


# --------------------------------------------------------------------------- Ctrl-C

def _sigint_as_in_a_terminal() -> None:
    # A job started in the background of a non-interactive shell inherits SIGINT ignored, and
    # so would this scan: give it the default disposition a terminal user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen_scan(out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "auditkit.cli", "scan", str(zoo_model_path("cnn-digits")),
                             "--out", str(out), "--budget", "quick", "--samples", "32", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            preexec_fn=_sigint_as_in_a_terminal)


def test_ctrl_c_during_start_up(tmp_path: Path) -> None:
    proc = _popen_scan(tmp_path / "out")
    time.sleep(0.8)  # importing typer/torch
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_during_the_scan_writes_nothing(tmp_path: Path) -> None:
    proc = _popen_scan(tmp_path / "out")
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait until the first check has finished
        seen.append(line)
        if line.startswith("[1/"):
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "nothing was written" in rest, stderr
    assert not (tmp_path / "out" / "results.json").exists()
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_ctrl_c_after_results_says_what_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The real CLI entry point in-process, interrupted while the reports are written."""
    import auditkit.report
    from auditkit import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(auditkit.report, "write_reports", interrupted)
    code = cli.main(["scan", str(zoo_model_path("fraud-mlp")), "--out", str(tmp_path / "out"), "--budget", "quick",
                     "--samples", "8", "--threads", "1", "--only", "performance", "--quiet"])
    err = capsys.readouterr().err
    assert code == 130
    assert "results.json" in err and "nothing was written" not in err, err
    assert (tmp_path / "out" / "results.json").exists()
    assert not (tmp_path / "out" / "report.html").exists()


# --------------------------------------------------------------------------- injection into outputs

@pytest.fixture(scope="module")
def injected_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real quick scan of cnn-digits' weights under a card whose every text field is hostile."""
    import torch

    from auditkit.loading import load_model

    tmp = tmp_path_factory.mktemp("inject")
    zoo = load_model(zoo_model_path("cnn-digits"), device="cpu")
    torch.save(zoo.module.state_dict(), tmp / "w.pt")
    card = json.loads(zoo.card.to_json())
    card.update(name="cnn " + INJECTION, description=INJECTION, class_names=INJECTED_CLASSES)
    (tmp / "card.json").write_text(json.dumps(card))
    policy = tmp / "auditkit.toml"
    policy.write_text('[gate]\n[[gate.rule]]\nname = "rule <!--<script>x\\u0001`[b]"\n'
                      'metric = "sections.performance.data.accuracy.value"\nmin = 0.99999\n')
    out = tmp / "out"
    proc = run_cli("scan", str(tmp / "w.pt"), "--arch", "cnn-digits", "--card", str(tmp / "card.json"),
                   "--out", str(out), "--budget", "quick", "--samples", "8", "--threads", "1",
                   "--skip", "explanation-quality,baselines", "--gate", "--policy", str(policy), timeout=600)
    assert proc.returncode == 1, proc.stderr  # the hostile rule fails the gate; nothing crashes
    assert "\x1b" not in proc.stdout and "\x01" not in proc.stdout, "raw control characters reached the terminal"
    return out


def test_injection_junit_is_well_formed(injected_scan: Path) -> None:
    root = ET.parse(injected_scan / "junit.xml").getroot()
    names = [case.get("name") for case in root.iter("testcase")]
    assert any("<!--<script>" in (n or "") for n in names)  # the rule name, escaped, not dropped


def test_injection_markdown_has_no_raw_html(injected_scan: Path) -> None:
    md = (injected_scan / "summary.md").read_text()
    assert "<script" not in md and "<!--" not in md and "<img" not in md
    assert "\x1b" not in md and "\x01" not in md
    for line in md.splitlines():  # every code span is closed on its line
        spans = re.sub(r"(`+)(.*?)\1", "", line)
        assert "`" not in spans.replace("\\`", ""), line


def test_injection_html_is_complete_and_runs_no_script(injected_scan: Path) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("browser tests need /usr/bin/chromium (make browser)")
    from playwright.sync_api import sync_playwright

    html = (injected_scan / "report.html").read_text()
    assert html.rstrip().endswith("</html>")
    n_figures = int(re.search(r'<meta name="auditkit-figures" content="(\d+)">', html).group(1))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto((injected_scan / "report.html").as_uri())
        page.wait_for_load_state("load")
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {n_figures}",
                               timeout=60_000)
        xss = page.evaluate("() => window.__xss")
        body_text = page.inner_text("body")
        browser.close()
    assert xss is None and dialogs == [], "a script from the data ran"
    assert "<!--<script>" in body_text  # shown as text, not parsed as markup
