"""The CI gate: thresholds, policy files and their errors, per-model sections, paired regression
against a baseline, gradient masking.

One real scan (performance only) per module; other results are derived by editing its JSON
(flipping per-sample predictions, adding a robustness section built with the real
``EnsembleResult``), which is honest because the gate reads results only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import auditkit
from auditkit.attacks.ensemble import EnsembleResult
from auditkit.policy import (
    BaselineError,
    GateDecision,
    Policy,
    PolicyError,
    RegressionPolicy,
    Rule,
    gate,
    load_policy,
    robust_indicator,
)
from auditkit.results import AuditResult, ResultsError
from tests.conftest import zoo_model_path


@pytest.fixture(scope="module")
def result() -> AuditResult:
    return auditkit.scan(zoo_model_path("cnn-digits"), budget="quick", samples=32, progress=False,
                         only=["performance"])


def derive(result: AuditResult, edit: Callable[[dict[str, Any]], None]) -> AuditResult:
    """A copy of ``result`` with its JSON edited by ``edit``."""
    doc = copy.deepcopy(result.model_dump(mode="json"))
    edit(doc)
    return AuditResult.model_validate(doc)


def flip(result: AuditResult, to_wrong: int, to_right: int, seed: int = 0) -> AuditResult:
    """Flip ``to_wrong`` correct predictions to a wrong class and ``to_right`` wrong ones to the label."""

    def edit(doc: dict[str, Any]) -> None:
        perf = doc["sections"]["performance"]["data"]
        pred, labels = np.array(perf["predictions"]), np.array(perf["labels"])
        rng = np.random.default_rng(seed)
        right, wrong = np.flatnonzero(pred == labels), np.flatnonzero(pred != labels)
        assert to_right <= len(wrong), "not enough wrong predictions to flip"
        down = rng.choice(right, to_wrong, replace=False)
        up = rng.choice(wrong, to_right, replace=False)
        pred[down] = (labels[down] + 1) % 10
        pred[up] = labels[up]
        perf["predictions"] = pred.tolist()
        perf["accuracy"]["value"] = float((pred == labels).mean())

    return derive(result, edit)


def policy_file(tmp_path: Path, text: str, name: str = "auditkit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def outcome(decision: GateDecision, name: str):  # type: ignore[no-untyped-def]
    matches = [r for r in decision.rules if r.name == name]
    assert len(matches) == 1, [r.name for r in decision.rules]
    return matches[0]


# ----------------------------------------------------------------------------- thresholds
def test_thresholds_pass_and_fail_with_values(result: AuditResult, tmp_path: Path) -> None:
    acc = result.sections["performance"].data["accuracy"]["value"]
    ece = result.sections["performance"].data["calibration"]["ece"]
    ok = gate(result, policy_file(tmp_path, f"[gate]\nmin_clean_accuracy = {acc - 0.05}\nmax_ece = {ece + 0.05}\n"))
    assert ok.passed
    rule = outcome(ok, "min_clean_accuracy")
    assert rule.value == pytest.approx(acc) and f"{acc:.4g}" in rule.message and "95% CI" in rule.message

    bad = gate(result, policy_file(tmp_path, f"[gate]\nmin_clean_accuracy = {acc + 0.005:.4f}\nmax_ece = {ece / 2:.5f}\n"))
    assert not bad.passed and len(bad.failed) == 2
    rule = outcome(bad, "min_clean_accuracy")
    assert not rule.passed and "below the minimum" in rule.message and f"{acc:.4g}" in rule.message
    assert "above the maximum" in outcome(bad, "max_ece").message
    # The summary lists failures first, and the decision is plain JSON.
    lines = bad.summary().splitlines()
    assert lines[0].startswith("gate FAILED for cnn-digits: 2 of") and lines[1].lstrip().startswith("FAIL")
    assert json.loads(json.dumps(bad.to_dict()))["n_failed"] == 2
    assert "**FAIL**" in bad.to_markdown()


def test_rule_by_dotted_path_reads_results(result: AuditResult, tmp_path: Path) -> None:
    recall = result.sections["performance"].data["per_class"][3]["recall"]
    path = policy_file(tmp_path, f"""
