"""Gradient-masking checks on small digits models whose masking is known by construction.

A healthy MLP must pass every check. The same network behind an input quantisation whose
gradient is exactly zero (``round(x * 16) / 16``: the identity on digits, whose pixels are
multiples of 1/16) must be flagged, and the standard ensemble must not be fooled by it: the
gradient attacks report it robust, Square breaks it. Logits scaled by 1e4 saturate the
cross-entropy: its gradient vanishes, and APGD-CE falls far behind APGD-DLR.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from auditkit.attacks import EnsembleResult, run_ensemble
from auditkit.attacks.masking import CHECK_NAMES, MASKING_SIGNATURES, masking_checks
from auditkit.results import to_jsonable

torch.set_num_threads(1)

EPS = [0.0, 0.05, 0.1, 0.2]
MID = 0.1
BOUNDS = (0.0, 1.0)


class Quantised(nn.Module):
    """Rounds inputs to multiples of 1/16 with no straight-through estimator: zero gradient."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 16) / 16)


class Scaled(nn.Module):
    """Logits times 1e4: cross-entropy saturates (softmax is exactly one-hot in float32)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e4 * self.model(x)


class Noisy(nn.Module):
    """Adds fresh Gaussian noise to the input on every forward, whatever the mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + 0.05 * torch.randn_like(x))


class AlwaysDropout(nn.Module):
    """Dropout that stays active in eval mode (``training=True`` hard-coded)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(nn.functional.dropout(x, 0.3, training=True))


def _digits(image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    return (x.view(-1, 1, 8, 8) if image else x), torch.tensor(data.target)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for s in range(0, 1500, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[s : s + 100]), y[s : s + 100]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained for a second on digits (flattened, /16) and 48 held-out samples."""
    x, y = _digits(image=False)
    torch.manual_seed(0)
    model = _train(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), x, y, epochs=20)
    xt, yt = x[1500:1548], y[1500:1548]
    assert (model(xt).argmax(1) == yt).float().mean() > 0.9
    return model, xt, yt


def _audit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: str, **kw) -> tuple[EnsembleResult, dict]:
    ens = run_ensemble(model, x, y, "linf", EPS, budget, BOUNDS, seed=0, batch_size=48, **kw)
    return ens, masking_checks(model, x, y, {"linf": ens}, BOUNDS, budget=budget, batch_size=48)


@pytest.fixture(scope="module")
def healthy(mlp) -> tuple[EnsembleResult, dict]:
    model, x, y = mlp
    return _audit(model, x, y, "standard")


@pytest.fixture(scope="module")
def masked(mlp) -> tuple[EnsembleResult, dict]:
    model, x, y = mlp
    return _audit(Quantised(model).eval(), x, y, "standard")


def _by_name(out: dict) -> dict[str, dict]:
    return {c["name"]: c for c in out["checks"]}


def _gradient_only_robust(ens: EnsembleResult, eps: float) -> float:
    """Robust accuracy counting only the white-box gradient attacks' records."""
    k = ens.epsilons.index(eps)
    broken = np.zeros(len(ens.labels), bool)
    for name in ens.attacks:
        if ens.per_attack[name]["family"] == "gradient":
            broken |= ens.success[name][:, k] == 1
    return float((ens.clean_correct & ~broken).mean())


# ----------------------------------------------------------------------------- healthy models


def test_healthy_model_passes_every_check(healthy) -> None:
    _, out = healthy
    checks = _by_name(out)
    assert list(checks) == list(CHECK_NAMES)
    assert not out["suspected"] and out["n_fail"] == 0, [c["evidence"] for c in out["checks"] if c["status"] == "fail"]
    assert all(c["status"] in ("pass", "warn") for c in out["checks"])
    # The figures behind the statuses: the large-eps attack reaches chance, more steps change little.
    large = checks["large-eps-reaches-chance"]["data"]["linf"]
    assert large["eps"] == 0.5 and large["accuracy"] <= large["chance"] and large["min_norm_missed"] == 0
    assert checks["more-steps-restarts-change-little"]["data"]["linf"]["drop_points"] <= 2.0
    assert checks["no-zero-gradients"]["data"]["n_zero"] == 0
    monotone = checks["monotone-in-eps"]["data"]["linf"]["n_robust"]
    assert monotone[0] > monotone[-1]  # the independent runs do break samples


def test_healthy_cnn_quick_budget_both_norms() -> None:
    x, y = _digits(image=True)
    model = _train(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)),
                   x, y, epochs=5)
    xt, yt = x[1500:1540], y[1500:1540]
    ens = {
        "linf": run_ensemble(model, xt, yt, "linf", EPS, "quick", BOUNDS, seed=1, batch_size=40),
        "l2": run_ensemble(model, xt, yt, "l2", [0.0, 0.5, 1.0], "quick", BOUNDS, seed=1, batch_size=40),
    }
    out = masking_checks(model, xt, yt, ens, BOUNDS, seed=1, budget="quick", batch_size=40)
    assert not out["suspected"] and out["n_fail"] == 0, [c["evidence"] for c in out["checks"] if c["status"] == "fail"]
    checks = _by_name(out)
    for name in CHECK_NAMES[3:]:
        assert set(checks[name]["data"]) == {"linf", "l2"}
        assert "[linf]" in checks[name]["evidence"] and "[l2]" in checks[name]["evidence"]
    # L2 large eps is half the diameter of the [0, 1]^64 box.
    assert checks["large-eps-reaches-chance"]["data"]["l2"]["eps"] == pytest.approx(4.0)
    # The quick ensemble has no black-box attack: Square ran here.
    assert checks["black-box-not-stronger"]["data"]["l2"]["ran_here"] is True


