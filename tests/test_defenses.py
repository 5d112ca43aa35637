"""Defenses: adversarial training through the shared trainer, purification evaluated both
non-adaptively and adaptively (BPDA/EOT), randomized smoothing against a closed form, and the
scan's ``defenses`` section."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.ndimage
import torch
from scipy import stats
from torch import nn
from torch.utils.data import TensorDataset

from auditkit.attacks.apgd import APGD
from auditkit.data import load_data
from auditkit.defenses import (
    ABSTAIN,
    BitDepthReduction,
    GANProjection,
    MedianFilter,
    PerturbationSet,
    PGDTrainingTask,
    PurifiedModel,
    SmoothedClassifier,
    TradesTask,
    adversarial_train,
    bpda,
    certified_accuracy,
    evaluate_defense,
    pgd_attack,
    tabular_perturbation,
    transfer_attack,
)
from auditkit.defenses.smoothing import clopper_pearson_lower
from auditkit.zoo import artifact_path, get_model
from auditkit.training import ClassifierTask, TrainConfig, fit

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


def _robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    out = APGD(n_iter=20, seed=0).run(model, x, y, eps, (0.0, 1.0))
    return 1.0 - out.success.float().mean().item()


# ----------------------------------------------------------------------------- adversarial training


def test_pgd_and_trades_training_improve_robust_accuracy_over_plain_training(digits) -> None:
    train = TensorDataset(torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train))
    x, y = torch.from_numpy(digits.x_test[:100]), torch.from_numpy(digits.y_test[:100]).long()
    cfg = TrainConfig(epochs=6, batch_size=64, device="cpu", progress=False, num_threads=1)
    eps = 0.2  # the tiny MLP resists eps 0.1 fairly well even untrained; 0.2 separates clearly
    robust, clean = {}, {}
    for method in ("plain", "pgd", "trades"):
        torch.manual_seed(0)
        model = _mlp()
        if method == "plain":
            fit(ClassifierTask(model, lr=3e-3), train, cfg)
        else:
            result = adversarial_train(model, train, cfg, method=method, eps=eps, steps=3, lr=3e-3)
            assert result.epochs_run == 6 and "adv_accuracy" in result.history[-1]
            assert not model.training  # fit leaves the model in eval mode
        clean[method] = (model(x).argmax(1) == y).float().mean().item()
        robust[method] = _robust_accuracy(model, x, y, eps)
    assert clean["pgd"] > 0.7 and clean["trades"] > 0.7, clean
    assert robust["pgd"] >= robust["plain"] + 0.15, robust
    assert robust["trades"] >= robust["plain"] + 0.15, robust


def test_adversarial_training_resumes_exactly_from_a_checkpoint(digits, tmp_path) -> None:
    train = TensorDataset(torch.from_numpy(digits.x_train[:256]), torch.from_numpy(digits.y_train[:256]))
    pset = PerturbationSet(0.1)

    def run(epochs: int, resume: bool) -> nn.Module:
        torch.manual_seed(0)
        model = _mlp()
        cfg = TrainConfig(epochs=epochs, batch_size=64, device="cpu", progress=False, num_threads=1,
                          checkpoint_path=tmp_path / "at.ckpt", resume=resume)
        fit(PGDTrainingTask(model, pset, steps=3, eps_warmup_epochs=2), train, cfg)
        return model

    straight = run(3, resume=False)
    (tmp_path / "at.ckpt").unlink()
    run(1, resume=False)
    resumed = run(3, resume=True)  # the random starts come from the checkpointed RNG state
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_eps_warmup_ramps_the_training_radius(digits) -> None:
    train = TensorDataset(torch.from_numpy(digits.x_train[:128]), torch.from_numpy(digits.y_train[:128]))
    cfg = TrainConfig(epochs=3, batch_size=64, device="cpu", progress=False)
    result = fit(TradesTask(_mlp(), PerturbationSet(0.3), steps=2, eps_warmup_epochs=3), train, cfg)
    assert [round(h["eps"], 6) for h in result.history] == [0.1, 0.2, 0.3]


def test_pgd_attack_stays_in_the_ball_and_the_box_and_raises_the_loss(digits) -> None:
    model, _ = get_model("cnn-digits")
    x, y = torch.from_numpy(digits.x_test[:32]), torch.from_numpy(digits.y_test[:32]).long()
    pset = PerturbationSet(0.1)
    x_adv = pgd_attack(model, x, y, pset, steps=10, step_size=0.025)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    ce = nn.functional.cross_entropy
    assert ce(model(x_adv), y) > ce(model(x), y) + 1.0


def test_tabular_perturbation_moves_only_changeable_numeric_features_within_range() -> None:
    data = load_data("fraud")
    model, card = get_model("fraud-mlp")
    x = torch.from_numpy(data.x_test[:256])
    y = torch.from_numpy(data.y_test[:256]).long()
    pset = tabular_perturbation(card, eps=0.05)
    x_adv = pgd_attack(model, x, y, pset, steps=5, step_size=0.02)
    moved = (x_adv != x).any(0)
    for i, f in enumerate(card.features):
        movable = f.changeable and f.kind in ("continuous", "integer")
        if not movable:
            assert not moved[i], f"{f.name} ({f.kind}, changeable={f.changeable}) moved"
        assert x_adv[:, i].min() >= f.min and x_adv[:, i].max() <= f.max, f.name
        span = f.max - f.min
        assert ((x_adv[:, i] - x[:, i]).abs() / span).max() <= 0.05 + 1e-5, f.name
    assert moved.sum() >= 3  # amount, distance, device score, ... do move


def test_adversarial_training_rejects_bad_settings(digits) -> None:
    train = TensorDataset(torch.from_numpy(digits.x_train[:64]), torch.from_numpy(digits.y_train[:64]))
    cfg = TrainConfig(epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        adversarial_train(_mlp(), train, cfg, method="fgsm-free")
    with pytest.raises(ValueError, match="eps must be"):
        PerturbationSet(-0.1)
    with pytest.raises(ValueError, match="unknown norm"):
        PerturbationSet(0.1, norm="l1")
    with pytest.raises(ValueError, match="feature_mask must be a bool"):
        PerturbationSet(0.1, feature_mask=torch.ones(64))
    with pytest.raises(ValueError, match="steps must be"):
        PGDTrainingTask(_mlp(), PerturbationSet(0.1), steps=0)
    _, image_card = get_model("cnn-digits")
    with pytest.raises(ValueError, match="no 'features'"):
        tabular_perturbation(image_card, 0.1)


# ----------------------------------------------------------------------------- purification


def test_bpda_forward_is_the_purifier_and_backward_is_the_identity() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    v = torch.randn(4, 1, 8, 8)
    squeeze = BitDepthReduction(3)
    out = bpda(squeeze, x)
    assert torch.equal(out, squeeze(x.detach()))
    (out * v).sum().backward()
    assert torch.equal(x.grad, v)
    # Without BPDA, quantisation leaves a zero gradient: the obfuscated gradient BPDA fixes.
    model, _ = get_model("cnn-digits")
    xs = x.detach().clone().requires_grad_(True)
    PurifiedModel(model, squeeze, bpda=False)(xs).sum().backward()
    assert torch.count_nonzero(xs.grad) == 0
    xb = x.detach().clone().requires_grad_(True)
    PurifiedModel(model, squeeze, bpda=True)(xb).sum().backward()
    assert torch.count_nonzero(xb.grad) > 0


def test_squeezers_match_their_definitions() -> None:
    torch.manual_seed(1)
    x = torch.rand(3, 2, 8, 8)
    for size in (2, 3):
        expected = scipy.ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
        np.testing.assert_allclose(MedianFilter(size)(x).numpy(), expected)
    squeezed = BitDepthReduction(3)(x)
    assert len(torch.unique(squeezed)) <= 8 and (squeezed - x).abs().max() <= 1 / 14 + 1e-6
    with pytest.raises(ValueError, match="images"):
        MedianFilter(2)(torch.rand(3, 64))
    with pytest.raises(ValueError, match="bits"):
        BitDepthReduction(0)


@pytest.fixture(scope="module")
def gan():
    return get_model("gan-digits")


def test_defense_gan_projection_is_closer_than_a_random_latent_and_seeded(digits, gan) -> None:
    module, card = gan
    x = torch.from_numpy(digits.x_test[:8])
    proj = GANProjection(module.generator, card.latent_dim, n_restarts=2, steps=20, seed=3)
    rec = proj(x)
    with torch.no_grad():
        module.eval()
        random_rec = module.generator(torch.randn(8, card.latent_dim, generator=torch.Generator().manual_seed(0)))
    err = (rec - x).flatten(1).norm(dim=1)
    err_random = (random_rec - x).flatten(1).norm(dim=1)
    assert (err < err_random).all(), (err, err_random)
    assert err.mean() < 0.6 * err_random.mean()
    again = proj(x)
    assert not torch.equal(rec, again)  # fresh random restarts at every call: randomised
    proj.reset()
    assert torch.equal(proj(x), rec)  # but seeded
    assert all(p.grad is None for p in module.generator.parameters())  # the generator is never trained


@pytest.mark.parametrize("name", ["squeeze-bits", "median-filter", "defense-gan"])
def test_adaptive_attack_is_never_weaker_than_the_non_adaptive_one(digits, name) -> None:
    model, _ = get_model("cnn-digits")
    purifier = None
    if name == "defense-gan":  # a cheaper projection: it runs at every attack step
        gan, card = get_model("gan-digits")
        purifier = GANProjection(gan.generator, card.latent_dim, n_restarts=2, steps=10, lr=0.2)
    n = 16 if name != "defense-gan" else 8
    x, y = torch.from_numpy(digits.x_test[:n]), torch.from_numpy(digits.y_test[:n]).long()
    eps = [0.0, 0.05, 0.1, 0.2] if name != "defense-gan" else [0.0, 0.1, 0.2]
    result = evaluate_defense(name, model, x, y, eps, (0.0, 1.0), seed=0, budget="quick", purifier=purifier)
    json.dumps(result)
    assert [r["eps"] for r in result["curve"]] == eps
    for row in result["curve"]:
        count = {k: round(row[k]["value"] * n) for k in ("non_adaptive", "adaptive", "adaptive_bpda_only")}
        assert count["adaptive"] <= count["non_adaptive"] + 1, (row["eps"], count)
        if name != "defense-gan":
            # Deterministic purifiers: BPDA alone, without the transferred points, is already at
            # least as strong as the non-adaptive evaluation.
            assert count["adaptive_bpda_only"] <= count["non_adaptive"] + 1, (row["eps"], count)
    clean = result["clean_accuracy"]["value"]
    assert result["curve"][0]["adaptive"]["value"] == clean
    # BPDA (+EOT) on its own breaks samples: the gradient through the identity is informative.
    assert result["curve"][-1]["adaptive_bpda_only"]["value"] < clean
    assert result["seconds_per_sample"] > 0 and result["eot_iter"] == (2 if name == "defense-gan" else 1)


def test_transfer_attack_breaks_the_bare_classifier(digits) -> None:
    model, _ = get_model("cnn-digits")
    x, y = torch.from_numpy(digits.x_test[:16]), torch.from_numpy(digits.y_test[:16]).long()
    points = transfer_attack(model, x, y, [0.0, 0.3], budget="quick")
    assert torch.equal(points[0], x)
    assert (points[1] - x).abs().max() <= 0.3 + 1e-6
    assert (model(points[1]).argmax(1) != y).float().mean() > 0.9


def test_evaluate_defense_rejects_bad_input(digits) -> None:
    model, _ = get_model("cnn-digits")
    x, y = torch.from_numpy(digits.x_test[:4]), torch.from_numpy(digits.y_test[:4]).long()
    with pytest.raises(ValueError, match="unknown purifier 'jpeg'.*known: defense-gan, median-filter, squeeze-bits"):
        evaluate_defense("jpeg", model, x, y, [0.1])
    with pytest.raises(ValueError, match="eps_list"):
        evaluate_defense("squeeze-bits", model, x, y, [])
    with pytest.raises(ValueError, match="budget"):
        evaluate_defense("squeeze-bits", model, x, y, [0.1], budget="huge")


# ----------------------------------------------------------------------------- smoothing


class LinearBinary(nn.Module):
    """f(x) = 1 if w.x + b > 0 else 0, as logits [0, w.x + b]."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(m), m], dim=1)


