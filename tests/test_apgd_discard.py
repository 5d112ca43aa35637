"""APGD's and Square's optional discarding (``discard_after``, after A3): samples that made little
progress towards the boundary stop being attacked; those that made progress run on. The
standard budget's near runs use it, ``thorough`` never does."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from auditkit.attacks.apgd import APGD, DISCARD_GAP_LEFT, APGDTargeted
from auditkit.attacks.ensemble import NEAR_SETTINGS
from auditkit.attacks.registry import get_attack
from auditkit.attacks.square import SquareAttack
from tests.conftest import Counting

torch.set_num_threads(1)

EPS = 0.05  # moves the margin below by at most 16 * EPS = 0.8


def two_kinds() -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    """A 2-class linear model (margin ``z_1 - z_0 = sum(x) - 13.2`` on 16 features) and 6 inputs,
    4 hopeless: clean margin -10, of which an eps-ball closes at most 8%; the other 2 start at
    -1, which one step brings to -0.2 (80% of the gap closed), never across.
    Returns the model, x ``[6, 16]``, y ``[6]`` and the hopeless mask ``[6]``."""
    lin = nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(16), torch.ones(16)]))
        lin.bias.copy_(torch.tensor([0.0, -13.2]))
    hopeless = torch.tensor([True, False, True, True, False, True])
    x = torch.where(hopeless, 0.2, 0.7625).unsqueeze(1).expand(6, 16).clone()
    return lin.eval(), x, torch.zeros(6, dtype=torch.long), hopeless


@pytest.mark.parametrize("make", [lambda **kw: APGD("linf", loss="ce", **kw),
                                  lambda **kw: APGDTargeted("linf", n_target_classes=1, **kw)],
                         ids=["apgd-ce", "apgd-t"])
def test_hopeless_samples_stop_and_the_others_run_on(make) -> None:
    inner, x, y, hopeless = two_kinds()
    model = Counting(inner)
    out = make(n_iter=10, discard_after=3).run(model, x, y, EPS)
    assert not bool(out.success.any())
    # clean forward; start and 3 steps on all 6; 7 more steps on the 2 that progressed; final check.
    assert model.batches == [6] * (1 + 1 + 3) + [2] * 7 + [6]
    # A discarded sample still returns a point in the ball, its best one (margin -9.2 at most).
    assert float((out.x_adv - x).abs().max()) <= EPS + 1e-6
    margin = inner(out.x_adv) @ torch.tensor([-1.0, 1.0])
    assert bool((margin[hopeless] > -10).all()) and bool((margin[~hopeless] > -0.3).all())


def test_without_discarding_every_sample_runs_every_iteration() -> None:
    inner, x, y, _ = two_kinds()
    model = Counting(inner)
    APGD("linf", n_iter=10).run(model, x, y, EPS)
    assert model.batches == [6] * (1 + 1 + 10 + 1)


def test_a_sample_that_is_fooled_is_never_discarded() -> None:
    # Clean margin -1 with eps 0.1: one step crosses (margin +0.6) before iteration 3.
    inner, x, y, hopeless = two_kinds()
    out = APGD("linf", n_iter=10, discard_after=3).run(inner, x, y, 0.1)
    assert out.success.tolist() == (~hopeless).tolist()


def test_bad_discard_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="discard_after"):
        APGD(n_iter=10, discard_after=0)
    with pytest.raises(ValueError, match="discard_after must be below n_iter"):
        APGD(n_iter=10, discard_after=10)
    with pytest.raises(ValueError, match="deterministic"):
        APGD(n_iter=10, discard_after=3, eot_iter=20)
    with pytest.raises(ValueError, match="discard_after must be below n_iter"):
        APGDTargeted(n_iter=10, n_iter_tail=4, discard_after=5)


def test_square_drops_the_hopeless_samples_too() -> None:
    inner, x, y, hopeless = two_kinds()
    model = Counting(inner)
    out = SquareAttack("linf", n_queries=100, discard_after=50, seed=0).run(model, x, y, EPS)
    assert not bool(out.success.any())
    # clean check, start and 50 proposals on all 6, the other 49 on the 2 progressing; final check.
    assert model.batches == [6] * (1 + 1 + 50) + [2] * 49 + [6]
    assert out.queries.tolist() == [52 if h else 101 for h in hopeless.tolist()]
    assert float((out.x_adv - x).abs().max()) <= EPS + 1e-6
    with pytest.raises(ValueError, match="discard_after must be below n_queries"):
        SquareAttack(n_queries=100, discard_after=100)


def test_only_the_standard_near_runs_discard() -> None:
    assert 0 < DISCARD_GAP_LEFT < 1
    for attack in ("apgd-ce", "apgd-t"):
        cfg = NEAR_SETTINGS["standard"][attack]
        assert 0 < cfg["discard_after"] < cfg["n_iter"]
    cfg = NEAR_SETTINGS["standard"]["square"]
    assert 0 < cfg["discard_after"] < cfg["n_queries"]
    for norm in ("linf", "l2"):
        for name in (f"apgd-ce-{norm}", f"apgd-t-{norm}", f"square-{norm}"):
            for budget in ("quick", "standard", "thorough"):
                assert "discard_after" not in get_attack(name).settings(budget)
