"""What a scan prints when it is not talking to a terminal (a CI log, a script).

stderr (not a TTY) gets one plain line per check with its time and no escape codes; stdout gets
either the summary for people or, with ``--format json``, one JSON object built from the same
summary layer as every report; ``NO_COLOR`` leaves no colour codes anywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from auditkit.results import AuditResult
from auditkit.summary import summarize
from tests.conftest import run_cli, zoo_model_path

FLAGS = ["--budget", "quick", "--samples", "16", "--threads", "1", "--only", "performance,baselines"]


def test_json_summary_on_stdout_and_plain_progress_on_stderr(tmp_path: Path) -> None:
    proc = run_cli("scan", str(zoo_model_path("fraud-mlp")), "--out", str(tmp_path), *FLAGS, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # the whole of stdout is one JSON object
    s = summarize(AuditResult.read(tmp_path / "results.json"))
    assert doc["verdict"] == s.verdict.model_dump(mode="json")
    assert [(h["key"], h["display"]) for h in doc["headlines"]] == [(h.key, h.display) for h in s.headlines()]
    assert [f["title"] for f in doc["findings"]] == [f.title for f in s.findings]
    assert doc["results"] == str(tmp_path / "results.json")
    assert {Path(p).name for p in doc["files"]} >= {"results.json", "report.html", "summary.md", "junit.xml"}
    assert doc["gate"] is None
    # The log: no escape codes, no tqdm bars, each check one line with its time.
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert [re.sub(r"\(\d+\.\d s\).*", "(t)", line) for line in lines] == [
        "[1/2] performance: ok (t)", "[2/2] baselines: ok (t)"]
    assert "Warning" not in proc.stderr


def test_text_summary_honours_no_color_and_bad_format_is_refused(tmp_path: Path) -> None:
    proc = run_cli("scan", str(zoo_model_path("fraud-mlp")), "--out", str(tmp_path / "a"), *FLAGS, "--no-report",
                   env={"NO_COLOR": "1", "FORCE_COLOR": "", "TERM": "xterm-256color"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert "verdict: " in proc.stdout
    # fraud-mlp's high minority-recall finding comes with its next step.
    assert "high Catches only" in proc.stdout and "what to do: " in proc.stdout
    bad = run_cli("scan", str(zoo_model_path("fraud-mlp")), "--out", str(tmp_path / "b"), "--format", "yaml")
    assert bad.returncode == 2 and "--format must be text or json" in bad.stderr
    assert not (tmp_path / "b").exists()