W = torch.tensor([3.0, -4.0])  # ||w|| = 5
SIGMA = 0.5


def _true(x: torch.Tensor) -> tuple[int, float, float]:
    """Closed form of the smoothed linear classifier: class, pA, true certified radius."""
    m = float(x @ W + 0.5)
    p_a = float(stats.norm.cdf(abs(m) / (SIGMA * W.norm().item())))
    return int(m > 0), p_a, abs(m) / W.norm().item()


def test_smoothing_certified_radius_is_sound_for_a_linear_classifier() -> None:
    smoothed = SmoothedClassifier(LinearBinary(W, 0.5), SIGMA, n0=100, n=2000, alpha=0.001, seed=0)
    rng = np.random.default_rng(0)
    for point in rng.uniform(-1, 1, size=(20, 2)):
        x = torch.tensor(point, dtype=torch.float32)
        cls, radius = smoothed.certify(x)
        true_cls, _, true_radius = _true(x)
        if cls != ABSTAIN:
            assert cls == true_cls
            assert radius <= true_radius + 1e-9, (point, radius, true_radius)


def test_smoothing_radius_matches_the_closed_form_as_n_grows() -> None:
    x = torch.tensor([0.4, 0.0])  # margin 1.7, pA = Phi(1.7 / 2.5) ~ 0.75
    _, p_a, true_radius = _true(x)
    n = 10_000
    expected = SIGMA * stats.norm.ppf(clopper_pearson_lower(round(p_a * n), n, 0.001))
    smoothed = SmoothedClassifier(LinearBinary(W, 0.5), SIGMA, n=n, alpha=0.001, seed=1)
    cls, radius = smoothed.certify(x)
    assert cls == 1
    assert abs(radius - expected) <= 0.1 * expected, (radius, expected)
    assert radius < true_radius  # the lower confidence bound costs some radius
    big = SmoothedClassifier(LinearBinary(W, 0.5), SIGMA, n=200_000, batch_size=50_000, seed=2)
    assert abs(big.certify(x)[1] - true_radius) < abs(radius - true_radius)  # converges towards the truth


