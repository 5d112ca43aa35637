"""auditkit.resources: default threads, activation memory per row, batch sizes from a memory
budget, and attributions / quality metrics that keep to the budget without changing their results."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from auditkit.card import AuditCard
from auditkit.explain.methods import attribute
from auditkit.explain.quality import deletion_insertion, ig_completeness
from auditkit.resources import (
    MAX_THREADS,
    SAFETY,
    activation_bytes_per_row,
    batch_size_for,
    default_threads,
    memory_budget,
)


def _cnn(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, 10)).eval()


CARD = AuditCard(task="image-classification", input_shape=[3, 16, 16], bounds=(0.0, 1.0),
                 class_names=[str(i) for i in range(10)])


class RowCounter:
    """Forward pre-hook recording the largest batch a module sees."""

    def __init__(self, module: nn.Module):
        self.max_rows = 0
        module.register_forward_pre_hook(self)

    def __call__(self, _m: nn.Module, args: tuple) -> None:
        self.max_rows = max(self.max_rows, args[0].shape[0])


def test_default_threads_is_within_the_cpus_this_process_may_use() -> None:
    n = default_threads()
    assert 1 <= n <= MAX_THREADS
    if hasattr(os, "sched_getaffinity"):
        assert n <= len(os.sched_getaffinity(0))


def test_activation_bytes_grow_with_width_and_are_per_row() -> None:
    x = torch.zeros(5, 3, 16, 16)
    narrow, wide = activation_bytes_per_row(_cnn(4), x), activation_bytes_per_row(_cnn(16), x)
    # Per row a width-w net saves a few [w, 16, 16] float maps: at least one, and 4x more when 4x wider.
    assert narrow >= 4 * 16 * 16 * 4
    assert 3.0 < wide / narrow < 5.0
    # The batch size of the example does not matter: only its row shape.
    assert activation_bytes_per_row(_cnn(16), torch.zeros(50, 3, 16, 16)) == wide


def test_batch_size_follows_the_budget_and_the_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = _cnn(16), torch.zeros(2, 3, 16, 16)
    per_row = activation_bytes_per_row(model, x)
    budget = int(SAFETY * per_row * 100)
    assert batch_size_for(model, x, budget) == 100
    assert batch_size_for(model, x, budget, rows_per_sample=32) == 3
    assert batch_size_for(model, x, budget, rows_per_sample=1000) == 1  # never 0
    assert batch_size_for(model, x, budget, maximum=10) == 10
    monkeypatch.setenv("AUDITKIT_MEMORY_BUDGET_MB", "1")
    assert memory_budget("cpu") == 2**20
    assert batch_size_for(model, x) == max(1, int(2**20 // (SAFETY * per_row)))
    monkeypatch.setenv("AUDITKIT_MEMORY_BUDGET_MB", "lots")
    with pytest.raises(ValueError, match="MiB"):
        memory_budget("cpu")


def test_attribute_keeps_to_the_budget_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _cnn(8)
    torch.manual_seed(1)
    x = torch.rand(12, 3, 16, 16)
    target = model(x).argmax(1)
    ref_ig, ref_delta = attribute("ig", model, x, target, CARD, n_steps=16, return_delta=True)
    ref_sg = attribute("smoothgrad", model, x, target, CARD, batch_size=4)
    per_row = activation_bytes_per_row(model, x)
    # Room for 20 rows: IG (16 path points per sample) one sample per pass, SmoothGrad (16 noisy copies) too.
    monkeypatch.setenv("AUDITKIT_MEMORY_BUDGET_MB", str(SAFETY * per_row * 20 / 2**20))
    counter = RowCounter(model)
    ig, delta = attribute("ig", model, x, target, CARD, n_steps=16, return_delta=True)
    assert counter.max_rows <= 20
    torch.testing.assert_close(ig, ref_ig, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(delta, ref_delta, rtol=1e-3, atol=1e-5)
    # Fewer rows than one sample's path points: IG splits the path itself (captum's internal batches).
    monkeypatch.setenv("AUDITKIT_MEMORY_BUDGET_MB", str(SAFETY * per_row * 5 / 2**20))
    counter.max_rows = 0
    ig = attribute("ig", model, x, target, CARD, n_steps=16)
    assert counter.max_rows <= 5
    torch.testing.assert_close(ig, ref_ig, rtol=1e-4, atol=1e-6)
    # A noisy method at its own chunk size (batch_size 4 fits the budget of 4 x 16 rows): same draws.
    monkeypatch.setenv("AUDITKIT_MEMORY_BUDGET_MB", str(SAFETY * per_row * 64 / 2**20))
    counter.max_rows = 0
    torch.testing.assert_close(attribute("smoothgrad", model, x, target, CARD, batch_size=4), ref_sg)
    assert counter.max_rows <= 64


def test_quality_metrics_do_not_depend_on_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _cnn(8)
    torch.manual_seed(2)
    x = torch.rand(40, 3, 16, 16)  # more than one quality unit (32 samples)
    target = model(x).argmax(1)
    attr = attribute("saliency", model, x, target, CARD)
    ref_c = ig_completeness(model, x, target, CARD, start_steps=8, max_steps=16)
    ref_d = deletion_insertion(model, x, target, attr, CARD, steps=5)
    monkeypatch.setenv("AUDITKIT_MEMORY_BUDGET_MB", str(SAFETY * activation_bytes_per_row(model, x) * 12 / 2**20))
    counter = RowCounter(model)
    comp = ig_completeness(model, x, target, CARD, start_steps=8, max_steps=16)
    dele = deletion_insertion(model, x, target, attr, CARD, steps=5)
    assert counter.max_rows <= 12
    assert comp["n_samples"] == dele["n_samples"] == 40
    assert [h["n_steps"] for h in comp["history"]] == [h["n_steps"] for h in ref_c["history"]]
    for got, ref in zip(comp["history"], ref_c["history"]):
        assert got["p95"] == pytest.approx(ref["p95"], rel=1e-3, abs=1e-6)
    for key in ("deletion", "insertion", "deletion_random", "insertion_random"):
        assert dele[key] == pytest.approx(ref_d[key], abs=1e-6)
