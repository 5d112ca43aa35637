"""Actionable findings (issue 14): every finding a check emits says why it matters and what to do
next, points at its evidence in results.json, and is about the right subject; and the facts that
matter on the zoo models are stated as findings. Real quick scans of the zoo models:
cnn-digits and lstm-reviews are the report tests' scans (shared within a session), fraud-mlp is
scanned with its baselines (the dummy's figures live there), gan-digits with 128 samples (512
generated images: FID needs several samples per feature dimension).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import auditkit
from auditkit.attacks.check import COLLAPSE_FRACTION
from auditkit.generative.check import FID_RATIO_MEDIUM
from auditkit.loading import load_model
from auditkit.performance import ECE_BOUND, MINORITY_GAP
from auditkit.results import SEVERITIES, AuditResult
from tests.conftest import zoo_model_path
from tests.test_report import _scan_zoo, resolve

NAMES = ["cnn-digits", "lstm-reviews", "fraud-mlp", "gan-digits"]


@pytest.fixture(scope="module")
def scans() -> dict[str, AuditResult]:
    torch.set_num_threads(1)
    shared = _scan_zoo()
    own = {
        "fraud-mlp": auditkit.scan(zoo_model_path("fraud-mlp"), budget="quick", samples=16, progress=False,
                                   threads=1),
        "gan-digits": auditkit.scan(zoo_model_path("gan-digits"), budget="quick", samples=128, progress=False,
                                    threads=1),
    }
    return {"cnn-digits": shared["cnn-digits"], "lstm-reviews": shared["lstm-reviews"], **own}


@pytest.mark.parametrize("name", NAMES)
def test_every_finding_says_why_what_to_do_and_where(name: str, scans: dict[str, AuditResult]) -> None:
    result = scans[name]
    doc = result.model_dump(mode="json")
    assert result.findings
    for f in result.findings:
        assert f.severity in SEVERITIES and f.title and f.evidence
        assert f.why and len(f.why) > 30 and f.action and len(f.action) > 30, f.title
        assert f.evidence_path and f.evidence_path.startswith(f"sections.{f.section}."), f.title
        assert resolve(doc, f.evidence_path) is not None, (f.title, f.evidence_path)
        # Optional defenses never read as findings about the model, nor as high ones.
        if f.section == "defenses":
            assert f.subject == "defense" and f.severity != "high", f.title
    # Only findings about the model decide the verdict (auditkit.verdict).
    model = {f"{f.severity}: {f.title}" for f in result.findings if f.subject == "model"}
    assert all(r in model for r in result.verdict.reasons if r.startswith(("high: ", "medium: ")))


def test_cnn_digits_defense_findings_do_not_decide_the_verdict(scans: dict[str, AuditResult]) -> None:
    result = scans["cnn-digits"]
    defense = [f for f in result.findings if f.section == "defenses"]
    assert defense and all(f.subject == "defense" for f in defense)
    assert not any("defense" in r or "squeeze" in r for r in result.verdict.reasons)


def test_fraud_mlp_minority_recall_and_dummy_accuracy(scans: dict[str, AuditResult]) -> None:
    result = scans["fraud-mlp"]
    doc = result.model_dump(mode="json")
    perf = result.payload("performance")
    assert perf is not None
    minority = [f for f in result.findings if f.section == "performance" and "'fraud'" in f.title]
    assert len(minority) == 1
    f = minority[0]
    fraud = resolve(doc, f.evidence_path)
    assert fraud["class"] == "fraud" and fraud["recall"] < 0.2  # 24 of 225 caught
    assert fraud["recall_ci"]["ci_high"] < perf.accuracy.value - MINORITY_GAP
    assert f.severity == "high" and f.title.startswith("Catches only 10.7% of 'fraud'")
    assert "threshold" in f.action and "reweight" in f.action
    # The operating points the action quotes: the highest threshold reaching each recall.
    points = perf.operating_points
    assert points and [p.target_recall for p in points] == sorted(p.target_recall for p in points)
    for p in points:
        assert p.recall >= p.target_recall and 0 < p.precision <= 1 and p.flagged > 0
    assert [p.precision for p in points] == sorted((p.precision for p in points), reverse=True)
    # The dummy that always says 'legit' ties the network on accuracy (PR-AUC is the primary metric).
    dummy = [f for f in result.findings if f.section == "baselines" and f.title.startswith("Accuracy is no better")]
    assert len(dummy) == 1 and "'legit'" in dummy[0].title and dummy[0].severity == "medium"
    test = resolve(doc, dummy[0].evidence_path)
    assert test["test"] == "mcnemar-exact" and test["p_value"] >= 0.05
    assert "PR-AUC" in dummy[0].action
    assert result.verdict.status == "fail"
    # Balanced tasks get no minority finding.
    for name in ("cnn-digits", "lstm-reviews"):
        assert not any(g.title.startswith(("Catches only", "Only ")) for g in scans[name].findings), name


def test_gan_digits_fid_against_the_reference_and_a_weak_discriminator(scans: dict[str, AuditResult]) -> None:
    result = scans["gan-digits"]
    doc = result.model_dump(mode="json")
    fid = [f for f in result.findings if "real-vs-real" in f.title]
    assert len(fid) == 1 and fid[0].severity == "medium" and fid[0].subject == "model"
    quality = resolve(doc, fid[0].evidence_path)
    assert quality["n_samples"] == 512 and quality["fid_ratio"] > FID_RATIO_MEDIUM
    assert quality["fid"] > quality["fid_real_vs_real"] + 3 * quality["fid_real_vs_real_std"]
    weak = [f for f in result.findings if f.title.startswith("Weak discriminator")]
    assert len(weak) == 1
    realness = resolve(doc, weak[0].evidence_path)
    assert realness["real_judged_real"] < 0.75 and f"{realness['real_judged_real']:.0%}" in weak[0].title
    assert result.verdict.status == "attention"


def test_gan_fid_from_too_few_samples_is_an_evaluation_finding() -> None:
    result = auditkit.scan(zoo_model_path("gan-digits"), budget="quick", samples=16, progress=False, threads=1,
                           only=["gan"])
    few = [f for f in result.findings if f.title.startswith("Too few generated samples")]
    assert len(few) == 1 and few[0].subject == "evaluation" and "--samples 128" in few[0].action
    assert not any("real-vs-real" in f.title for f in result.findings)  # noise cannot be read as quality


def test_robustness_collapse_is_stated_where_it_is_not_the_headline(scans: dict[str, AuditResult]) -> None:
    """The collapse rule read back from the curves: a finding exactly when robustness collapses
    (upper 95% bound below half of clean) at an audited eps other than the headline one."""
    result = scans["cnn-digits"]
    doc = result.model_dump(mode="json")
    robustness = result.payload("robustness")
    seen = 0
    for norm in ("linf", "l2"):
        curve = doc["sections"]["robustness"]["data"]["threat_models"][norm]["curve"]
        clean = curve[0]["robust_accuracy"]
        x = robustness.threat_model_curve(norm).headline.x
        headline = [f for f in result.findings if f.title.endswith(f"at {norm} eps={x:g}")]
        assert len(headline) == 1 and headline[0].severity == "high" and "adversarial training" in headline[0].action
        first = next((k for k, p in enumerate(curve) if p["eps"] > 0 and p["ci_high"] < COLLAPSE_FRACTION * clean),
                     None)
        head = resolve(doc, headline[0].evidence_path)
        collapse = [f for f in result.findings if f.title.startswith(f"{'L∞' if norm == 'linf' else 'L2'} robustness "
                                                                      "collapses")]
        if first is None or curve[first]["eps"] == head["eps"]:
            assert not collapse
            continue
        seen += 1
        assert len(collapse) == 1 and resolve(doc, collapse[0].evidence_path) == curve[first]
        assert collapse[0].severity == ("high" if curve[first]["eps"] < head["eps"] else "medium")
    assert seen  # the quick scan's L2 curve collapses at eps 1, below the headline 1.5


class Tempered(nn.Module):
    """A real classifier with its logits divided by ``t``: same predictions, blunter confidences."""

    def __init__(self, module: nn.Module, t: float) -> None:
        super().__init__()
        self.module, self.t = module, t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) / self.t


def test_calibration_error_above_the_bound_asks_for_temperature_scaling() -> None:
    model = load_model(zoo_model_path("cnn-digits"))
    for t, expected in ((1.0, False), (6.0, True)):
        result = auditkit.scan(Tempered(model.module, t).eval(), "digits", card=model.card, only=["performance"],
                               progress=False, threads=1)
        ece = result.payload("performance").calibration.ece
        found = [f for f in result.findings if f.title.startswith("Poorly calibrated")]
        assert (ece > ECE_BOUND) == expected == bool(found), (t, ece)
        if found:
            assert "temperature scaling" in found[0].action
            assert resolve(result.model_dump(mode="json"), found[0].evidence_path)["ece"] == pytest.approx(ece)
