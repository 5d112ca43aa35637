"""The attack registry and the worst-case ensemble, on models whose answers are known.

A 2-class linear model has a closed-form minimal perturbation ``|margin| / ||w||_dual``
(inputs kept well inside the bounds, so the box never binds): minimum-norm attacks must land on
it, fixed-eps attacks must never claim a success it rules out, and the ensemble's curve must be
the closed-form curve. A small MLP on sklearn's digits checks the budgets end to end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from auditkit.attacks import (
    BUDGETS,
    UnknownAttackError,
    all_attacks,
    get_attack,
    list_attacks,
    norm_of,
    run_ensemble,
)
from auditkit.attacks.ensemble import broken_at
from auditkit.results import strip_timings

torch.set_num_threads(1)

DUAL = {"linf": 1, "l2": 2}  # dual norm order of each threat model
EPS = {"linf": [0.0, 0.01, 0.02, 0.035, 0.06], "l2": [0.0, 0.03, 0.06, 0.1, 0.15]}


# ----------------------------------------------------------------------------- fixtures


def _linear(seed: int = 0, d: int = 16, n: int = 24) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """2-class linear model, inputs in [0.35, 0.65], labels = predictions except 2 flipped."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=gen))
        # The boundary passes near the centre of the inputs, so the minima are small.
        w = model.weight[1] - model.weight[0]
        model.bias.copy_(torch.stack([torch.tensor(0.0), -0.5 * w.sum() + 0.01]))
    x = 0.5 + 0.15 * (2 * torch.rand(n, d, generator=gen) - 1)
    y = model(x).argmax(1)
    y[:2] = 1 - y[:2]  # two samples misclassified as they are
    return model.eval(), x, y, model(x).detach()


