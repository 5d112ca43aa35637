"""Tests of the attacks written from the papers: APGD, APGD-T, Square, their losses and helpers.

Tiny real models only (linear layers with known closed-form minimal perturbations, a small MLP
trained here on sklearn's digits); foolbox's PGD is the fixed-step baseline.
"""

from __future__ import annotations

import foolbox as fb
import pytest
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from auditkit.attacks.apgd import APGD, APGDTargeted, checkpoints
from auditkit.attacks.common import AttackOutput, is_adversarial, norm_of, project
from auditkit.attacks.losses import ce_loss, dlr_loss, dlr_targeted_loss, margin_loss
from auditkit.attacks.square import SquareAttack, p_schedule
from tests.conftest import Counting

torch.set_num_threads(1)

DUAL = {"linf": 1, "l2": 2}  # dual norm q of the threat model's p: ||w||_q sets the distance
FAR = (-10.0, 10.0)  # bounds far from the data, so the closed form is not cut by clipping


# ----------------------------------------------------------------------------- fixtures


def linear_two_class(shape: tuple[int, ...], norm: str, n: int = 40, dist: float = 1.0, seed: int = 0):
    """A 2-class linear model with logits ``[0, w.x + b]`` and ``n`` samples, all at the same
    ``norm`` distance ``dist`` from its decision boundary (so one scalar eps fits all).

    Returns ``model, x [n, *shape], y [n]``; half the samples are of each class.
    """
    g = torch.Generator().manual_seed(seed)
    d = int(torch.tensor(shape).prod())
    w = torch.randn(d, generator=g)
    b = 0.3
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = w
        lin.bias.zero_()
        lin.bias[1] = b
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.randn(n, d, generator=g) * 0.5
    side = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    # Move each point along w until w.x + b = side * dist * ||w||_q: distance exactly `dist`.
    f = x @ w + b
    x = x + ((side * dist * w.norm(p=DUAL[norm]) - f) / (w @ w)).view(-1, 1) * w
    y = (x @ w + b > 0).long()
    return model, x.view(n, *shape), y


def assert_valid(out: AttackOutput, x: Tensor, norm: str, eps: float, bounds: tuple[float, float]) -> None:
    """Every adversarial point is within eps (1e-5 slack) and inside the bounds."""
    assert out.x_adv.shape == x.shape and out.x_adv.dtype == x.dtype
    assert out.success.dtype == torch.bool and out.success.shape == (x.shape[0],)
    assert float(norm_of(out.x_adv - x, norm).max()) <= eps + 1e-5
    assert float(out.x_adv.min()) >= bounds[0] and float(out.x_adv.max()) <= bounds[1]


@pytest.fixture(scope="module")
def digits_mlp():
    """A 64-32-10 MLP trained for a second on sklearn's digits (inputs in [0, 1]); 100 test samples."""
    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:1500]
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[train]), y[train]).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    xt, yt = x[test], y[test]
    assert (model(xt).argmax(1) == yt).float().mean() > 0.9  # the model is worth attacking
    return model, xt, yt



# ------------------------------------------------------------------- (a) APGD, closed form


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_matches_closed_form_minimum_on_linear_model(norm: str, loss: str) -> None:
    model, x, y = linear_two_class((16,), norm)  # distance 1.0 for every sample
    above = APGD(norm, loss, n_iter=10).run(model, x, y, eps=1.02, bounds=FAR)
    below = APGD(norm, loss, n_iter=10).run(model, x, y, eps=0.98, bounds=FAR)
    assert bool(above.success.all())
    assert not bool(below.success.any())  # impossible below the minimum: checks the projection
    assert_valid(above, x, norm, 1.02, FAR)
    assert_valid(below, x, norm, 0.98, FAR)
    assert above.queries is None


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_targeted_two_classes_uses_fallback_and_matches_closed_form(norm: str) -> None:
    model, x, y = linear_two_class((1, 4, 4), norm)
    assert bool(APGDTargeted(norm, n_iter=10).run(model, x, y, eps=1.02, bounds=FAR).success.all())
    assert not bool(APGDTargeted(norm, n_iter=10).run(model, x, y, eps=0.98, bounds=FAR).success.any())


# ----------------------------------------------------------------- (b) Square, closed form


