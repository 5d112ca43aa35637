"""Cost and strength of the ``standard`` ensemble against its earlier settings, ``thorough`` and an
AutoAttack-standard cascade, in one process on the same samples (issue 15, DESIGN.md §7, §8).

    .venv-bench/bin/python bench/standard.py [--models cnn-digits,cnn-digits-at] [--samples 128]
        [--grids card,0.1] [--variants old,proposed,thorough,cascade] [--threads 1] [--json PATH]

Runs in the main ``.venv`` too; the ``cascade`` variant needs torchattacks (``.venv-bench``, see
bench/README.md) and is skipped with a note where it is missing.

Variants (Linf, the zoo model's card bounds, the first ``--samples`` digits test images):

* ``old``: ``run_ensemble(..., budget="standard")`` with the standard settings as they were before
  this benchmark was written (``LEGACY_STANDARD``: APGD-CE 100, APGD-T 9 targets x 100, FMN 100
  from DeepFool, Square 1000; in that order), restored for the call by patching the registry.
* ``new``: ``budget="standard"`` as the tree has it now.
* ``proposed``: ``PROPOSED_STANDARD`` (APGD-T 9 targets, 50 iterations for the top 3 and 25 for
  the other 6; the rest as ``old``), patched in like ``old``.
* ``thorough``: ``budget="thorough"`` (AutoAttack-plus: APGD-CE 5 restarts, APGD-T 9 x 200,
  APGD-DLR, FMN 300, Square 5000 x 2, HopSkipJump).
* ``cascade``: AutoAttack's standard version built from torchattacks 3.5.1 at its full settings:
  APGD-CE (100 iterations, 1 restart), APGD-T (9 targets x 100), FAB-T (9 targets x 100),
  Square (5000 queries), each on the samples all earlier ones left robust, run once per eps.

Grids: ``card`` is the card's whole Linf grid in one ensemble call; a number is that single eps.
For every model, grid and variant it reports wall seconds, forward and backward passes (the
ensemble's ``CountingModel`` counts, summed over attacks; the cascade's model is wrapped in the
same counter), robust accuracy per eps, and per pair of variants the samples one broke and the
other did not (at any eps of the grid). Timings on a shared machine are noisy: the ratios come
from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from auditkit.attacks import ensemble
from auditkit.attacks.ensemble import CountingModel, run_ensemble
from auditkit.attacks.registry import get_attack

ROOT = Path(__file__).resolve().parents[1]

# The standard budget before issue 15's cheaper protocol: attack order and per-attack settings.
LEGACY_STANDARD: dict[str, Any] = {
    "linf": ["apgd-ce-linf", "apgd-t-linf", "fmn-linf", "square-linf"],
    "l2": ["apgd-ce-l2", "apgd-t-l2", "fmn-l2", "square-l2"],
    "settings": {
        "apgd-ce-linf": {"n_iter": 100}, "apgd-ce-l2": {"n_iter": 100},
        "apgd-t-linf": {"n_iter": 100, "n_target_classes": 9}, "apgd-t-l2": {"n_iter": 100, "n_target_classes": 9},
        "fmn-linf": {"steps": 100}, "fmn-l2": {"steps": 100},
        "square-linf": {"n_queries": 1000}, "square-l2": {"n_queries": 1000},
    },
}


# The cheaper protocol measured here (issue 15): APGD-T keeps all 9 targets but runs 50
# iterations for the top 3 and 25 for the other 6 (300 steps on a robust sample, not 900).
PROPOSED_STANDARD: dict[str, Any] = {
    **LEGACY_STANDARD,
    "settings": {
        **LEGACY_STANDARD["settings"],
        "apgd-t-linf": {"n_iter": 50, "n_target_classes": 9, "n_iter_tail": 25, "n_head_targets": 3},
        "apgd-t-l2": {"n_iter": 50, "n_target_classes": 9, "n_iter_tail": 25, "n_head_targets": 3},
    },
}


@contextlib.contextmanager
def standard_as(protocol: dict[str, Any]) -> Iterator[None]:
    """Run ``budget="standard"`` with ``protocol``'s attack lists and settings; restored after."""
    saved_lists = {k: list(v) for k, v in ensemble.BUDGETS["standard"].items()}
    # The registry shares one settings dict between an attack's Linf and L2 specs: each spec
    # gets its own copy here (``AttackSpec`` is frozen, hence ``object.__setattr__``).
    saved = {name: get_attack(name).budgets for name in protocol["settings"]}
    try:
        for norm in ("linf", "l2"):
            ensemble.BUDGETS["standard"][norm] = list(protocol[norm])
        for name, s in protocol["settings"].items():
            object.__setattr__(get_attack(name), "budgets", {**saved[name], "standard": dict(s)})
        yield
    finally:
        ensemble.BUDGETS["standard"].update(saved_lists)
        for name, b in saved.items():
            object.__setattr__(get_attack(name), "budgets", b)