def test_black_box_first_is_resolved_by_a_white_box_run(mlp) -> None:
    """Square ahead of the gradient attacks: its successes were never tried white-box, so the
    check must run APGD-CE on them rather than call them black-box-only."""
    model, x, y = mlp
    _, out = _audit(model, x, y, "quick", attacks=["square-linf", "fgsm", "pgd-linf"])
    bb = _by_name(out)["black-box-not-stronger"]
    per_eps = bb["data"]["linf"]["per_eps"]
    assert bb["data"]["linf"]["ran_here"] is False
    n_black_box = sum(d["n_black_box"] for d in per_eps)
    assert n_black_box > 20  # Square did break samples first
    # APGD-CE breaks almost all of them too (a borderline sample may depend on its random start:
    # one is a warning, not a failure).
    assert bb["status"] != "fail" and sum(d["n_black_box_only"] for d in per_eps) <= 1


# ----------------------------------------------------------------------------- masked models


def test_masked_model_is_flagged_and_its_robustness_not_inflated(mlp, healthy, masked) -> None:
    model, x, y = mlp
    ens_h, _ = healthy
    ens_m, out = masked
    assert np.array_equal(ens_m.clean_pred, ens_h.clean_pred)  # quantising digits changes no prediction
    checks = _by_name(out)
    assert out["suspected"]
    for name in ("no-zero-gradients", "black-box-not-stronger", "large-eps-reaches-chance"):
        assert checks[name]["status"] == "fail", checks[name]["evidence"]
    assert checks["no-zero-gradients"]["data"]["n_zero"] == len(x)
    assert checks["large-eps-reaches-chance"]["data"]["linf"]["min_norm_missed"] == int(ens_m.clean_correct.sum())
    # The headline: the gradient attacks alone call the masked model robust; the ensemble's
    # worst case (thanks to Square) does not, and is no higher than the unmasked model's.
    grad_only = _gradient_only_robust(ens_m, MID)
    worst = float(ens_m.robust_at(MID).mean())
    worst_healthy = float(ens_h.robust_at(MID).mean())
    assert grad_only >= 0.85
    assert worst <= worst_healthy + 0.05
    assert worst <= grad_only - 0.3
    assert _gradient_only_robust(ens_h, MID) <= worst_healthy + 0.05  # no such gap when healthy
    bb = checks["black-box-not-stronger"]["data"]["linf"]["per_eps"]
    mid = next(d for d in bb if d["eps"] == MID)
    assert mid["n_black_box_only"] == round((grad_only - worst) * len(x))


def test_samples_no_gradient_reaches_get_the_full_second_runs(mlp, healthy, masked) -> None:
    # The min-norm attack found nothing on any sample of the masked model: every one of them is
    # in doubt at every eps, so where a short run leaves it robust it gets the long random-start
    # run (Square 1000 queries) instead of Square's 200 warm-started queries alone.
    ens_m, _ = masked
    ens_h, _ = healthy
    n_correct = int(ens_m.clean_correct.sum())
    for name in ("apgd-ce-linf", "apgd-t-linf", "square-linf"):
        assert ens_m.per_attack[name]["near_run"]["n_min_norm_found_nothing"] == n_correct
        assert ens_h.per_attack[name]["near_run"]["n_min_norm_found_nothing"] == 0
    square = ens_m.per_attack["square-linf"]
    assert sum(square["n_near_at_eps"]) > square["n_near_at_eps"][-1] > 0  # at several eps, not only the largest
    # The long runs are what bring the masked model's worst case down to the unmasked one's at
    # the largest eps (the short runs alone left 4 of 48 samples robust there on this model).
    assert ens_m.robust_at(EPS[-1]).mean() <= ens_h.robust_at(EPS[-1]).mean()


def test_quick_budget_without_black_box_runs_square_itself(mlp) -> None:
    model, x, y = mlp
    ens, out = _audit(Quantised(model).eval(), x, y, "quick")
    assert ens.robust_at(MID).mean() == ens.clean_correct.mean()  # the quick ensemble is fooled
    checks = _by_name(out)
    assert out["suspected"]
    bb = checks["black-box-not-stronger"]
    assert bb["status"] == "fail" and bb["data"]["linf"]["ran_here"] is True
    assert checks["random-noise-not-stronger"]["status"] in ("warn", "fail")
    # Same inputs and seed, same result.
    assert masking_checks(Quantised(model).eval(), x, y, {"linf": ens}, BOUNDS, budget="quick", batch_size=48) == out


