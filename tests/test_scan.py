"""`auditkit scan` end to end: every zoo model through the real CLI, determinism, Python API,
bounded memory on large tabular data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import auditkit
from auditkit.results import AuditResult, strip_timings
from tests.conftest import REPO, run_cli, zoo_model_path

EXPECTED = {
    "cnn-digits": {"performance", "attributions", "explanation-quality", "robustness", "baselines"},
    "lstm-reviews": {"performance", "attributions", "explanation-quality", "robustness", "baselines"},
    "fraud-mlp": {"performance", "attributions", "explanation-quality", "robustness", "baselines"},
    "gan-digits": {"gan", "robustness"},
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_cli_scan_of_each_zoo_model(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("scan", str(zoo_model_path(name)), "--out", str(out), "--budget", "quick", "--samples", "32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = AuditResult.read(out / "results.json")
    ok = {n for n, s in result.sections.items() if s.status == "ok"}
    assert EXPECTED[name] <= ok, {n: s.reason for n, s in result.sections.items()}
    not_run = {n: s.reason for n, s in result.sections.items() if s.status != "ok"}
    assert all(not_run.values()), "a check that did not run must say why"
    assert result.provenance.model_sha256 and result.provenance.data_sha256
    assert result.provenance.card["name"] == name
    assert "results:" in proc.stdout  # the summary table names the file
    # Progress without --quiet: one plain line per check (stderr is not a terminal here).
    assert f"[1/{len(result.sections)}] performance:" in proc.stderr and "\x1b[" not in proc.stderr
    json.loads((out / "results.json").read_text())  # plain JSON (no NaN tokens)
    assert "NaN" not in (out / "results.json").read_text()
    for report in ("report.html", "summary.md", "junit.xml"):
        assert (out / report).stat().st_size > 0, report


def test_same_inputs_and_seed_give_the_same_json() -> None:
    kwargs = dict(samples=24, seed=3, budget="quick", progress=False)
    a = auditkit.scan(zoo_model_path("cnn-digits"), **kwargs)
    b = auditkit.scan(zoo_model_path("cnn-digits"), **kwargs)
    da, db = strip_timings(json.loads(a.to_json())), strip_timings(json.loads(b.to_json()))
    assert da == db
    c = auditkit.scan(zoo_model_path("cnn-digits"), **{**kwargs, "seed": 4})
    assert strip_timings(json.loads(c.to_json())) != da  # the seed matters


def test_python_api_returns_results_with_confidence_intervals(tmp_path: Path) -> None:
    result = auditkit.scan(str(zoo_model_path("fraud-mlp")), samples=32, budget="quick", progress=False,
                           only=["performance"], out=tmp_path)
    perf = result.sections["performance"].data
    acc = perf["accuracy"]
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"] and acc["n"] == 15000
    assert perf["pr_auc"]["value"] > 0.2 and perf["roc_auc"]["ci_low"] > 0.85
    assert perf["prevalence"] == pytest.approx(0.015)
    assert AuditResult.read(tmp_path / "results.json") == result


def test_only_and_skip_and_unknown_checks(tmp_path: Path) -> None:
    result = auditkit.scan(zoo_model_path("cnn-digits"), samples=8, budget="quick", progress=False,
                           skip=["explanation-quality", "attributions"])
    assert "explanation-quality" not in result.sections and "performance" in result.sections
    proc = run_cli("scan", str(zoo_model_path("cnn-digits")), "--only", "nonsense", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 2 and "unknown check" in proc.stderr


def test_20k_tabular_rows_scan_with_bounded_memory(tmp_path: Path) -> None:
    """80k simulated rows give a 20k-row test split; the scan batches, so memory stays bounded."""
    script = f"""
import resource, auditkit
r = auditkit.scan({str(zoo_model_path('fraud-mlp'))!r}, data="fraud?rows=80000", samples=64,
                  budget="quick", progress=False, only=["performance", "attributions"])
print(r.sections["performance"].data["accuracy"]["n"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, max_rss_kib = map(int, proc.stdout.split())
    assert n == 20000
    # torch alone takes ~0.5 GiB; 20k rows x 11 features are tiny: anything near 2 GiB means
    # something materialised per-sample work for the whole split.
    assert max_rss_kib < 2 * 1024 * 1024, f"peak RSS {max_rss_kib / 1024:.0f} MiB"