[[gate.rule]]
name = "recall of 3"
metric = "sections.performance.data.per_class.3.recall"
min = {recall}
[[gate.rule]]
name = "accuracy object"
metric = "sections.performance.data.accuracy"
max = 0.5
""")
    decision = gate(result, path)
    assert outcome(decision, "recall of 3").passed and outcome(decision, "recall of 3").value == pytest.approx(recall)
    # A path ending at a {"value", ...} object reads its value.
    assert not outcome(decision, "accuracy object").passed


def test_missing_metric_fails_with_a_clear_message(result: AuditResult, tmp_path: Path) -> None:
    path = policy_file(tmp_path, """
[gate]
max_ig_completeness_p95 = 0.02
[[gate.robust_accuracy]]
norm = "linf"
eps = 0.1
min = 0.2
[[gate.rule]]
name = "pr-auc"
metric = "sections.performance.data.pr_auc.value"
min = 0.3
""")
    decision = gate(result, path)  # must not raise
    assert not decision.passed and len(decision.failed) == 3
    assert "'explanation-quality' check did not run" in outcome(decision, "max_ig_completeness_p95").message
    assert "'robustness' check did not run" in outcome(decision, "min robust accuracy linf eps=0.1").message
    msg = outcome(decision, "pr-auc").message
    assert "missing" in msg and "has no 'pr_auc'" in msg

    def skip(doc: dict[str, Any]) -> None:
        doc["sections"]["performance"] = {"name": "performance", "status": "skipped",
                                          "reason": "not applicable to task gan", "data": {}, "findings": []}

    skipped = gate(derive(result, skip), policy_file(tmp_path, "[gate]\nmin_clean_accuracy = 0.5\n"))
    rule = outcome(skipped, "min_clean_accuracy")
    assert not rule.passed and "skipped: not applicable to task gan" in rule.message


def test_gate_reads_a_results_folder(result: AuditResult, tmp_path: Path) -> None:
    result.write(tmp_path / "audit" / "results.json")
    decision = gate(tmp_path / "audit", Policy(rules=[Rule("acc", "sections.performance.data.accuracy.value", ">=", 0.5)]))
    assert decision.passed and decision.model == "cnn-digits"
    with pytest.raises(ResultsError, match="does not exist"):
        gate(tmp_path / "nowhere.json", Policy())


# --------------------------------------------------------------------------------- policy
@pytest.mark.parametrize("text, line, words", [
    ("[gate]\nmin_clean_accuracy = 0.9\nmax_ece = = 0.1\n", 3, "invalid TOML"),
    ("[gate]\nmax_ece = 0.1\n\nmin_clean_acuracy = 0.9\n", 4, "did you mean 'min_clean_accuracy'"),
    ("[gate]\nmax_ece = 0.1\nmin_clean_accuracy = \"0.9\"\n", 3, "must be a number, got str"),
    ("[gate]\nmin_clean_accuracy = 1.5\n", 2, "out of range"),
    ("[gate]\nmax_ece = 0.1\n[[gate.robust_accuracy]]\nnorm = \"linf\"\neps = 0.1\nmin = 0.2\n"
     "[[gate.robust_accuracy]]\nnorm = \"l3\"\neps = 0.1\nmin = 0.2\n", 8, "norm 'l3' is not one of"),
    ("[gate]\n[[gate.rule]]\nname = \"x\"\nmetric = \"sections.perfomance.data.accuracy.value\"\nmin = 0.1\n",
     4, "did you mean 'performance'"),
    ("[gate]\n[[gate.rule]]\nname = \"x\"\nmetric = \"accuracy\"\nmin = 0.1\n", 4, "not a dotted path"),
    ("[gate]\n[[gate.rule]]\nname = \"x\"\nmetric = \"sections.performance.data.accuracy.value\"\n", 2,
     "exactly one of 'min' or 'max'"),
    ("[gate.regression]\nmax_accuracy_drop = 0.01\nconfidence = 1.0\n", 3, "out of range"),
    ("[gate]\nmax_ece = 0.1\n[gate.models.\"cnn-digits\"]\nmax_ece = 0.2\nmin_clean_accurcy = 0.9\n", 5,
     "unknown key 'min_clean_accurcy' in [gate.models.cnn-digits]"),
    ("[gate]\nfail_on_gradient_masking = \"yes\"\n", 2, "true or false"),
    ("[gte]\nmax_ece = 0.1\n", 1, "unknown top-level key 'gte'"),
])
def test_policy_errors_name_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = policy_file(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert f"{path}, line {line}:" in message, message
    assert words in message, message
    assert "\n" not in message


def test_policy_file_problems(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match=r"no \[gate\] table"):
        load_policy(policy_file(tmp_path, "# nothing\n"))
    with pytest.raises(PolicyError, match=r"no \[tool.auditkit.gate\] table"):
        load_policy(policy_file(tmp_path, "[project]\nname = 'x'\n", "pyproject.toml"))


def test_policy_discovery(result: AuditResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_policy(search_from=tmp_path).rules == []  # nothing there: the default policy
    py = policy_file(tmp_path, "[project]\nname = 'demo'\n\n[tool.auditkit.gate]\nmin_clean_accuracy = 0.999\n"
                               "[tool.auditkit.gate.regression]\nmax_accuracy_drop = 0.02\n", "pyproject.toml")
    found = load_policy(search_from=tmp_path)
    assert found.source == str(py) and [r.name for r in found.rules] == ["min_clean_accuracy"]
    assert found.regression == RegressionPolicy(max_accuracy_drop=0.02)
    # gate() with no policy looks in the working directory.
    monkeypatch.chdir(tmp_path)
    decision = gate(result)
    assert not decision.passed and "pyproject.toml" in decision.policy
    # Errors in pyproject name its lines too.
    policy_file(tmp_path, "[project]\nname = 'demo'\n\n[tool.auditkit.gate]\nmax_ece = 'low'\n", "pyproject.toml")
    with pytest.raises(PolicyError, match=r"pyproject.toml, line 5: 'max_ece' must be a number"):
        load_policy()
    # auditkit.toml comes first.
    policy_file(tmp_path, "[gate]\nmax_ece = 0.5\n")
    assert load_policy(search_from=tmp_path).source.endswith("auditkit.toml")


def test_model_sections_override_by_name(result: AuditResult, tmp_path: Path) -> None:
    path = policy_file(tmp_path, """
