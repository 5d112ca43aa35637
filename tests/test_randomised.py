"""Randomised models get the EOT protocol; an attack that raises never ends a scan nor raises a
robust-accuracy figure unflagged (DESIGN.md §7, issue 11).

The randomised model is the zoo's digits CNN behind Gaussian input noise at inference
(``tests.randomised_models.NoisyCNN``, sigma 0.2). Attacks made to fail are registered for the
duration of a test only (``monkeypatch`` on the registry), and run through the real ensemble,
the real robustness check and the real ``auditkit.scan`` / CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import auditkit
from auditkit.attacks import registry
from auditkit.attacks.common import EOT, is_adversarial, predict, vote_fooled, vote_prediction
from auditkit.attacks.ensemble import BUDGETS, EOT_ATTACKS, ERROR, eot_protocol, run_ensemble
from auditkit.attacks.masking import forward_determinism, masking_checks
from auditkit.attacks.apgd import APGD
from auditkit.loading import load_model
from auditkit.results import AuditResult, to_jsonable
from tests.conftest import run_cli, zoo_model_path
from tests.randomised_models import NoisyCNN

torch.set_num_threads(1)

BOUNDS = (0.0, 1.0)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, Tensor, Tensor]:
    """The zoo's (deterministic) digits CNN and its first 16 test samples."""
    from auditkit.data import load_data

    model = load_model(zoo_model_path("cnn-digits"))
    data = load_data(model.card.dataset, card=model.card)
    return model.module.eval(), torch.as_tensor(data.x_test[:16]), torch.as_tensor(data.y_test[:16])


@pytest.fixture(scope="module")
def noisy(digits) -> nn.Module:
    model, _, _ = digits
    net = NoisyCNN(sigma=0.2)
    net.load_state_dict(model.state_dict())
    return net.eval()