def _closed_form(model: nn.Linear, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Exact minimal perturbation norm ``[N]`` to flip the linear model's prediction."""
    w = model.weight[1] - model.weight[0]
    margin = x @ w + (model.bias[1] - model.bias[0])
    return (margin.abs() / w.norm(p=DUAL[norm])).detach()


@pytest.fixture(scope="module")
def linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    model, x, y, _ = _linear()
    cf = {norm: _closed_form(model, x, norm) for norm in ("linf", "l2")}
    # The optimal points stay inside [0, 1], so the closed form is the true minimum.
    w = (model.weight[1] - model.weight[0]).detach()
    assert float(cf["linf"].max()) < 0.35
    assert float((cf["l2"].max() * w.abs().max() / w.norm())) < 0.35
    return model, x, y, cf


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained for a second on sklearn digits (flattened, /16), and 36 test samples."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        for s in range(0, 1500, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[s : s + 100]), y[s : s + 100]).backward()
            opt.step()
    model.eval()
    xt, yt = x[1500:1536], y[1500:1536]
    assert (model(xt).argmax(1) == yt).float().mean() > 0.8  # it learned something
    return model, xt, yt


def _ref_robust(cf: torch.Tensor, correct: torch.Tensor, eps: float) -> np.ndarray:
    return (correct & (cf > eps)).numpy()


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_metadata() -> None:
    names = list_attacks()
    for expected in ("fgsm", "fgm-l2", "pgd-linf", "pgd-l2", "deepfool-linf", "deepfool-l2", "cw-l2",
                     "fmn-linf", "fmn-l2", "hsj-linf", "hsj-l2", "boundary-l2", "apgd-ce-linf",
                     "apgd-ce-l2", "apgd-dlr-linf", "apgd-t-linf", "apgd-t-l2", "square-linf", "square-l2"):
        assert expected in names
    assert set(list_attacks(family="decision-based")) == {"hsj-linf", "hsj-l2", "boundary-l2"}
    assert sorted(all_attacks()) == names
    assert get_attack("square-l2").family == "score-based" and get_attack("square-l2").kind == "fixed-eps"
    assert get_attack("fmn-l2").kind == "min-norm" and get_attack("fmn-l2").norm == "l2"
    for budget in BUDGETS:  # every budget list names registered attacks of its norm
        for norm, attack_names in BUDGETS[budget].items():
            assert all(get_attack(a).norm == norm for a in attack_names)
    with pytest.raises(UnknownAttackError, match="registered attacks: .*apgd-ce-linf.*fgsm"):
        get_attack("pgd")
    with pytest.raises(ValueError, match="unknown budget"):
        get_attack("fgsm").settings("huge")


@pytest.mark.parametrize("name", ["fmn-linf", "fmn-l2", "deepfool-linf", "deepfool-l2"])
def test_min_norm_attacks_find_the_closed_form_minimum(linear, name: str) -> None:
    model, x, y, cf = linear
    spec = get_attack(name)
    (out,) = spec.run(model, x, y, None, (0.0, 1.0), seed=0, budget="quick")
    correct = model(x).argmax(1) == y
    assert out.success.all()  # a linear 2-class model is always breakable
    found = norm_of(out.x_adv - x, spec.norm)
    assert (found[~correct] == 0).all()  # misclassified samples are not attacked
    ratio = found[correct] / cf[spec.norm][correct]
    # Never below the exact minimum (that would mean a wrong norm or a fake success) and
    # within 5% above it.
    assert ratio.min() >= 1 - 1e-4, ratio.min()
    if name.startswith("deepfool"):
        # DeepFool overshoots by 2% and adds 1e-4 to each step "for numerical stability".
        assert (found[correct] <= 1.05 * cf[spec.norm][correct] + 2e-4).all()
    else:
        assert ratio.max() <= 1.05, ratio.max()


def test_carlini_wagner_is_close_to_the_minimum(linear) -> None:
    model, x, y, cf = linear
    (out,) = get_attack("cw-l2").run(model, x, y, None, (0.0, 1.0), seed=0, budget="quick")
    correct = model(x).argmax(1) == y
    assert out.success.all()
    ratio = norm_of(out.x_adv - x, "l2")[correct] / cf["l2"][correct]
    # Foolbox's CW (Adam in tanh space) is coarse on the tiniest minima: median within 5%.
    assert ratio.min() >= 1 - 1e-4 and ratio.median() <= 1.05 and ratio.max() <= 1.3


@pytest.mark.parametrize("name", ["fgsm", "pgd-linf", "fgm-l2", "pgd-l2", "apgd-ce-linf", "apgd-dlr-l2",
                                  "apgd-t-linf", "apgd-t-l2", "square-linf", "square-l2"])
def test_fixed_eps_attacks_are_sound_and_gradient_ones_complete(linear, name: str) -> None:
    model, x, y, cf = linear
    spec = get_attack(name)
    eps = EPS[spec.norm][::-1]  # unsorted on purpose: outputs follow the given order
    outs = spec.run(model, x, y, eps, (0.0, 1.0), seed=0, budget="quick", batch_size=10)
    assert len(outs) == len(eps)
    correct = model(x).argmax(1) == y
    for e, out in zip(eps, outs):
        assert out.x_adv.shape == x.shape
        assert float(norm_of(out.x_adv - x, spec.norm).max()) <= e + 1e-5
        assert out.x_adv.min() >= 0 and out.x_adv.max() <= 1
        assert torch.equal(out.success, model(out.x_adv).argmax(1) != y)
        near = (cf[spec.norm] - e).abs() <= 0.05 * cf[spec.norm]
        # Sound: no success where the closed form says no adversarial exists within eps.
        assert not (out.success & correct & (cf[spec.norm] > e * 1.001)).any()
        if spec.family == "gradient":  # on a linear model gradient attacks are exact
            assert (out.success | near)[cf[spec.norm] < e].all()
    # Monotone in eps: a success at a smaller eps stays a success at a larger one.
    for smaller, larger in zip(outs[1:], outs[:-1]):
        assert (larger.success | ~smaller.success).all()


@pytest.mark.parametrize("name", ["hsj-l2", "boundary-l2", "hsj-linf"])
def test_decision_based_attacks_without_a_starting_point_fail_cleanly(name: str) -> None:
    class AlwaysZero(nn.Module):  # no input is ever classified as 1: no adversarial for label 0
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1) + 0 * x.sum(1, keepdim=True)

    x = torch.full((4, 8), 0.5)
    y = torch.tensor([0, 0, 1, 0])
    (out,) = get_attack(name).run(AlwaysZero(), x, y, None, (0.0, 1.0), seed=0, budget="quick")
    assert out.success.tolist() == [False, False, True, False]  # only the misclassified one
    assert torch.equal(out.x_adv, x)