@pytest.mark.parametrize(
    ("norm", "shape", "factor"),
    [
        ("linf", (1, 8, 8), 1.05),  # image path: stripes init, square windows
        ("linf", (16,), 1.05),  # flat path: random feature subsets
        ("l2", (16,), 1.05),
        # The paper's L2 moves (mass moved between windows) approach the exact optimum of an
        # unstructured linear model slowly, so the image L2 path is held to a looser factor.
        ("l2", (1, 8, 8), 1.5),
    ],
)
def test_square_near_closed_form_minimum_on_linear_model(norm: str, shape: tuple[int, ...], factor: float) -> None:
    model, x, y = linear_two_class(shape, norm)
    above = SquareAttack(norm, n_queries=3000).run(model, x, y, eps=factor, bounds=FAR)
    below = SquareAttack(norm, n_queries=500).run(model, x, y, eps=0.98, bounds=FAR)
    assert float(above.success.float().mean()) >= 0.9
    assert not bool(below.success.any())
    assert_valid(above, x, norm, factor, FAR)
    assert_valid(below, x, norm, 0.98, FAR)
    # Robust samples spend the whole budget: the clean check plus n_queries.
    assert bool((below.queries == 1 + 500).all())
    assert bool((above.queries[above.success] <= 1 + 3000).all())


# ------------------------------------------------------------- (c) strength on a real MLP


@pytest.mark.parametrize(("norm", "eps", "pgd_cls"), [("linf", 0.1, fb.attacks.LinfPGD), ("l2", 0.5, fb.attacks.L2PGD)])
def test_apgd_at_least_as_strong_as_fixed_step_pgd(digits_mlp, norm: str, eps: float, pgd_cls) -> None:
    model, x, y = digits_mlp
    n_iter = 20
    _, _, pgd_success = pgd_cls(steps=n_iter, rel_stepsize=2.5 / n_iter)(
        fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=[eps]
    )
    pgd_robust = int((~pgd_success[0]).sum())
    ce = APGD(norm, "ce", n_iter=n_iter).run(model, x, y, eps)
    dlr = APGD(norm, "dlr", n_iter=n_iter).run(model, x, y, eps)
    targeted = APGDTargeted(norm, n_iter=n_iter, n_target_classes=3).run(model, x, y, eps)
    square = SquareAttack(norm, n_queries=300).run(model, x, y, eps)
    robust = {name: int((~out.success).sum()) for name, out in
              [("ce", ce), ("dlr", dlr), ("t", targeted), ("square", square)]}
    assert 0 < robust["ce"] < len(y)  # an informative eps: neither everything nor nothing falls
    assert robust["ce"] <= pgd_robust + 1
    assert robust["t"] <= robust["ce"] + 2
    for out in (ce, dlr, targeted, square):
        assert_valid(out, x, norm, eps, (0.0, 1.0))
        # success is what the model says at x_adv
        assert torch.equal(out.success, model(out.x_adv).argmax(1) != y)


# --------------------------------------------------------------- (d) contract and inputs


ATTACKS = {
    "apgd": lambda norm, seed=0: APGD(norm, n_iter=8, seed=seed),
    "apgd-t": lambda norm, seed=0: APGDTargeted(norm, n_iter=5, n_target_classes=2, seed=seed),
    "square": lambda norm, seed=0: SquareAttack(norm, n_queries=50, seed=seed),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_already_misclassified_samples_are_successes_left_untouched(digits_mlp, name: str) -> None:
    model, x, y = digits_mlp
    x, y = x[:20], y[:20].clone()
    y[:5] = (model(x[:5]).argmax(1) + 1) % 10  # wrong labels: misclassified before any attack
    out = ATTACKS[name]("linf").run(model, x, y, eps=0.02)
    assert bool(out.success[:5].all())
    assert torch.equal(out.x_adv[:5], x[:5])
    if name == "square":
        assert bool((out.queries[:5] == 1).all())  # only the clean check


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_seed_same_result_other_seed_other_points(digits_mlp, name: str, norm: str) -> None:
    model, x, y = digits_mlp
    eps = 0.1 if norm == "linf" else 0.5
    a = ATTACKS[name](norm, seed=3).run(model, x[:30], y[:30], eps)
    b = ATTACKS[name](norm, seed=3).run(model, x[:30], y[:30], eps)
    c = ATTACKS[name](norm, seed=4).run(model, x[:30], y[:30], eps)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    if a.queries is not None:
        assert torch.equal(a.queries, b.queries)
    assert not torch.equal(a.x_adv, c.x_adv)  # the seed does drive the randomness


@pytest.mark.parametrize("name", list(ATTACKS))
def test_model_runs_in_eval_mode_and_gets_its_modes_back(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 4))
    model.train()
    model[2].eval()  # a submodule deliberately in another mode must keep it
    modes = [m.training for m in model.modules()]
    stats = model[1].running_mean.clone()
    x, y = torch.rand(10, 6), torch.randint(0, 4, (10,))
    out = ATTACKS[name]("linf").run(model, x, y, eps=0.1)
    assert [m.training for m in model.modules()] == modes
    # BatchNorm in train mode would have updated its running statistics.
    assert torch.equal(model[1].running_mean, stats)
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert torch.equal(out.success, model(out.x_adv).argmax(1) != y)  # eval semantics