def load_case(name: str, samples: int, norm: str = "linf") -> tuple[nn.Module, Tensor, Tensor, tuple[float, float],
                                                                list[float]]:
    """The zoo model, the first ``samples`` digits test images, the card's bounds and ``norm`` grid."""
    from auditkit.data import load_data
    from auditkit.loading import load_model

    loaded = load_model(str(ROOT / "zoo" / name / "model.pt"))
    module = getattr(loaded, "module", loaded)
    module.eval()
    data = load_data("digits")
    x = torch.from_numpy(data.x_test[:samples]).float()
    y = torch.from_numpy(data.y_test[:samples]).long()
    card = loaded.card
    return module, x, y, (float(card.bounds[0]), float(card.bounds[1])), [float(e) for e in card.epsilons[norm]]


def run_variant(variant: str, model: nn.Module, x: Tensor, y: Tensor, bounds: tuple[float, float],
                grid: list[float], norm: str = "linf") -> dict[str, Any]:
    """One variant on the case: ``robust`` bool [N, K] over ``grid``, seconds, passes, details."""
    torch.manual_seed(0)
    np.random.seed(0)
    if variant == "cascade":
        return run_cascade(model, x, y, bounds, grid, norm)
    budget = "thorough" if variant == "thorough" else "standard"
    protocols = {"old": LEGACY_STANDARD, "proposed": PROPOSED_STANDARD}
    ctx = standard_as(protocols[variant]) if variant in protocols else contextlib.nullcontext()
    with ctx, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = run_ensemble(model, x, y, norm, [0.0, *grid], budget=budget, bounds=bounds, seed=0, batch_size=len(x))
        sec = time.perf_counter() - t0
    pa = res.per_attack
    robust = np.stack([res.robust_at(e) for e in grid], axis=1)
    return {
        "seconds": sec, "robust": robust,
        "forwards": sum(v["forward_passes"] for v in pa.values()),
        "backwards": sum(v["backward_passes"] for v in pa.values()),
        "per_attack": {k: {"seconds": round(v["seconds"], 2), "forward_passes": v["forward_passes"],
                           "backward_passes": v["backward_passes"], "n_attacked_at_eps": v["n_attacked_at_eps"][1:],
                           "cumulative_robust_accuracy": v["cumulative_robust_accuracy"][1:]}
                       for k, v in pa.items()},
        "complete": res.complete,
    }