class Flaky(nn.Module):
    """On each forward, each sample's answer is replaced by a wrong class with probability 0.15:
    one forward often says "misclassified", a majority of 20 almost never does."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        wrong = (logits.argmax(1) + 1) % logits.shape[1]
        flip = torch.rand(len(x), device=x.device) < 0.15
        bump = nn.functional.one_hot(wrong, logits.shape[1]) * 1e3 * flip[:, None]
        return logits + bump


def _raising_runner(exc: type[BaseException], when=lambda eps, start_row: True):
    def run(model, x, y, eps, bounds, seed, **settings):
        if when(eps, seed):
            raise exc("deliberate failure for the test")
        return x.clone(), None

    return run


def _register(monkeypatch, name: str, runner, kind: str = "fixed-eps", norm: str = "linf") -> None:
    spec = registry.AttackSpec(name, kind, norm, "gradient", "auditkit", "test attack that raises",
                               {b: {} for b in registry.BUDGET_NAMES}, runner)
    monkeypatch.setitem(registry._ATTACKS, name, spec)  # removed again after the test


# ----------------------------------------------------------------------------- decisions


def test_majority_vote_ties_count_against_the_model() -> None:
    y = torch.tensor([0, 0, 1, 2])
    counts = torch.tensor([[11, 9, 0], [10, 10, 0], [5, 6, 9], [0, 0, 20]])
    assert vote_fooled(counts, y).tolist() == [False, True, True, False]
    pred = vote_prediction(counts, y)
    assert pred.tolist() == [0, 1, 2, 2]
    assert torch.equal(pred != y, vote_fooled(counts, y))


def test_one_lucky_forward_decides_nothing_under_eot(digits) -> None:
    model, x, y = digits
    flaky = Flaky(model).eval()
    torch.manual_seed(0)
    assert bool(is_adversarial(flaky, x, y).any())  # one forward: some "misclassified" by luck
    assert not bool(is_adversarial(flaky, x, y, votes=20).any())  # the majority of 20 is right
    assert torch.equal(predict(flaky, x, y, votes=20), y)
    # APGD under EOT at eps 0 (no perturbation possible) finds nothing; without EOT its
    # single-forward success test reports lucky draws as adversarial points.
    torch.manual_seed(0)
    assert not bool(APGD("linf", n_iter=3, eot_iter=20).run(flaky, x, y, eps=0.0).success.any())
    torch.manual_seed(0)
    assert bool(APGD("linf", n_iter=3).run(flaky, x, y, eps=0.0).success.any())


def test_forward_determinism_probe(digits, noisy) -> None:
    model, x, _ = digits
    det = forward_determinism(model, x)
    assert det["deterministic"] and det["max_abs_logit_diff"] == 0.0 and det["forwards"] == 5
    rnd = forward_determinism(noisy, x)
    assert not rnd["deterministic"] and rnd["max_abs_logit_diff"] > rnd["tolerance"] > 0
    assert rnd["n"] == 16 and 0 <= rnd["n_prediction_changed"] <= 16
    # Float noise of nondeterministic kernels is not randomness.
    tiny = nn.Sequential(model, _AddNoise(1e-9)).eval()
    assert forward_determinism(tiny, x)["deterministic"]
    assert model.training is False and noisy.training is False
    with pytest.raises(ValueError, match="forwards"):
        forward_determinism(model, x, forwards=1)


class _AddNoise(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, z: Tensor) -> Tensor:
        return z + self.scale * torch.randn_like(z)


# ----------------------------------------------------------------------------- EOT strength


def test_eot_is_no_weaker_than_single_pass_attacks_on_the_same_samples(noisy, digits) -> None:
    _, x, y = digits
    eps = [0.0, 0.05, 0.1]
    eot = eot_protocol("quick")
    torch.manual_seed(0)
    with_eot = run_ensemble(noisy, x, y, "linf", eps, budget="quick", eot=eot, batch_size=16)
    # The same attacks and the same majority-vote decisions, with one pass per gradient step.
    torch.manual_seed(0)
    single = run_ensemble(noisy, x, y, "linf", eps, budget="quick", attacks=EOT_ATTACKS["linf"],
                          eot=EOT(samples=1, votes=eot.votes), batch_size=16)
    ra_eot = [p["robust_accuracy"] for p in with_eot.curve()]
    ra_single = [p["robust_accuracy"] for p in single.curve()]
    assert all(a <= b for a, b in zip(ra_eot, ra_single)), (ra_eot, ra_single)
    assert sum(ra_eot) < sum(ra_single)  # strictly stronger somewhere
    assert ra_eot[0] == float(with_eot.clean_correct.mean())  # eps 0 is the clean (voted) accuracy

    # The records stay valid: EOT recorded, settings say it, min_norm rebuilds the curve.
    doc = json.loads(json.dumps(to_jsonable(with_eot.to_dict()), allow_nan=False))
    assert doc["attacks"] == ["apgd-ce-linf", "apgd-dlr-linf"] and doc["complete"] and doc["errors"] == []
    assert doc["eot"]["samples_per_gradient"] == 20 and doc["eot"]["votes_per_decision"] == 20
    for name, a in doc["per_attack"].items():
        assert a["settings"]["eot_iter"] == 20 and a["settings"]["n_restarts"] == 1 and a["error"] is None
        assert a["backward_passes"] >= 20 * a["n_attacked"]  # >= one EOT step per attacked sample
    norms = np.array([np.inf if v is None else v for v in doc["records"]["min_norm"]])
    correct = np.array(doc["records"]["clean_correct"])
    for p in doc["curve"]:
        e = p["eps"]
        assert p["n_robust"] == int((correct & ~(norms <= (e + doc["tolerance"] if e > 0 else 0.0))).sum())
        assert p["complete"] and p["missing_attacks"] == []
    assert single.per_attack["apgd-ce-linf"]["forward_passes"] < with_eot.per_attack["apgd-ce-linf"]["forward_passes"]


def test_eot_runs_are_reproducible_with_the_seed(noisy, digits) -> None:
    _, x, y = digits
    runs = []
    for _ in range(2):
        torch.manual_seed(3)  # the model's noise draws from torch's global generator
        res = run_ensemble(noisy, x[:6], y[:6], "l2", [0.0, 0.5], budget="quick", eot=EOT(samples=4, votes=5))
        doc = to_jsonable(res.to_dict())
        for a in doc["per_attack"].values():
            a.pop("seconds")
        runs.append(doc)
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="EOT"):
        run_ensemble(noisy, x[:6], y[:6], "l2", [0.0, 0.5], eot=20)
    with pytest.raises(ValueError, match="EOT votes"):
        EOT(samples=20, votes=0)


# ----------------------------------------------------------------------------- attacks that raise


def test_an_attack_that_raises_is_recorded_and_flags_the_curve(monkeypatch, digits) -> None:
    model, x, y = digits
    _register(monkeypatch, "raise-linf", _raising_runner(RuntimeError))
    eps = [0.0, 0.02, 0.05, 0.1]
    full = run_ensemble(model, x, y, "linf", eps, budget="quick", attacks=["fgsm", "raise-linf"], batch_size=8)
    alone = run_ensemble(model, x, y, "linf", eps, budget="quick", attacks=["fgsm"], batch_size=8)
    # The attack that raised changes nothing that was measured, and every point says it lacks it.
    assert np.array_equal(full.min_norm, alone.min_norm)
    err = full.per_attack["raise-linf"]
    assert err["error"] == "RuntimeError: deliberate failure for the test"
    assert err["robust_accuracy"][1:] == [None] * 3 and err["n_attacked"] == 0
    assert {e["eps"] for e in err["errors"]} == {0.02, 0.05, 0.1}
    curve = full.curve()
    assert curve[0]["complete"] and curve[0]["missing_attacks"] == []
    for p in curve[1:]:
        assert p["n_robust"] > 0 and not p["complete"] and p["missing_attacks"] == ["raise-linf"]
    fine = full.fine_curve()
    assert fine[0]["complete"] and not any(p["complete"] for p in fine[1:] if p["n_robust"])
    doc = json.loads(json.dumps(to_jsonable(full.to_dict()), allow_nan=False))
    assert doc["complete"] is False and {e["attack"] for e in doc["errors"]} == {"raise-linf"}
    assert len(doc["errors"]) == len(err["errors"]) >= 3  # one per failed batch (of 8) and eps
    rec = doc["records"]["per_attack"]
    assert "error_at_eps" in rec["raise-linf"] and "error_at_eps" not in rec["fgsm"]
    cells = np.array(rec["raise-linf"]["error_at_eps"])
    assert np.array_equal(cells, full.success["raise-linf"] == ERROR)
    # Exactly the cells left open by fgsm (clean-correct, not broken at that eps) lack it.
    assert np.array_equal(cells[:, 1:], np.stack([alone.robust_at(e) for e in eps[1:]], axis=1))
    assert [p["robust_accuracy"] for p in doc["curve"]] == [p["robust_accuracy"] for p in alone.curve()]


def test_a_failure_costs_only_its_batch_and_its_eps(monkeypatch, digits) -> None:
    model, x, y = digits
    # Raises only on the second batch of 8 (the runner's seed is seed + the batch offset) at eps
    # 0.1; it never fools anything (it returns x), so every clean-correct sample stays open.
    _register(monkeypatch, "raise-late-linf", _raising_runner(ValueError, lambda eps, seed: seed >= 8 and eps > 0.06))
    res = run_ensemble(model, x, y, "linf", [0.0, 0.05, 0.1], budget="quick", attacks=["raise-late-linf"], batch_size=8)
    correct = np.flatnonzero(res.clean_correct)
    assert correct.size > 8
    (error,) = res.per_attack["raise-late-linf"]["errors"]
    assert error["eps"] == 0.1 and error["samples"] == correct[8:16].tolist()
    assert error["error"] == "ValueError: deliberate failure for the test"
    succ = res.success["raise-late-linf"]
    assert (succ[correct[:8], 2] == 0).all() and (succ[correct[8:16], 2] == ERROR).all()
    # At 0.05 the first batch is known robust to it (failed at 0.1, nested balls); the batch it
    # raised on is attacked again.
    assert (succ[correct, 1] == 0).all()
    assert res.per_attack["raise-late-linf"]["n_attacked_at_eps"] == [0, correct.size - 8, 8]
    assert [p["complete"] for p in res.curve()] == [True, True, False]


def test_a_min_norm_attack_that_raises_and_foolbox_fmn_on_a_random_model(monkeypatch, digits, noisy) -> None:
    model, x, y = digits
    _register(monkeypatch, "raise-mn-linf", _raising_runner(ArithmeticError), kind="min-norm")
    res = run_ensemble(model, x, y, "linf", [0.0, 0.1], budget="quick", attacks=["fgsm", "raise-mn-linf"])
    assert res.per_attack["raise-mn-linf"]["errors"][0]["eps"] is None
    assert (res.success["raise-mn-linf"][res.clean_correct, 1] == ERROR).all()
    assert (res.success["raise-mn-linf"][:, 0] != ERROR).all()  # eps 0: the clean prediction decides
    # Foolbox's FMN asserts on a randomised model; without EOT the ensemble records it and goes on.
    torch.manual_seed(0)
    rnd = run_ensemble(noisy, x, y, "linf", [0.0, 0.1], budget="quick", attacks=["fmn-linf"])
    fmn = rnd.per_attack["fmn-linf"]
    assert fmn["error"] is not None and fmn["error"].startswith("AssertionError"), fmn["error"]
    assert not rnd.complete and not rnd.curve()[1]["complete"]


def test_keyboard_interrupt_is_never_caught(monkeypatch, digits) -> None:
    model, x, y = digits
    _register(monkeypatch, "interrupt-linf", _raising_runner(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run_ensemble(model, x, y, "linf", [0.0, 0.1], budget="quick", attacks=["interrupt-linf"])


class NoGradients(nn.Module):
    """Refuses to run with grad enabled: every gradient attack and gradient check raises."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError("this model cannot be differentiated")
        return self.model(x)