def test_smoothing_abstains_near_the_decision_boundary() -> None:
    smoothed = SmoothedClassifier(LinearBinary(W, 0.5), SIGMA, n=1000, alpha=0.001, seed=0)
    on_boundary = torch.tensor([-0.5 / 3.0, 0.0])  # w.x + b = 0
    assert smoothed.predict(on_boundary) == ABSTAIN
    assert smoothed.certify(on_boundary) == (ABSTAIN, 0.0)
    far = torch.tensor([1.0, -1.0])  # margin 7.5: pA ~ 0.9987
    assert smoothed.predict(far) == 1
    assert smoothed.predict(-far) == 0


def test_certified_accuracy_table(digits) -> None:
    model, _ = get_model("cnn-digits")
    x, y = torch.from_numpy(digits.x_test[:8]), torch.from_numpy(digits.y_test[:8])
    smoothed = SmoothedClassifier(model, 0.25, n0=50, n=200, seed=0)
    rows = certified_accuracy(smoothed, x, y, [0.0, 0.25, 0.5, 5.0])
    values = [r["certified_accuracy"] for r in rows]
    assert values == sorted(values, reverse=True) and values[0] > 0.5 and values[-1] == 0.0
    assert all(r["ci"][0] <= r["certified_accuracy"] <= r["ci"][1] and r["n"] == 8 for r in rows)
    smoothed.reset()
    assert certified_accuracy(smoothed, x, y, [0.0, 0.25, 0.5, 5.0]) == rows  # seeded
    with pytest.raises(ValueError, match="sigma"):
        SmoothedClassifier(model, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        SmoothedClassifier(model, 0.25, alpha=0.7)
    with pytest.raises(ValueError, match="radii"):
        certified_accuracy(smoothed, x, y, [-1.0])


# ----------------------------------------------------------------------------- the scan section

ALL = ["squeeze-bits", "median-filter", "defense-gan", "smoothing", "adversarial-training"]


def _specs(names: list[str], counterpart: str) -> list[str]:
    """--defense values: adversarial-training names its counterpart's file explicitly."""
    return [f"{n}={artifact_path(counterpart)}" if n == "adversarial-training" else n for n in names]


def test_defenses_section_reports_every_defense() -> None:
    import auditkit

    if not artifact_path("cnn-digits-at").exists():
        pytest.skip("zoo/cnn-digits-at is not trained")
    result = auditkit.scan("zoo/cnn-digits/model.pt", samples=16, budget="quick", progress=False,
                           only=["defenses"], defenses=_specs(ALL, "cnn-digits-at"), epsilons={"linf": [0.1, 0.2], "l2": [0.5]})
    section = result.sections["defenses"]
    assert section.status == "ok", section.reason
    data = section.data
    json.dumps(section.model_dump(mode="json"))
    assert list(data["defenses"]) == ALL
    assert [row["defense"] for row in data["comparison"]] == ALL
    for name, entry in data["defenses"].items():
        assert entry["status"] == "ok", (name, entry.get("reason"))
        assert entry["verdict"].split(":")[0].startswith(name.split("-")[0]) or "adversarial" in entry["verdict"]
    for name in ("squeeze-bits", "median-filter", "defense-gan", "adversarial-training"):
        curve = data["defenses"][name]["curve"]
        assert [r["eps"] for r in curve] == [0.0, 0.1, 0.2]
        for row in curve:
            for key in ("undefended", "non_adaptive", "adaptive"):
                assert 0 <= row[key]["ci_low"] <= row[key]["value"] <= row[key]["ci_high"] <= 1
    at = data["defenses"]["adversarial-training"]
    assert at["counterpart"] == "cnn-digits-at" and at["training_cost_ratio"] > 1
    # The adversarially trained model is more robust than the scanned one at its training eps.
    assert at["curve"][1]["adaptive"]["value"] > at["curve"][1]["undefended"]["value"]
    smoothing = data["defenses"]["smoothing"]
    assert [c["radius"] for c in smoothing["certified"]] == [0.0, 0.5]
    verdicts = [f for f in section.findings if f.title.startswith("Defense verdict")]
    assert len(verdicts) == len(ALL)
    # Findings about optional defenses never read as high findings about the model (issue 14).
    assert all(f.subject == "defense" and f.severity != "high" and f.why and f.action for f in section.findings)


def test_defenses_section_is_skipped_without_defenses_and_refuses_unknown_names() -> None:
    import auditkit
    from auditkit.scanning import ScanInputError

    result = auditkit.scan("zoo/cnn-digits/model.pt", samples=4, budget="quick", progress=False,
                           only=["defenses"])
    assert result.sections["defenses"].status == "skipped"
    assert "no --defense given" in result.sections["defenses"].reason
    with pytest.raises(ScanInputError, match="unknown defense.*'jpeg'.*known defenses: squeeze-bits"):
        auditkit.scan("zoo/cnn-digits/model.pt", samples=4, budget="quick", progress=False,
                      only=["defenses"], defenses=["jpeg"])


def test_defenses_on_other_tasks() -> None:
    import auditkit

    text = auditkit.scan("zoo/lstm-reviews/model.pt", samples=4, budget="quick", progress=False,
                         only=["defenses"], defenses=["smoothing"])
    assert text.sections["defenses"].status == "not-applicable"
    assert "text-classification" in text.sections["defenses"].reason
    if not artifact_path("fraud-mlp-at").exists():
        pytest.skip("zoo/fraud-mlp-at is not trained")
    tab = auditkit.scan("zoo/fraud-mlp/model.pt", samples=16, budget="quick", progress=False,
                        only=["defenses"], defenses=_specs(["adversarial-training", "squeeze-bits"], "fraud-mlp-at"))
    entries = tab.sections["defenses"].data["defenses"]
    assert entries["squeeze-bits"]["status"] == "skipped"
    at = entries["adversarial-training"]
    assert at["status"] == "ok" and at["counterpart"] == "fraud-mlp-at"
    assert at["n_caught"]["defended"] > 0 and at["n_caught"]["undefended"] > 0
    low = at["curve"][0]  # the smallest cost budget: the defended model resists evasion better
    assert low["adaptive"]["value"] < low["undefended"]["value"]
    assert math.isfinite(at["ranking"]["defended"]["pr_auc"])