@pytest.mark.parametrize("name", ["hsj-l2", "boundary-l2"])
def test_decision_based_attacks_find_valid_points(linear, name: str) -> None:
    model, x, y, cf = linear
    (out,) = get_attack(name).run(model, x, y, None, (0.0, 1.0), seed=0, budget="quick")
    correct = model(x).argmax(1) == y
    found = norm_of(out.x_adv - x, "l2")
    assert out.success.float().mean() > 0.9
    ok = out.success & correct
    assert (found[ok] >= cf["l2"][ok] * (1 - 1e-4)).all()  # never below the true minimum


# ----------------------------------------------------------------------------- ensemble


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_ensemble_curve_is_the_closed_form_curve(linear, norm: str) -> None:
    model, x, y, cf = linear
    res = run_ensemble(model, x, y, norm, EPS[norm], "quick", (0.0, 1.0), seed=0, batch_size=10)
    correct = torch.as_tensor(res.clean_correct)
    ref = cf[norm]
    assert np.array_equal(res.clean_correct, (model(x).argmax(1) == y).numpy())
    # Per sample: 0 when misclassified, else within 5% above the closed-form minimum.
    assert (res.min_norm[~res.clean_correct] == 0).all()
    ratio = res.min_norm[res.clean_correct] / ref[correct].numpy()
    assert ratio.min() >= 1 - 1e-4 and ratio.max() <= 1.05
    assert all(b is None for b, c in zip(res.broken_by, res.clean_correct) if not c)
    assert all(b in res.attacks for b, c in zip(res.broken_by, res.clean_correct) if c)
    fine = res.fine_curve()
    assert len(fine) == 50
    for point in res.curve() + fine:
        e = point["eps"]
        near = ((ref - e).abs() <= 0.05 * ref).numpy()
        robust = res.robust_at(e)
        expected = _ref_robust(ref, correct, e)
        assert np.array_equal(robust[~near], expected[~near]), e
        assert point["robust_accuracy"] == robust.mean() and point["n"] == len(x)
        assert point["ci_low"] <= point["robust_accuracy"] <= point["ci_high"]


def _non_increasing(values: list[float]) -> bool:
    return all(b <= a + 1e-12 for a, b in zip(values, values[1:]))


def test_ensemble_worst_case_dominates_each_attack(digits) -> None:
    model, x, y = digits
    eps = [0.0, 0.03, 0.06, 0.12]
    res = run_ensemble(model, x, y, "linf", eps, "quick", (0.0, 1.0), seed=0, batch_size=16)
    curve = [p["robust_accuracy"] for p in res.curve()]
    assert curve[0] == pytest.approx(res.clean_correct.mean())  # eps = 0: clean accuracy
    assert _non_increasing(curve) and _non_increasing([p["robust_accuracy"] for p in res.fine_curve()])
    assert curve[-1] < curve[0]  # the attacks do something on an undefended MLP
    for name in res.attacks:
        own = res.per_attack[name]["robust_accuracy"]
        cum = res.per_attack[name]["cumulative_robust_accuracy"]
        assert all(c <= o + 1e-12 for c, o in zip(curve, own) if o is not None)
        assert all(c >= r - 1e-12 for c, r in zip(cum, curve))
    cums = [res.per_attack[a]["cumulative_robust_accuracy"] for a in res.attacks]
    for before, after in zip(cums, cums[1:]):  # each attack can only lower the running figure
        assert all(b >= a for b, a in zip(before, after))
    # Each attack alone: the ensemble is at least as strong, per sample for the deterministic
    # attacks (FGSM, FMN) and in count (1-sample slack for PGD's random starts) for PGD.
    for name in res.attacks:
        alone = run_ensemble(model, x, y, "linf", eps, "quick", (0.0, 1.0), seed=0, batch_size=16, attacks=[name])
        for e in eps:
            if name == "pgd-linf":
                assert res.robust_at(e).sum() <= alone.robust_at(e).sum() + 1
            else:
                assert not (res.robust_at(e) & ~alone.robust_at(e)).any(), (name, e)
    # Fixed-eps successes lie within their eps; records say where each attack ran.
    for name in res.attacks:
        succ, own_norm = res.success[name], res.attack_norm[name]
        for k, e in enumerate(eps):
            hit = succ[:, k] == 1
            assert (own_norm[hit] <= e + res.tolerance).all()
            if e == 0:
                assert np.array_equal(hit, ~res.clean_correct)