def test_fooled_samples_leave_the_batch_and_square_counts_every_forward() -> None:
    # Half the samples sit at distance 0.5 (fooled early at eps = 1), half at distance 5.
    model, x_near, y_near = linear_two_class((16,), "linf", n=10, dist=0.5)
    _, x_far, y_far = linear_two_class((16,), "linf", n=10, dist=5.0)
    x, y = torch.cat([x_near, x_far]), torch.cat([y_near, y_far])
    counting = Counting(model)
    out = APGD("linf", n_iter=10).run(counting, x, y, eps=1.0, bounds=FAR)
    assert bool(out.success[:10].all()) and not bool(out.success[10:].any())
    # clean check, random start, 10 steps, final check; the steps only see the robust half.
    assert counting.batches[0] == 20 and counting.batches[-1] == 20
    assert len(counting.batches) == 13 and max(counting.batches[3:-1]) == 10

    counting = Counting(model)
    out = SquareAttack("linf", n_queries=100).run(counting, x, y, eps=1.0, bounds=FAR)
    assert bool(out.success[:10].all()) and not bool(out.success[10:].any())
    assert bool((out.queries[10:] == 1 + 100).all())
    # Every row the model saw is a counted query, except the final full-batch check.
    assert sum(counting.batches) == int(out.queries.sum()) + len(y)
    assert counting.batches[-2] == 10  # late queries only carry the robust half


def test_eot_averages_several_passes_per_step() -> None:
    model, x, y = linear_two_class((16,), "l2", n=8, dist=5.0)
    counting = Counting(model)
    out = APGD("l2", n_iter=6, eot_iter=3).run(counting, x, y, eps=1.0, bounds=FAR)
    assert not bool(out.success.any())
    # clean vote + eot * (start + steps) + final vote: with eot_iter > 1 every decision is a
    # majority over eot_iter forwards, never one forward.
    assert len(counting.batches) == 3 + 3 * (6 + 1) + 3


@pytest.mark.parametrize("name", list(ATTACKS))
def test_bad_inputs_raise_clear_errors(digits_mlp, name: str) -> None:
    model, x, y = digits_mlp
    attack = ATTACKS[name]("linf")
    with pytest.raises(ValueError, match="unknown norm"):
        ATTACKS[name]("l3")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        attack.run(model, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="outside bounds"):
        attack.run(model, x * 2, y, eps=0.1)
    with pytest.raises(ValueError, match=r"y must have shape \[N\]"):
        attack.run(model, x, y.view(-1, 1), eps=0.1)
    with pytest.raises(ValueError, match="integer tensor"):
        attack.run(model, x, y.float(), eps=0.1)
    with pytest.raises(ValueError, match="labels outside"):
        attack.run(model, x, y + 10, eps=0.1)
    with pytest.raises(ValueError, match="low < high"):
        attack.run(model, x, y, eps=0.1, bounds=(1.0, 0.0))


def test_bad_configuration_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        APGD(loss="hinge")
    with pytest.raises(ValueError, match="n_iter must be an integer >= 1"):
        APGD(n_iter=0)
    with pytest.raises(ValueError, match="rho must be in"):
        APGD(rho=1.5)
    with pytest.raises(ValueError, match="n_target_classes"):
        APGDTargeted(n_target_classes=0)
    with pytest.raises(ValueError, match="p_init must be in"):
        SquareAttack(p_init=0.0)
    with pytest.raises(ValueError, match="n_queries"):
        SquareAttack(n_queries=0)


