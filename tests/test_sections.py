"""Typed section payloads (auditkit.sections): every committed report validates, a wrong shape
fails loudly (at the scan boundary and on read), and the models own their derived facts: one
curve-point shape, THE headline point of each threat model, robust_at, the masking statement,
the "beats a random ranking" rule.

The payloads come from the committed zoo reports (real scans at the standard budget), so these
tests need no scan and run in about a second.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditkit.results import AuditResult, ResultsError, Section
from auditkit.scanning import checked_payload
from auditkit.sections import (
    PAYLOADS,
    PayloadError,
    PerformanceData,
    Proportion,
    RobustnessData,
    dump_payload,
    middle_positive,
    validate_payload,
)
from auditkit.sections.explanation_quality import (
    BEATS_RANDOM_RULE,
    RHO_ABS_LABEL,
    RHO_SIGNED_LABEL,
    DeletionInsertion,
    ExplanationQualityData,
)
from auditkit.sections.robustness import Masking
from auditkit.stats import wilson_interval
from tests.conftest import REPO

REPORTS = sorted((REPO / "reports").glob("*/results.json"))


def committed(name: str) -> dict[str, Any]:
    """The raw results dict of a committed zoo report."""
    return json.loads((REPO / "reports" / name / "results.json").read_text())


def data(name: str, section: str) -> dict[str, Any]:
    return copy.deepcopy(committed(name)["sections"][section]["data"])


def test_leaf_modules_do_not_import_torch() -> None:
    code = ("import sys, auditkit.results, auditkit.sections, auditkit.summary; "
            "bad = [m for m in ('torch', 'captum', 'foolbox', 'streamlit') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.parent.name)
def test_every_committed_report_validates(path: Path) -> None:
    doc = json.loads(path.read_text())
    checked = 0
    for name, section in doc["sections"].items():
        if section["status"] != "ok" or name not in PAYLOADS:
            continue
        model = validate_payload(name, section["data"])
        assert isinstance(model, PAYLOADS[name])
        # What is stored is what the model dumps: nothing is lost or added on the way.
        assert dump_payload(model) == section["data"], name
        checked += 1
    assert checked >= 2


def test_a_wrong_shape_fails_loudly_naming_the_field() -> None:
    perf = data("cnn-digits", "performance")
    perf["accuracy"] = {"value": "high", "ci_low": 0.1, "ci_high": 0.2, "n": 10}
    with pytest.raises(PayloadError, match=r"sections\.performance\.data\.accuracy\.value"):
        validate_payload("performance", perf)
    perf = data("cnn-digits", "performance")
    perf["accuracy_typo"] = perf.pop("accuracy")
    with pytest.raises(PayloadError, match="accuracy"):
        checked_payload("performance", perf)  # the scan's boundary: the section fails, naming it
    # Unknown sections (plugins) stay plain dicts.
    assert checked_payload("my-plugin", {"anything": [1, 2]}) == {"anything": [1, 2]}
    assert validate_payload("my-plugin", {"x": 1}) is None
    # A check may return its model: it is stored as the JSON the model dumps.
    model = PerformanceData.model_validate(data("fraud-mlp", "performance"))
    assert checked_payload("performance", model) == data("fraud-mlp", "performance")


def test_results_files_are_validated_on_read(tmp_path: Path) -> None:
    doc = committed("lstm-reviews")
    doc["schema_version"] = "2.0"
    doc.setdefault("verdict", {"status": "pass", "reasons": []})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    result = AuditResult.read(path)
    rob = result.payload("robustness")
    assert isinstance(rob, RobustnessData) and rob.text is not None
    assert result.payload("gan") is None  # skipped there: no payload
    assert result.payload("no-such-section") is None
    doc["sections"]["robustness"]["data"]["text"]["unconstrained"]["curve"][0]["k"] = "one"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"results\.json: field 'sections\.robustness\.data\.text\.unconstrained"
                                           r"\.curve\.0\.k'"):
        AuditResult.read(path)
    # A plugin's section is read as it is.
    doc = committed("lstm-reviews")
    doc.update(schema_version="2.0", verdict={"status": "pass", "reasons": []})
    doc["sections"]["my-plugin"] = {"name": "my-plugin", "status": "ok", "data": {"free": {"form": 1}}}
    path.write_text(json.dumps(doc))
    section = AuditResult.read(path).sections["my-plugin"]
    assert section.payload() is None and section.data == {"free": {"form": 1}}
    # A known section with a bad shape in memory raises when its payload is asked for.
    bad = Section(name="performance", data={"accuracy": "high"})
    with pytest.raises(PayloadError):
        bad.payload()


def test_proportion_intervals_come_from_scipy_and_match() -> None:
    for k, n in ((0, 16), (3, 16), (16, 16), (24, 225)):
        p = Proportion.wilson(k, n)
        assert (p.ci_low, p.ci_high) == pytest.approx(wilson_interval(k, n), abs=1e-12)
        assert p.value == pytest.approx(k / n) and p.n == n
    empty = Proportion.wilson(0, 0)
    assert empty.value is None and (empty.ci_low, empty.ci_high) == (0.0, 1.0)
    flipped = Proportion.wilson(3, 16).complement()
    assert flipped.value == pytest.approx(13 / 16)
    assert (flipped.ci_low, flipped.ci_high) == pytest.approx(wilson_interval(13, 16), abs=1e-12)


def test_norm_ball_curves_have_one_shape_and_one_headline() -> None:
    rob = RobustnessData.model_validate(data("cnn-digits", "robustness"))
    raw = data("cnn-digits", "robustness")["threat_models"]
    for norm, tm in raw.items():
        curve = rob.threat_model_curve(norm)
        assert curve is not None and [p.x for p in curve.points] == [p["eps"] for p in tm["curve"]]
        eps = middle_positive(tm["epsilons"])
        head = curve.headline
        assert head is not None and head.x == eps
        stored = next(p for p in tm["curve"] if p["eps"] == eps)
        assert head.robust.value == stored["robust_accuracy"] and head.robust.n == stored["n"]
        assert curve.headline_label == f"Robust accuracy ({'L∞' if norm == 'linf' else 'L2'}, ε = {eps:g})"
        assert head.source == f"sections.robustness.data.threat_models.{norm}.curve[{tm['curve'].index(stored)}]"
        # robust_at: the grid point, else the nearest evaluated point above (never overstating).
        assert curve.robust_at(eps) == head.robust
        between = (tm["curve"][1]["eps"] + tm["curve"][2]["eps"]) / 2
        point, exact = curve.lookup(between)
        assert not exact and point.x >= between
        assert point.x == min(p["eps"] for p in tm["fine_curve"] + tm["curve"] if p["eps"] >= between)
        assert curve.robust_at(max(tm["epsilons"]) * 2) is None


def test_tabular_evasion_is_normalised_explicitly() -> None:
    raw = data("fraud-mlp", "robustness")["tabular"]
    curve = RobustnessData.model_validate(data("fraud-mlp", "robustness")).curve("tabular")
    assert curve is not None and curve.headline_figure == "evasion" and not curve.higher_is_better
    for point, stored in zip(curve.points, raw["curve"]):
        assert point.x == stored["budget"] and point.evasion.value == stored["evasion"]["value"]
        assert point.robust.value == pytest.approx(1 - stored["evasion"]["value"])  # still detected
        assert point.robust.ci_low == pytest.approx(1 - stored["evasion"]["ci_high"])
    # THE headline budget: the smallest at which at least half of the caught cases evade (the
    # finding's rule), else the largest.
    expected = next((p for p in raw["curve"] if p["evasion"]["value"] >= 0.5), raw["curve"][-1])
    assert curve.headline.x == expected["budget"]
    assert curve.headline_value.value == expected["evasion"]["value"]
    assert curve.headline_label == f"Evasion of caught fraud (cost ≤ {expected['budget']:g})"
    assert "still detected" in curve.y_label and "1 − evasion" in curve.y_label


def test_text_and_discriminator_curves() -> None:
    rob = RobustnessData.model_validate(data("lstm-reviews", "robustness"))
    keys = [c.key for c in rob.curves()]
    assert keys == ["text", "text-unconstrained", "embedding"]
    text, upper, emb = rob.curves()
    stored = data("lstm-reviews", "robustness")["text"]["label_preserving"]["curve"]
    assert text.headline.x == stored[-1]["k"] == max(p["k"] for p in stored)  # the largest k
    assert text.headline_value.value == stored[-1]["robust_accuracy"]["value"]
    assert "label-preserving" in text.headline_label
    assert upper.headline is None and emb.headline is None  # an upper bound and a diagnostic: charts only
    gan = RobustnessData.model_validate(data("gan-digits", "robustness"))
    real, fake = gan.curves()
    eps = middle_positive(p["eps"] for p in data("gan-digits", "robustness")["discriminator"]["curve"])
    assert real.headline.x == fake.headline.x == eps
    assert real.headline_label == f"Real images still judged real (L∞, ε = {eps:g})"


def test_masking_statement_agrees_with_the_checklist() -> None:
    checks = data("cnn-digits", "robustness")["masking"]["checks"]
    clean = Masking.model_validate({"checks": checks, "suspected": False})
    assert clean.outcome == "clean" and clean.statement.startswith(f"All {len(checks)} gradient-masking checks passed")
    warned = copy.deepcopy(checks)
    warned[1]["status"] = "warn"
    m = Masking.model_validate({"checks": warned, "suspected": False})
    assert m.outcome == "warned" and "No gradient-masking check failed; 1 warned" in m.statement
    assert warned[1]["name"] in m.statement and "No sign" not in m.statement
    warned[2]["status"] = "fail"
    m = Masking.model_validate({"checks": warned, "suspected": False})
    assert m.outcome == "failed" and m.statement.startswith("1 gradient-masking check(s) failed")
    m = Masking.model_validate({"checks": warned, "suspected": True})
    assert m.outcome == "suspected" and m.statement.startswith("Gradient masking is suspected")
    assert m.tally == {"pass": len(checks) - 2, "warn": 1, "fail": 1, "skipped": 0}


def test_beats_random_is_a_stated_rule_on_the_win_rate() -> None:
    curves = data("cnn-digits", "explanation-quality")["deletion_insertion"]
    c = DeletionInsertion.model_validate(next(iter(curves.values())))
    c = c.model_copy(update={"deletion_win_rate": 0.48, "insertion_win_rate": 0.48})
    # Mean AUCs may still favour the method; at 48% of samples it does not beat a random ranking.
    assert not c.beats_random("deletion") and not c.beats_random("insertion") and c.no_better_than_random
    wins = c.wins("insertion")
    assert wins.n == c.n_samples and wins.value == pytest.approx(round(0.48 * c.n_samples) / c.n_samples)
    c = c.model_copy(update={"deletion_win_rate": 0.75})
    assert c.beats_random("deletion") and not c.no_better_than_random
    assert "more than half of the samples" in BEATS_RANDOM_RULE


def test_randomisation_labels_say_what_the_value_is() -> None:
    q = ExplanationQualityData.model_validate(data("lstm-reviews", "explanation-quality"))
    assert q.randomisation is not None
    # Spearman's rho of |maps| can be negative: it is never labelled |rho|.
    assert "|ρ|" not in RHO_ABS_LABEL and "|attribution|" in RHO_ABS_LABEL and "signed" in RHO_SIGNED_LABEL
    for r in q.randomisation.methods.values():
        assert r.passes == r.verdict.startswith("passes")