def test_fixed_eps_attacks_skip_smaller_eps_where_they_already_failed(digits) -> None:
    """Nested balls: once an attack fails on a sample at some eps it is not run on that sample
    at any smaller eps (it is robust there); its records stay monotone in eps."""
    model, x, y = digits
    eps = [0.0, 0.02, 0.04, 0.06, 0.12]
    res = run_ensemble(model, x, y, "linf", eps, "quick", (0.0, 1.0), seed=0, batch_size=16)
    correct = res.clean_correct
    for name in res.attacks:
        if res.per_attack[name]["kind"] != "fixed-eps":
            continue
        succ = res.success[name][correct]
        attacked = res.per_attack[name]["n_attacked_at_eps"]
        for k in range(1, len(eps) - 1):
            # Run at eps k only on samples it did not fail on at eps k+1.
            assert attacked[k] <= int((succ[:, k + 1] != 0).sum()), (name, eps[k])
            # Failed at a larger eps: recorded robust (False), never broken, at this one.
            assert not ((succ[:, k + 1] == 0) & (succ[:, k] == 1)).any(), (name, eps[k])
        assert sum(attacked[1:]) < len(eps[1:]) * int(correct.sum())  # the skipping saves work


@pytest.mark.parametrize("norm,eps", [("linf", [0.0, 0.05, 0.1]), ("l2", [0.0, 0.5, 1.0])])
def test_standard_budget_at_least_as_strong_as_quick(digits, norm: str, eps: list[float]) -> None:
    model, x, y = digits
    quick = run_ensemble(model, x, y, norm, eps, "quick", (0.0, 1.0), seed=0, batch_size=36)
    standard = run_ensemble(model, x, y, norm, eps, "standard", (0.0, 1.0), seed=0, batch_size=36)
    assert standard.attacks == BUDGETS["standard"][norm]
    for e in eps:
        assert standard.robust_at(e).sum() <= quick.robust_at(e).sum() + 1, e
    assert standard.per_attack[f"square-{norm}"]["queries"] is not None
    assert standard.per_attack[f"apgd-ce-{norm}"]["backward_passes"] > 0
    # The gallery's adversarial inputs are misclassified, within eps and inside the bounds
    # (up to the 4-decimal rounding of the stored lists).
    assert standard.gallery
    for item in standard.gallery:
        adv = torch.tensor(item["adversarial"])
        clean = torch.tensor(item["clean"])
        assert torch.equal(clean, torch.round(x[item["index"]] * 1e4) / 1e4)
        assert item["adv_pred"] != item["label"] == item["clean_pred"]
        assert float(norm_of((adv - clean)[None], norm)[0]) <= item["eps"] + 1e-3
        assert adv.min() >= 0 and adv.max() <= 1
        assert item["norm"] <= item["eps"] + 1e-6


