"""Scans sharded over torch.distributed (docs/distributed.md): units, merging, and the real CLI
under torchrun with two gloo processes writing the same results.json as one process.

The ensemble tests use attacks whose result for a sample does not depend on the other samples
of its batch (FGSM, FMN): then the ensemble run unit by unit and merged must equal one run on
all samples field for field, which checks every merge rule against the ensemble's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from auditkit.attacks import registry
from auditkit.attacks.ensemble import ERROR, run_ensemble
from auditkit.attacks.sharded import merge_ensembles, run_ensemble_sharded
from auditkit.distributed import map_units, unit_size, unit_slices
from auditkit.results import to_jsonable

from .conftest import REPO, run_cli, zoo_model_path

torch.set_num_threads(1)

WORKER = REPO / "tests" / "distributed_worker.py"
# Fields that measure time (or the run's layout), not the audit: dropped before comparing runs.
TIMING_KEYS = ("seconds", "wall_seconds", "started_at", "timings", "world_size")


def without_timings(doc: Any) -> Any:
    """A copy of a results dict without timing fields: any key in ``TIMING_KEYS`` or with
    "seconds" in its name (``seconds_per_sample``, ``cpu_seconds``...)."""
    if isinstance(doc, dict):
        return {k: without_timings(v) for k, v in doc.items() if k not in TIMING_KEYS and "seconds" not in k}
    if isinstance(doc, list):
        return [without_timings(v) for v in doc]
    return doc


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted path of the first place where ``a`` and ``b`` differ (None: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in dict.fromkeys([*a, *b]):
            if k not in a or k not in b:
                return f"{path}.{k} (only in {'second' if k not in a else 'first'})"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (u, v) in enumerate(zip(a, b)):
            d = first_difference(u, v, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"


def _torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --standalone`` (a free port of its own) with ``nproc``
    CPU processes; OMP threads 1 each (the machine is shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- units


def test_unit_size_depends_on_n_and_batch_only() -> None:
    # As few units as batches need, of equal size: one batch of samples is one unit.
    assert unit_size(128) == 128 and unit_size(256) == 256 and unit_size(5) == 5
    assert unit_size(450) == 225 and len(unit_slices(450, unit_size(450))) == 2  # one unit per rank on 2
    assert unit_size(257) == 129 and unit_size(10_000, batch_size=256) == 250
    assert len(unit_slices(10_000, unit_size(10_000))) == 40
    assert unit_size(100, batch_size=8) == 8 and unit_size(1, batch_size=1) == 1
    with pytest.raises(ValueError, match="batch_size"):
        unit_size(10, batch_size=0)
    slices = unit_slices(21, 4)
    assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 21)]


def test_map_units_one_process_seeds_each_unit_and_restores_the_rng() -> None:
    torch.manual_seed(5)
    expected_after = torch.rand(3)
    torch.manual_seed(5)
    first = map_units(lambda k, rows: (k, rows.start, torch.rand(2), float(np.random.rand())), 10, 4, seed=1)
    assert torch.equal(torch.rand(3), expected_after)  # the caller's stream is untouched
    again = map_units(lambda k, rows: (k, rows.start, torch.rand(2), float(np.random.rand())), 10, 4, seed=1)
    assert [(k, s) for k, s, _, _ in first] == [(0, 0), (1, 4), (2, 8)]
    for a, b in zip(first, again):  # the same draws, whatever ran before
        assert torch.equal(a[2], b[2]) and a[3] == b[3]
    assert not torch.equal(first[0][2], first[1][2])  # units draw independent streams

    def failing(k: int, rows: slice) -> int:
        if k >= 1:
            raise KeyError(f"unit {k}")
        return k

    with pytest.raises(KeyError, match="unit 1"):  # the first failing unit, in unit order
        map_units(failing, 10, 4)


@pytest.mark.parametrize("nproc", [1, 2])
def test_map_units_under_torchrun_gathers_every_unit_in_order(tmp_path: Path, nproc: int) -> None:
    proc = _torchrun(str(WORKER), "map", str(tmp_path), nproc=nproc, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(nproc)]
    reference = map_units(lambda k, rows: None, 21, 4)  # only the layout: 6 units
    for rec in ranks:
        assert rec["world"] == nproc
        units = rec["units"]
        assert [u["k"] for u in units] == list(range(len(reference)))
        assert [u["rows"] for u in units] == [(s.start, s.stop) for s in unit_slices(21, 4)]
        assert [u["by"] for u in units] == [k % nproc for k in range(len(units))]  # sharded round-robin
        # The nested call ran locally, inside its unit.
        assert units[5]["inner"] == [(0, 0, 1)] and units[0]["inner"] == [(0, 0, 2), (1, 2, 4)]
    if nproc == 2:
        a, b = ranks
        for u, v in zip(a["units"], b["units"]):
            assert torch.equal(u["torch"], v["torch"]) and u["numpy"] == v["numpy"] and u["random"] == v["random"]
        assert torch.equal(a["after"], b["after"])  # the ranks' global RNGs did not diverge
    (tmp_path / "one").mkdir()
    single = subprocess.run([sys.executable, str(WORKER), "map", str(tmp_path / "one")], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "rank0.pt", weights_only=False)
    for u, v in zip(one["units"], ranks[0]["units"]):  # the same draws on one process and on N
        assert torch.equal(u["torch"], v["torch"]) and u["numpy"] == v["numpy"] and u["random"] == v["random"]
    assert torch.equal(one["after"], ranks[0]["after"])


def test_a_failing_unit_fails_every_rank_alike_and_nothing_hangs(tmp_path: Path) -> None:
    proc = _torchrun(str(WORKER), "unit-fails", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in (0, 1):
        rec = torch.load(tmp_path / f"rank{r}.pt", weights_only=False)
        # Unit 2 ran on rank 0; rank 1 raises the same exception, received with the results.
        assert rec["error"] == "ValueError: unit 2 failed on rows 4-6"
        assert rec["after"] == [0, 10, 20, 30]  # and the group still works afterwards


def test_a_rank_that_dies_ends_the_run_instead_of_hanging(tmp_path: Path) -> None:
    proc = _torchrun(str(WORKER), "rank-dies", str(tmp_path), timeout=120)  # TimeoutExpired: a hang
    assert proc.returncode != 0
    assert not (tmp_path / "rank0.pt").exists()


# ----------------------------------------------------------------------------- merging ensembles


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP trained for a moment on sklearn digits (flattened, /16), and 40 test samples."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        for s in range(0, 1500, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[s : s + 100]), y[s : s + 100]).backward()
            opt.step()
    return model.eval(), x[1500:1540], y[1500:1540]


COSTS = ("forward_passes", "backward_passes", "queries")


def _doc(result: Any, costs: bool = True) -> dict[str, Any]:
    doc = without_timings(json.loads(json.dumps(to_jsonable(result.to_dict()))))
    if not costs:  # FMN stops a batch when all of its samples are done: passes depend on the batch
        for stats in doc["per_attack"].values():
            for key in COSTS:
                stats.pop(key, None)
    return doc


EPS = [0.0, 0.02, 0.05, 0.1, 0.2]


def test_merged_units_equal_one_ensemble_on_all_samples(digits) -> None:
    model, x, y = digits
    whole = run_ensemble(model, x, y, "linf", EPS, budget="quick", attacks=["fgsm", "fmn-linf"], batch_size=64)
    parts = [run_ensemble(model, x[s], y[s], "linf", EPS, budget="quick", attacks=["fgsm", "fmn-linf"],
                          batch_size=64, seed=s.start) for s in unit_slices(len(x), 16)]
    merged = merge_ensembles(parts, model=model, x=x, seed=0)
    assert first_difference(_doc(merged, costs=False), _doc(whole, costs=False)) is None
    assert torch.equal(merged.best_x, whole.best_x)
    for key in COSTS:  # FGSM costs one forward and one backward per sample, whatever the batch
        assert merged.per_attack["fgsm"][key] == whole.per_attack["fgsm"][key]
    assert merged.gallery and merged.gallery == whole.gallery  # recomputed over all samples
    # The costs add up; the ratios were recomputed, not added.
    for name in ("fgsm", "fmn-linf"):
        for key in ("forward_passes", "backward_passes", "n_attacked"):
            assert merged.per_attack[name][key] == sum(p.per_attack[name][key] for p in parts)
        assert merged.per_attack[name]["seconds"] == pytest.approx(sum(p.per_attack[name]["seconds"] for p in parts))
    # Without the model the units' galleries are kept, their indices shifted to the merged rows.
    plain = merge_ensembles(parts)
    assert [g["index"] for g in plain.gallery] == [g["index"] + 16 * k for k, p in enumerate(parts) for g in p.gallery]


def test_sharded_ensemble_is_the_merge_of_its_units(digits) -> None:
    model, x, y = digits
    sharded = run_ensemble_sharded(model, x, y, "l2", [0.0, 0.5, 1.0], budget="quick", seed=3, batch_size=16)
    units = unit_slices(len(x), unit_size(len(x), 16))
    assert len(units) == 3  # 40 samples in batches of 16: three units of 14, 14, 12
    parts = [run_ensemble(model, x[s], y[s], "l2", [0.0, 0.5, 1.0], budget="quick", seed=3 + s.start, batch_size=16)
             for s in units]
    assert first_difference(_doc(sharded), _doc(merge_ensembles(parts, model=model, x=x, seed=3))) is None
    assert sharded.seed == 3 and len(sharded.labels) == len(x)


def _raise_on_rows(rows: set[int]):
    """A fixed-eps runner that raises on batches holding one of ``rows`` (it knows them by
    content: a sample's first pixel) and otherwise finds nothing."""
    def run(model, x, y, eps, bounds, seed, **settings):
        if any(round(float(v), 6) in rows for v in x[:, 0].tolist()):
            raise RuntimeError("deliberate failure for the test")
        return x.clone(), None
    return run


def test_merge_shifts_the_rows_of_attack_errors(monkeypatch, digits) -> None:
    model, x, y = digits
    x = x.clone()
    x[:, 0] = torch.arange(len(x)) / 100.0  # a sample's first pixel names it
    bad = {round(25 / 100.0, 6)}
    spec = registry.AttackSpec("raise-rows-linf", "fixed-eps", "linf", "gradient", "auditkit", "test attack",
                               {b: {} for b in registry.BUDGET_NAMES}, _raise_on_rows(bad))
    monkeypatch.setitem(registry._ATTACKS, "raise-rows-linf", spec)
    attacks = ["fgsm", "raise-rows-linf"]
    whole = run_ensemble(model, x, y, "linf", EPS, budget="quick", attacks=attacks, batch_size=1)
    parts = [run_ensemble(model, x[s], y[s], "linf", EPS, budget="quick", attacks=attacks, batch_size=1)
             for s in unit_slices(len(x), 16)]
    merged = merge_ensembles(parts, model=model, x=x, seed=0)
    errors = merged.per_attack["raise-rows-linf"]["errors"]
    assert errors and {i for e in errors for i in e["samples"]} == {25}
    assert np.array_equal(merged.success["raise-rows-linf"] == ERROR, whole.success["raise-rows-linf"] == ERROR)
    assert first_difference(_doc(merged), _doc(whole)) is None
    assert not merged.complete and merged.curve() == whole.curve()


# ----------------------------------------------------------------------------- the real CLI


@pytest.mark.slow
def test_torchrun_scan_writes_the_single_process_results(tmp_path: Path) -> None:
    model = str(zoo_model_path("cnn-digits"))
    # 300 samples: two units of 150 (one batch is one unit), one per rank.
    args = ["scan", model, "--samples", "300", "--budget", "quick", "--threads", "1", "--no-report"]
    two = _torchrun("-m", "auditkit.cli", *args, "--out", str(tmp_path / "two"), timeout=400)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run_cli(*args, "--out", str(tmp_path / "one"), "--quiet", timeout=400)
    assert one.returncode == 0, one.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert a["provenance"]["world_size"] == 1 and b["provenance"]["world_size"] == 2
    assert first_difference(without_timings(a), without_timings(b)) is None
    # Rank 0 alone wrote and printed: one results file, one summary on stdout.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["card.json", "results.json"]
    assert two.stdout.count("verdict:") == 1
    robustness = b["sections"]["robustness"]["data"]["threat_models"]["linf"]
    assert len(robustness["records"]["index"]) == 300