def test_everything_raising_still_gives_a_flagged_result(digits) -> None:
    model, x, y = digits
    broken = NoGradients(model).eval()
    ens = run_ensemble(broken, x, y, "linf", [0.0, 0.1], budget="quick")
    assert set(ens.per_attack) == set(BUDGETS["quick"]["linf"])
    assert all(a["error"] for a in ens.per_attack.values())
    point = ens.curve()[1]
    assert not point["complete"] and point["robust_accuracy"] == float(ens.clean_correct.mean())
    out = masking_checks(broken, x, y, {"linf": ens}, BOUNDS, budget="quick")
    checks = {c["name"]: c for c in out["checks"]}
    assert checks["no-zero-gradients"]["status"] == "skipped"
    assert "RuntimeError: this model cannot be differentiated" in checks["no-zero-gradients"]["evidence"]
    assert {"check": "no-zero-gradients", "norm": None,
            "error": "RuntimeError: this model cannot be differentiated"} in out["errors"]


def test_scan_with_a_failing_attack_is_incomplete_not_dead(monkeypatch, tmp_path: Path) -> None:
    _register(monkeypatch, "raise-linf", _raising_runner(RuntimeError))
    monkeypatch.setitem(BUDGETS["quick"], "linf", ["fgsm", "raise-linf"])
    model = load_model(zoo_model_path("cnn-digits"))
    model.card = model.card.model_copy(update={"epsilons": {"linf": [0.0, 0.1]}})
    result = auditkit.scan(model, samples=16, budget="quick", only=["robustness"], threads=1, progress=False,
                           out=tmp_path)
    section = result.sections["robustness"]
    assert section.status == "ok"
    assert section.incomplete and "raise-linf" in section.incomplete[0] and "upper bound" in section.incomplete[0]
    assert result.verdict.status == "incomplete"
    assert any("robustness incomplete" in r and "raise-linf" in r for r in result.verdict.reasons)
    saved = AuditResult.read(tmp_path / "results.json").sections["robustness"]
    tm = saved.data["threat_models"]["linf"]
    assert tm["per_attack"]["raise-linf"]["error"] == "RuntimeError: deliberate failure for the test"
    assert tm["curve"][1]["missing_attacks"] == ["raise-linf"] and not tm["complete"]
    assert saved.data["attack_errors"][0]["attack"] == "raise-linf"
    assert saved.data["determinism"]["deterministic"] and saved.data["eot"] is None
    flagged = [f for f in saved.findings if f.subject == "evaluation" and "raise-linf" in f.title]
    assert flagged and flagged[0].severity == "high" and flagged[0].why and flagged[0].action
    assert any(f.title.startswith("Robust accuracy at most") for f in saved.findings)