# ------------------------------------------------------------- (e) masked gradients


class RoundedLinear(nn.Module):
    """Quantises its input to a 0.25 grid (zero gradient, no straight-through) before a linear
    classifier: gradient attacks see nothing, the decision still moves with the input."""

    def __init__(self, d: int, n_classes: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(d, n_classes)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(n_classes, d, generator=g))
            # Boundaries through the centre of [0, 1]^d, so that the data sit near them.
            self.lin.bias.copy_(-self.lin.weight.sum(dim=1) * 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(torch.round(x * 4) / 4)


def test_masked_gradients_defeat_apgd_but_not_square() -> None:
    model = RoundedLinear(16, 3).eval()
    x = torch.rand(60, 16, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)  # all correctly classified
    eps = 0.2  # more than the 0.125 it takes to cross a rounding boundary in any coordinate
    apgd = APGD("linf", n_iter=20).run(model, x, y, eps)
    square = SquareAttack("linf", n_queries=500).run(model, x, y, eps)
    apgd_rate, square_rate = float(apgd.success.float().mean()), float(square.success.float().mean())
    assert square_rate > apgd_rate + 0.5
    assert square_rate >= 0.9
    assert_valid(square, x, "linf", eps, (0.0, 1.0))


# ----------------------------------------------------------------- losses and helpers


def test_dlr_is_invariant_to_shifting_and_scaling_logits() -> None:
    g = torch.Generator().manual_seed(0)
    z, y, t = torch.randn(50, 5, generator=g), torch.randint(0, 5, (50,), generator=g), torch.randint(0, 5, (50,), generator=g)
    t = torch.where(t == y, (t + 1) % 5, t)
    for fn in (lambda v: dlr_loss(v, y), lambda v: dlr_targeted_loss(v, y, t)):
        assert torch.allclose(fn(3.0 * z + 7.0), fn(z), atol=1e-5)
    assert not torch.allclose(margin_loss(3.0 * z, y), margin_loss(z, y))
    # DLR > 0 exactly when misclassified, like the margin.
    assert torch.equal(dlr_loss(z, y) > 0, z.argmax(1) != y)


def test_loss_values_and_few_class_fallbacks() -> None:
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    assert torch.allclose(margin_loss(z, y), torch.tensor([-1.0]))
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-1.0 / 2.0]))  # -(2 - 1) / (2 - 0)
    assert torch.allclose(dlr_targeted_loss(z, y, t), torch.tensor([-2.0 / 2.5]))  # -(2-0)/(2-(0-1)/2)
    assert torch.allclose(ce_loss(z, y), nn.functional.cross_entropy(z, y, reduction="none"))
    z3 = z[:, :3]
    assert torch.allclose(dlr_targeted_loss(z3, y, t), torch.tensor([-2.0 / 2.0]))  # untargeted denominator
    z2 = torch.tensor([[0.0, 1.5], [0.0, -2.0]])
    y2 = torch.tensor([0, 0])
    assert torch.allclose(dlr_loss(z2, y2), torch.tensor([1.5, -2.0]))  # margin fallback
    assert torch.allclose(dlr_targeted_loss(z2, y2, torch.tensor([1, 1])), torch.tensor([1.5, -2.0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        dlr_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def test_project_and_norm_of() -> None:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(20, 3, 4, 4, generator=g)
    for norm in ("linf", "l2"):
        p = project(d, norm, 0.5)
        assert torch.allclose(norm_of(p, norm), torch.full((20,), 0.5), atol=1e-6)  # all were outside
        assert torch.allclose(project(p, norm, 0.5), p)  # idempotent
        small = d * 1e-3
        assert torch.allclose(project(small, norm, 0.5), small)  # inside: unchanged
    assert torch.allclose(norm_of(d, "l2"), d.flatten(1).norm(dim=1))
    assert torch.equal(project(torch.zeros(2, 3), "l2", 1.0), torch.zeros(2, 3))


def test_is_adversarial_and_schedules() -> None:
    model, x, y = linear_two_class((16,), "linf", n=6)
    assert not bool(is_adversarial(model, x, y).any())
    assert bool(is_adversarial(model, x, 1 - y).all())
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == [1]
    assert p_schedule(0.8, 0, 1000) == 0.8 and p_schedule(0.8, 2, 1000) == 0.4
    assert p_schedule(0.8, 999, 1000) == 0.8 / 512