[gate]
min_clean_accuracy = 0.999
max_ece = 0.5
fail_on_gradient_masking = true
[gate.models."cnn-digits"]
min_clean_accuracy = 0.9
fail_on_gradient_masking = false
[[gate.models."cnn-digits".rule]]
name = "digit 0 recall"
metric = "sections.performance.data.per_class.0.recall"
min = 0.9
[gate.models."fraud-mlp"]
min_clean_accuracy = 0.1
""")
    policy = load_policy(path)
    decision = gate(result, policy)
    assert decision.passed, decision.summary()
    assert [r.name for r in decision.rules] == ["min_clean_accuracy", "max_ece", "digit 0 recall"]
    assert outcome(decision, "min_clean_accuracy").threshold == 0.9
    assert 'gate.models.cnn-digits' in decision.policy
    # Another model's results get the global rules only.
    other = derive(result, lambda d: d["provenance"]["card"].update(name="something-else"))
    decision = gate(other, policy)
    assert not decision.passed and outcome(decision, "min_clean_accuracy").threshold == 0.999
    assert any(r.kind == "masking" for r in decision.rules)


def test_committed_zoo_policy_loads_and_passes(result: AuditResult) -> None:
    policy = load_policy(Path(__file__).resolve().parents[1] / "auditkit.toml")
    assert set(policy.models) >= {"cnn-digits", "fraud-mlp", "lstm-reviews", "gan-digits"}
    decision = gate(result, policy)
    failed = [r for r in decision.failed if "did not run" not in r.message]
    assert not failed, decision.summary()


# ----------------------------------------------------------------------------- regression
def test_regression_noise_passes(result: AuditResult) -> None:
    # 5 samples lost and 2 gained: a drop of 3/450 = 0.67 points, above a 0.2-point tolerance,
    # but McNemar's p = P(X >= 5 | 7 discordant) = 0.23: noise, not a regression.
    candidate = flip(result, to_wrong=5, to_right=2, seed=1)
    policy = Policy(regression=RegressionPolicy(max_accuracy_drop=0.002))
    rule = outcome(gate(candidate, policy, baseline=result), "regression: clean accuracy")
    assert rule.value is not None and rule.value > 0.002  # the drop exceeds the tolerance...
    assert rule.p_value == pytest.approx(29 / 128, rel=1e-6)  # ...but is not significant
    assert rule.passed and "not a significant drop" in rule.message
    for seed in range(5):  # a few flips both ways never fail the build
        assert gate(flip(result, 3, 3, seed), policy, baseline=result).passed


def test_regression_real_drop_fails_with_p_value(result: AuditResult) -> None:
    correct = int((np.array(result.sections["performance"].data["predictions"])
                   == np.array(result.sections["performance"].data["labels"])).sum())
    candidate = flip(result, to_wrong=correct // 10, to_right=0)
    policy = Policy(regression=RegressionPolicy(max_accuracy_drop=0.01, confidence=0.95))
    decision = gate(candidate, policy, baseline=result)
    rule = outcome(decision, "regression: clean accuracy")
    assert not decision.passed and not rule.passed and rule.kind == "regression"
    assert rule.p_value is not None and rule.p_value < 1e-6
    drop_points = (correct // 10) / 450 * 100
    base_acc = result.sections["performance"].data["accuracy"]["value"]
    assert f"{drop_points:.2f} points" in rule.message and f"{base_acc:.4f} (baseline)" in rule.message
    assert f"p={rule.p_value:.3g}" in rule.message
    # The same drop within a generous tolerance passes.
    assert gate(candidate, Policy(regression=RegressionPolicy(max_accuracy_drop=0.2)), baseline=result).passed


def test_regression_refuses_other_data(result: AuditResult, tmp_path: Path) -> None:
    other = derive(result, lambda d: d["provenance"].update(data_sha256="0" * 64))
    with pytest.raises(BaselineError, match="different data") as info:
        gate(result, Policy(), baseline=other)
    assert isinstance(info.value, ResultsError)  # the CLI maps it to exit code 2

    def fewer(doc: dict[str, Any]) -> None:
        perf = doc["sections"]["performance"]["data"]
        perf["labels"], perf["predictions"] = perf["labels"][:-1], perf["predictions"][:-1]

    with pytest.raises(BaselineError, match="other test samples"):
        gate(result, Policy(), baseline=derive(result, fewer))


# ----------------------------------------------------------------------- robustness, masking
def ensemble(min_norm: np.ndarray, labels: np.ndarray, clean_pred: np.ndarray) -> dict[str, Any]:
    """A threat-model dict in the real format (``EnsembleResult.to_dict``) from per-sample norms."""
    return EnsembleResult(
        norm="linf", epsilons=[0.0, 0.05, 0.1, 0.2], budget="quick", attacks=["fgsm"], bounds=(0.0, 1.0),
        seed=0, labels=labels, clean_pred=clean_pred, min_norm=min_norm, broken_by=[None] * len(labels),
        success={"fgsm": np.zeros((len(labels), 4), np.int8)}, attack_norm={"fgsm": min_norm},
        per_attack={"fgsm": {}},
    ).to_dict()


def with_robustness(result: AuditResult, min_norm: np.ndarray, masking: dict[str, Any] | None = None,
                    sample_index: list[int] | None = None) -> AuditResult:
    n = len(min_norm)
    labels = np.arange(n) % 10
    clean_pred = np.where(min_norm == 0, (labels + 1) % 10, labels)
    data = {"budget": "quick", "sample_index": sample_index or list(range(n)), "skipped": {"l2": "no epsilons"},
            "threat_models": {"linf": ensemble(min_norm, labels, clean_pred)},
            "masking": masking or {"checks": [{"name": "accuracy-monotone", "status": "pass", "evidence": "ok"}],
                                   "suspected": False}}

    def edit(doc: dict[str, Any]) -> None:
        doc["sections"]["robustness"] = {"name": "robustness", "status": "ok", "reason": None, "data": data,
                                         "findings": []}

    return derive(result, edit)


def norms(seed: int, n: int = 200) -> np.ndarray:
    """Per-sample smallest adversarial norms: 5% misclassified (0), 10% never broken (inf)."""
    rng = np.random.default_rng(seed)
    out = rng.uniform(0.01, 0.3, n)
    out[rng.choice(n, n // 20, replace=False)] = 0.0
    out[np.flatnonzero(out > 0)[: n // 10]] = np.inf
    return out


def test_robust_accuracy_rule_reads_the_curve(result: AuditResult, tmp_path: Path) -> None:
    res = with_robustness(result, norms(0))
    tm = res.sections["robustness"].data["threat_models"]["linf"]
    at_01 = next(p for p in tm["curve"] if p["eps"] == 0.1)["robust_accuracy"]
    path = policy_file(tmp_path, f"""