def run_cascade(model: nn.Module, x: Tensor, y: Tensor, bounds: tuple[float, float],
                grid: list[float], norm: str = "linf") -> dict[str, Any]:
    """AutoAttack standard from torchattacks components, each attack on the still-robust
    samples, independently at every eps of ``grid``."""
    import torchattacks

    if bounds != (0.0, 1.0):
        raise ValueError("torchattacks assumes inputs in [0, 1]")
    ta_norm = {"linf": "Linf", "l2": "L2"}[norm]
    counter = CountingModel(model).eval()
    n_classes = int(model(x[:1]).shape[1])
    robust = np.zeros((len(x), len(grid)), bool)
    per_attack: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for k, eps in enumerate(grid):
        with torch.no_grad():
            alive = (model(x).argmax(1) == y).numpy()
        if eps == 0:
            robust[:, k] = alive
            continue
        attacks = [
            ("apgd-ce", torchattacks.APGD(counter, norm=ta_norm, eps=eps, steps=100, n_restarts=1, loss="ce", seed=0)),
            ("apgd-t", torchattacks.APGDT(counter, norm=ta_norm, eps=eps, steps=100, n_restarts=1, n_classes=n_classes,
                                          seed=0)),
            ("fab-t", torchattacks.FAB(counter, norm=ta_norm, eps=eps, steps=100, n_restarts=1, multi_targeted=True,
                                       n_classes=n_classes, seed=0)),
            ("square", torchattacks.Square(counter, norm=ta_norm, eps=eps, n_queries=5000, n_restarts=1, seed=0)),
        ]
        for name, atk in attacks:
            rows = np.flatnonzero(alive)
            if rows.size == 0:
                break
            f0, b0, s0 = counter.forwards, counter.backwards, time.perf_counter()
            idx = torch.as_tensor(rows)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                adv = atk(x[idx], y[idx]).detach()
            delta = (adv - x[idx]).flatten(1)
            inside = (delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)) <= eps + 1e-5
            with torch.no_grad():
                fooled = ((model(adv).argmax(1) != y[idx]) & inside).numpy()
            alive[rows[fooled]] = False
            d = per_attack.setdefault(name, {"seconds": 0.0, "forward_passes": 0, "backward_passes": 0, "broken": 0})
            d["seconds"] += time.perf_counter() - s0
            d["forward_passes"] += counter.forwards - f0
            d["backward_passes"] += counter.backwards - b0
            d["broken"] += int(fooled.sum())
        robust[:, k] = alive
    return {"seconds": time.perf_counter() - t0, "robust": robust, "forwards": counter.forwards,
            "backwards": counter.backwards, "per_attack": per_attack, "complete": True}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Samples (any eps of the grid) ``a`` left robust that ``b`` broke, and the converse."""
    return {"broken_by_b_missed_by_a": int((a["robust"] & ~b["robust"]).any(axis=1).sum()),
            "broken_by_a_missed_by_b": int((b["robust"] & ~a["robust"]).any(axis=1).sum()),
            "cells_b_only": int((a["robust"] & ~b["robust"]).sum())}


def run_row(name: str, norm: str, g: str, grid: list[float], model: nn.Module, x: Tensor, y: Tensor,
            bounds: tuple[float, float], variants: list[str], cascade_grids: str) -> dict[str, Any]:
    """Every variant on one model, norm and grid; printed as it goes."""
    out: dict[str, dict[str, Any]] = {}
    for v in variants:
        if v == "cascade" and g not in cascade_grids.split(","):
            continue
        out[v] = r = run_variant(v, model, x, y, bounds, grid, norm)
        ra = " ".join(f"{a:.3f}" for a in r["robust"].mean(axis=0))
        print(f"{name:<14} {norm:<4} {g:<5} {v:<9} {r['seconds']:8.1f}s fwd {r['forwards']:>9} bwd {r['backwards']:>9}"
              f"  robust acc {ra}", flush=True)
        print(f"    per attack: {json.dumps(r['per_attack'])}", flush=True)
    row: dict[str, Any] = {"model": name, "norm": norm, "grid": g, "epsilons": grid, "n": len(x), "variants": {},
                           "pairs": {}}
    for v, r in out.items():
        row["variants"][v] = {"seconds": r["seconds"], "forwards": r["forwards"], "backwards": r["backwards"],
                              "robust_accuracy": r["robust"].mean(axis=0).round(4).tolist(),
                              "per_attack": r["per_attack"], "complete": r["complete"]}
    for cand in ("new", "proposed"):
        for ref in ("old", "thorough", "cascade"):
            if cand in out and ref in out:
                c = compare(out[cand], out[ref])
                c["time_ratio"] = out[ref]["seconds"] / out[cand]["seconds"]
                c["pass_ratio"] = (out[ref]["forwards"] + out[ref]["backwards"]) / max(
                    1, out[cand]["forwards"] + out[cand]["backwards"])
                row["pairs"][f"{ref}/{cand}"] = c
                print(f"    {ref} vs {cand}: {ref} {c['time_ratio']:.2f}x the time, {c['pass_ratio']:.2f}x the passes; "
                      f"samples {ref} broke and {cand} missed: {c['broken_by_b_missed_by_a']}, {cand} broke and "
                      f"{ref} missed: {c['broken_by_a_missed_by_b']}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn-digits,cnn-digits-at")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--grids", default="card,0.1", help="'card' (the card's Linf grid) and/or single eps values")
    ap.add_argument("--variants", default="old,proposed,thorough,cascade")
    ap.add_argument("--cascade-grids", default="0.1", help="grids on which the (slow) cascade runs too")
    ap.add_argument("--norms", default="linf", help="linf and/or l2 (single eps grids: first norm only)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    if "cascade" in variants:
        try:
            import torchattacks  # noqa: F401
        except ImportError:
            print("torchattacks is not installed (run in .venv-bench): the cascade is skipped")
            variants.remove("cascade")
    env = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "machine": platform.platform(),
           "torch": torch.__version__, "samples": args.samples}
    print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for name in args.models.split(","):
        for norm in args.norms.split(","):
            model, x, y, bounds, card_grid = load_case(name, args.samples, norm)
            for g in args.grids.split(","):
                grid = [e for e in card_grid if e > 0] if g == "card" else [float(g)]
                if g != "card" and norm != args.norms.split(",")[0]:
                    continue  # a single eps is given in the first norm's units
                results.append(run_row(name, norm, g, grid, model, x, y, bounds, variants, args.cascade_grids))
    env["loadavg_end"] = os.getloadavg()
    env["total_s"] = time.perf_counter() - started
    print(f"total {env['total_s']:.0f}s, load average at start {env['loadavg_start']}, at end {env['loadavg_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": env, "results": results}, indent=1))


if __name__ == "__main__":
    main()