# ----------------------------------------------------------------------------- end to end


def test_randomised_model_scanned_end_to_end_with_eot(tmp_path: Path, noisy) -> None:
    zoo = load_model(zoo_model_path("cnn-digits"))
    weights = tmp_path / "noisy.pt"
    torch.save(zoo.module.state_dict(), weights)
    card = zoo.card.model_dump(mode="json")
    card.update(name="noisy-cnn-digits", epsilons={"linf": [0.0, 0.1]})
    (tmp_path / "card.json").write_text(json.dumps(card))
    out = tmp_path / "out"
    proc = run_cli("scan", str(weights), "--card", str(tmp_path / "card.json"), "--arch",
                   "tests.randomised_models:NoisyCNN", "--budget", "quick", "--samples", "16", "--threads", "1",
                   "--only", "robustness", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rob = AuditResult.read(out / "results.json").sections["robustness"]
    assert rob.status == "ok" and not rob.incomplete
    d = rob.data
    assert d["determinism"]["deterministic"] is False
    assert d["eot"]["samples_per_gradient"] == 20 and d["eot"]["attacks"]["linf"] == EOT_ATTACKS["linf"]
    tm = d["threat_models"]["linf"]
    assert tm["eot"]["votes_per_decision"] == 20 and tm["complete"]
    assert all(a["settings"]["eot_iter"] == 20 for a in tm["per_attack"].values())
    randomised = [f for f in rob.findings if "randomised" in f.title]
    assert randomised and randomised[0].evidence_path == "sections.robustness.data.determinism"
    assert randomised[0].why and randomised[0].action
    masking = {c["name"]: c for c in d["masking"]["checks"]}
    assert masking["deterministic-forward"]["status"] == "warn" and "EOT" in masking["deterministic-forward"]["evidence"]
    assert not d["masking"]["suspected"] and d["masking"]["errors"] == []

    # The same samples, attacks and decisions without EOT (one pass per gradient step).
    from auditkit.data import load_data

    data = load_data(zoo.card.dataset, card=zoo.card)
    idx = np.asarray(d["sample_index"])
    x, y = torch.as_tensor(data.x_test[idx]), torch.as_tensor(data.y_test[idx])
    torch.manual_seed(0)
    single = run_ensemble(noisy, x, y, "linf", tm["epsilons"], budget="quick", attacks=EOT_ATTACKS["linf"],
                          eot=EOT(samples=1, votes=20))
    ra_eot = [p["robust_accuracy"] for p in tm["curve"]]
    ra_single = [p["robust_accuracy"] for p in single.curve()]
    assert all(a <= b for a, b in zip(ra_eot[1:], ra_single[1:])), (ra_eot, ra_single)