def test_saturated_cross_entropy_is_flagged(mlp) -> None:
    model, x, y = mlp
    _, out = _audit(Scaled(model).eval(), x, y, "quick")
    checks = _by_name(out)
    assert out["suspected"]
    assert checks["no-zero-gradients"]["status"] == "fail"
    ce = checks["ce-and-margin-agree"]
    assert ce["status"] == "fail"
    assert ce["data"]["linf"]["robust_accuracy_ce"] - ce["data"]["linf"]["robust_accuracy_dlr"] > 10
    assert "ce-and-margin-agree" not in MASKING_SIGNATURES  # a warning about CE, not masking proper


# ----------------------------------------------------------------------------- mode and randomness


def test_model_left_in_train_mode_is_flagged(mlp) -> None:
    model, x, y = mlp
    layers = copy.deepcopy(model)  # train() below must not touch the shared fixture
    dropped = nn.Sequential(layers[0], nn.ReLU(), nn.Dropout(0.3), layers[2]).train()
    out = masking_checks(dropped, x, y, {}, BOUNDS, budget="quick")
    checks = _by_name(out)
    mode = checks["eval-mode"]
    assert mode["status"] == "fail" and "2" in mode["data"]["mode_sensitive_in_train_mode"]
    assert checks["deterministic-forward"]["status"] == "pass"  # the audit itself runs in eval mode
    assert dropped.training and dropped[2].training  # modes given back
    assert all(checks[n]["status"] == "skipped" for n in CHECK_NAMES[3:])
    assert out["n_fail"] == 1 and not out["suspected"]
    # A model saved in train mode and put in eval mode by the loader is flagged too.
    loaded = masking_checks(model, x, y, {}, BOUNDS, budget="quick", loaded_in_train_mode=True)
    assert _by_name(loaded)["eval-mode"]["status"] == "fail"
    assert _by_name(masking_checks(model, x, y, {}, BOUNDS))["eval-mode"]["status"] == "pass"


@pytest.mark.parametrize("wrapper", [Noisy, AlwaysDropout])
def test_randomised_forward_is_flagged(mlp, wrapper) -> None:
    model, x, y = mlp
    out = masking_checks(wrapper(model).eval(), x, y, {}, BOUNDS, budget="quick")
    det = _by_name(out)["deterministic-forward"]
    assert det["status"] == "fail" and "EOT" in det["evidence"]
    assert det["data"]["max_abs_logit_diff"] > 0


# ----------------------------------------------------------------------------- output and errors


def test_output_is_json_with_evidence(masked) -> None:
    _, out = masked
    doc = json.loads(json.dumps(to_jsonable(out), allow_nan=False))
    assert set(doc) == {"checks", "suspected", "n_fail", "n_warn", "eot", "errors"}
    assert doc["eot"] is None and doc["errors"] == []  # deterministic model, nothing raised
    assert [c["name"] for c in doc["checks"]] == list(CHECK_NAMES)
    for c in doc["checks"]:
        assert c["status"] in ("pass", "warn", "fail", "skipped")
        assert any(ch.isdigit() for ch in c["evidence"]), c
    assert doc["n_fail"] == sum(c["status"] == "fail" for c in doc["checks"])
    assert doc["n_warn"] == sum(c["status"] == "warn" for c in doc["checks"])


def test_bad_inputs_raise_clear_errors(mlp) -> None:
    model, x, y = mlp
    ens = run_ensemble(model, x[:8], y[:8], "linf", [0.0, 0.1], "quick", BOUNDS, attacks=["fgsm"])
    with pytest.raises(ValueError, match="unknown budget"):
        masking_checks(model, x[:8], y[:8], {"linf": ens}, BOUNDS, budget="fast")
    with pytest.raises(ValueError, match="key it by its norm 'linf'"):
        masking_checks(model, x[:8], y[:8], {"l2": ens}, BOUNDS)
    with pytest.raises(ValueError, match="ran on other samples"):
        masking_checks(model, x[:9], y[:9], {"linf": ens}, BOUNDS)
    with pytest.raises(ValueError, match="same bounds"):
        masking_checks(model, x[:8], y[:8], {"linf": ens}, (0.0, 2.0))
    with pytest.raises(ValueError, match="outside bounds"):
        masking_checks(model, x[:8] + 2, y[:8], {"linf": ens}, BOUNDS)
    with pytest.raises(ValueError, match="must be a dict"):
        masking_checks(model, x[:8], y[:8], [ens], BOUNDS)
    with pytest.raises(ValueError, match="EnsembleResult"):
        masking_checks(model, x[:8], y[:8], {"linf": ens.to_dict()}, BOUNDS)
    with pytest.raises(ValueError, match="integer class labels"):
        masking_checks(model, x[:8], y[:8].float(), {}, BOUNDS)
    with pytest.raises(ValueError, match="batch_size"):
        masking_checks(model, x[:8], y[:8], {}, BOUNDS, batch_size=0)
    with pytest.raises(ValueError, match="nn.Module"):
        masking_checks(lambda t: t, x[:8], y[:8], {}, BOUNDS)