def test_records_round_trip_json_and_rebuild_the_curve(digits) -> None:
    model, x, y = digits
    eps = [0.0, 0.05, 0.1]
    res = run_ensemble(model, x, y, "linf", eps, "quick", (0.0, 1.0), seed=3, batch_size=36)
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    keys = {"norm", "epsilons", "budget", "attacks", "per_attack", "records", "curve", "fine_curve", "gallery"}
    assert set(doc) >= keys
    rec = doc["records"]
    assert rec["index"] == list(range(len(x)))
    assert set(rec["per_attack"]) == set(res.attacks)
    assert len(rec["per_attack"]["pgd-linf"]["success_at_eps"][0]) == len(eps)
    assert any(v is None for row in rec["per_attack"]["pgd-linf"]["success_at_eps"] for v in row)
    # The curve follows from the records alone.
    norms = np.array([np.inf if v is None else v for v in rec["min_norm"]])
    correct = np.array(rec["clean_correct"])
    for point in doc["curve"]:
        robust = correct & ~broken_at(norms, point["eps"], doc["tolerance"])
        assert robust.sum() == point["n_robust"] == round(point["robust_accuracy"] * point["n"])
    assert set(doc["per_attack"]["fgsm"]) >= {"kind", "family", "robust_accuracy", "seconds", "n_attacked"}


def test_same_seed_same_records_and_model_mode_restored(linear) -> None:
    model, x, y, _ = linear
    model.train()  # the ensemble attacks in eval mode and gives the mode back
    try:
        a = run_ensemble(model, x, y, "l2", EPS["l2"], "quick", (0.0, 1.0), seed=7, batch_size=8)
        assert model.training
        b = run_ensemble(model, x, y, "l2", EPS["l2"], "quick", (0.0, 1.0), seed=7, batch_size=8)
    finally:
        model.eval()
    assert strip_timings(a.to_dict()) == strip_timings(b.to_dict())


def test_bad_inputs_raise_clear_errors(linear) -> None:
    model, x, y, _ = linear
    with pytest.raises(UnknownAttackError, match="registered attacks:.*fmn-linf"):
        run_ensemble(model, x, y, "linf", [0.1], "quick", attacks=["nope"])
    with pytest.raises(ValueError, match="l2 attack but norm='linf'"):
        run_ensemble(model, x, y, "linf", [0.1], "quick", attacks=["fmn-l2"])
    with pytest.raises(ValueError, match="finite and >= 0"):
        run_ensemble(model, x, y, "linf", [0.1, -0.1], "quick")
    with pytest.raises(ValueError, match="epsilons is empty"):
        run_ensemble(model, x, y, "linf", [], "quick")
    with pytest.raises(ValueError, match="x is empty"):
        run_ensemble(model, x[:0], y[:0], "linf", [0.1], "quick")
    with pytest.raises(ValueError, match="unknown budget"):
        run_ensemble(model, x, y, "linf", [0.1], "fast")
    with pytest.raises(ValueError, match="unknown norm"):
        run_ensemble(model, x, y, "l1", [0.1], "quick")
    with pytest.raises(ValueError, match="outside bounds"):
        run_ensemble(model, x + 1.0, y, "linf", [0.1], "quick")
    with pytest.raises(ValueError, match="integer class labels"):
        run_ensemble(model, x, y.float(), "linf", [0.1], "quick")
    with pytest.raises(ValueError, match="non-empty eps_list"):
        get_attack("fgsm").run(model, x, y, [], (0.0, 1.0))


def test_attacks_leave_the_model_as_they_found_it() -> None:
    """No parameter gradients computed or left behind (foolbox calls loss.backward())."""
    import torch
    from torch import nn

    from auditkit.attacks.registry import get_attack

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    y = torch.zeros(8, dtype=torch.long)
    model[1].bias.requires_grad_(False)  # a user's own freezing must survive too
    for name in ("pgd-linf", "fmn-linf", "apgd-ce-linf"):
        get_attack(name).run(model, x, y, [0.1], (0.0, 1.0), 0, budget="quick")
        assert all(p.grad is None for p in model.parameters()), name
        assert model[1].weight.requires_grad and not model[1].bias.requires_grad, name
