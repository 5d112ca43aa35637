"""APGD-T's split iteration budget: the top-ranked targets run ``n_iter`` iterations, the rest
``n_iter_tail`` (the standard budget's setting, measured in bench/attacks.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditkit.attacks.apgd import APGDTargeted
from auditkit.attacks.registry import get_attack
from tests.conftest import Counting

torch.set_num_threads(1)



def robust_model() -> nn.Module:
    """4 classes, logits ``[10, 0, 0, 0] + 0.01 * W x``: class 0 everywhere in [0, 1]^8."""
    lin = nn.Linear(8, 4)
    with torch.no_grad():
        lin.weight.copy_(0.01 * torch.randn(4, 8, generator=torch.Generator().manual_seed(0)))
        lin.bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    return lin.eval()


def test_tail_targets_run_the_shorter_budget() -> None:
    model = Counting(robust_model())
    x, y = torch.rand(5, 8, generator=torch.Generator().manual_seed(1)), torch.zeros(5, dtype=torch.long)
    out = APGDTargeted("linf", n_iter=10, n_target_classes=3, n_iter_tail=4, n_head_targets=1).run(model, x, y, 0.1)
    assert not bool(out.success.any())
    # clean forward; head target: start + 10 steps; two tail targets: start + 4 steps each; final check.
    assert len(model.batches) == 1 + (1 + 10) + 2 * (1 + 4) + 1


def test_default_runs_every_target_in_full() -> None:
    model = Counting(robust_model())
    x, y = torch.rand(5, 8, generator=torch.Generator().manual_seed(1)), torch.zeros(5, dtype=torch.long)
    APGDTargeted("linf", n_iter=6, n_target_classes=3).run(model, x, y, 0.1)
    assert len(model.batches) == 1 + 3 * (1 + 6) + 1


def test_bad_split_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="n_iter_tail"):
        APGDTargeted(n_iter_tail=0)
    with pytest.raises(ValueError, match="n_head_targets"):
        APGDTargeted(n_head_targets=0)


def test_thorough_keeps_the_full_autoattack_targets() -> None:
    # thorough is the uncompromised protocol: every target at the full iteration count.
    for norm in ("linf", "l2"):
        s = get_attack(f"apgd-t-{norm}").settings("thorough")
        assert s["n_target_classes"] == 9 and s.get("n_iter_tail", s["n_iter"]) == s["n_iter"] >= 100