[[gate.robust_accuracy]]
norm = "linf"
eps = 0.1
min = {at_01}
[[gate.robust_accuracy]]
name = "between grid points"
norm = "linf"
eps = 0.13
min = 0.0
[[gate.robust_accuracy]]
name = "beyond the grid"
norm = "linf"
eps = 0.5
min = 0.0
[[gate.robust_accuracy]]
name = "l2"
norm = "l2"
eps = 0.5
min = 0.0
""")
    decision = gate(res, path)
    exact = outcome(decision, "min robust accuracy linf eps=0.1")
    assert exact.passed and exact.value == pytest.approx(at_01) and "curve point" in exact.message
    between = outcome(decision, "between grid points")
    above = min(p["eps"] for p in tm["fine_curve"] if p["eps"] >= 0.13)
    assert f"eps={above:.4g}" in between.message and "conservative" in between.message
    # The point above never overstates robustness at the asked eps.
    assert between.value is not None and between.value <= robust_indicator(tm, 0.13).mean()
    assert not outcome(decision, "beyond the grid").passed
    assert "not evaluated" in outcome(decision, "beyond the grid").message
    assert "l2 threat model was skipped: no epsilons" in outcome(decision, "l2").message


def test_robust_regression_is_paired(result: AuditResult) -> None:
    base_norms = norms(0)
    base = with_robustness(result, base_norms)
    policy = Policy(rules=[Rule("ra", "sections.robustness.data.threat_models.linf.curve", ">=", 0.0,
                                norm="linf", eps=0.1)],
                    regression=RegressionPolicy(max_robust_accuracy_drop=0.02))
    name = "regression: robust accuracy linf eps=0.1"
    assert outcome(gate(base, policy, baseline=base), name).passed
    # Half of the samples robust at 0.1 now break at 0.05: a real, significant drop.
    weaker = base_norms.copy()
    robust = np.flatnonzero(robust_indicator(base.sections["robustness"].data["threat_models"]["linf"], 0.1))
    weaker[robust[::2]] = 0.05
    rule = outcome(gate(with_robustness(result, weaker), policy, baseline=base), name)
    assert not rule.passed and rule.p_value is not None and rule.p_value < 0.001 and "regression:" in rule.message
    with pytest.raises(BaselineError, match="other test samples"):
        gate(with_robustness(result, base_norms, sample_index=list(range(1, 201))), policy, baseline=base)


def test_gradient_masking_fails_the_gate(result: AuditResult) -> None:
    masking = {"checks": [
        {"name": "accuracy-monotone", "status": "pass", "evidence": "curve never rises"},
        {"name": "black-box-vs-white-box", "status": "fail", "evidence": "square broke 9 samples PGD left robust"},
        {"name": "zero-gradients", "status": "warn", "evidence": "2% zero gradients"},
    ], "suspected": True}
    res = with_robustness(result, norms(0), masking)
    decision = gate(res, Policy())
    rule = outcome(decision, "gradient masking")
    assert not decision.passed and rule.kind == "masking"
    assert "black-box-vs-white-box: square broke 9 samples PGD left robust" in rule.message
    assert "accuracy-monotone" not in rule.message
    assert gate(res, Policy(fail_on_masking=False)).passed
    # Warnings alone pass, and are reported.
    masking["checks"][1]["status"], masking["suspected"] = "pass", False
    rule = outcome(gate(with_robustness(result, norms(0), masking), Policy()), "gradient masking")
    assert rule.passed and "zero-gradients" in rule.message


def test_regression_needs_predictions_in_the_baseline(result: AuditResult) -> None:
    def skip(doc: dict[str, Any]) -> None:
        doc["sections"]["performance"] = {"name": "performance", "status": "skipped",
                                          "reason": "not applicable to task gan", "data": {}, "findings": []}

    skipped = derive(result, skip)
    with pytest.raises(BaselineError, match="no performance predictions"):
        gate(result, Policy(), baseline=skipped)
    # The candidate lacking them fails its rule; neither having them (a GAN) is nothing to compare.
    assert "cannot compare" in outcome(gate(skipped, Policy(), baseline=result), "regression: clean accuracy").message
    rule = outcome(gate(skipped, Policy(), baseline=skipped), "regression: clean accuracy")
    assert rule.passed and rule.message.startswith("not checked")
