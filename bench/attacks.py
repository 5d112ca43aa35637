"""Cost and strength of auditkit's ``standard`` ensemble against an AutoAttack-standard cascade and
``thorough``, in one process on the same samples (issue 15; DESIGN.md §7, §8).

    .venv-bench/bin/python bench/attacks.py [--models cnn-digits,cnn-digits-at,fraud-mlp,resnet16]
        [--samples 256] [--grids headline,card] [--variants standard,thorough,cascade]
        [--radii] [--threads 1] [--json PATH] [--cascade-cache DIR]

The cascade needs torchattacks (``.venv-bench``, see bench/README.md); in the main ``.venv`` it
is skipped with a note.

Variants (Linf; inputs and grids per model below):

* ``standard``: ``run_ensemble(..., budget="standard")`` as the tree has it.
* ``thorough``: ``budget="thorough"``, the uncompromised AutoAttack-plus protocol.
* ``legacy``: the standard budget as it was before issue 15 (APGD-CE 100, APGD-T 9 x 100,
  FMN 100, Square 1000, in that order, random starts), patched in for the call.
* ``cascade``: AutoAttack's standard version from torchattacks 3.5.1 at its full settings:
  APGD-CE (100 iterations), APGD-T (9 targets x 100), FAB-T (9 targets x 100), Square (5000
  queries), each on the samples every earlier one left robust, run independently at every eps of
  the grid (as a user would run AutoAttack per radius). On a two-class model torchattacks'
  APGD-T and DLR index a third logit and raise: the cascade then runs without APGD-T (noted).

Models and inputs (the first ``--samples`` test samples):

* ``cnn-digits``, ``cnn-digits-at`` (adversarially trained: robust samples, the expensive case):
  digits 8x8 in [0, 1], the card's Linf grid; headline eps 0.1.
* ``fraud-mlp``: the model composed with ``x = lo + u * (hi - lo)`` (the card's feature ranges,
  ``bench/libraries.py``'s ``UnitModel``), inputs ``u`` in [0, 1]^F, fraud and legit rows
  alternating; grid 0.01, 0.02, 0.05, 0.1 in that unit; headline 0.05.
* ``cnn-digits-masked``: cnn-digits behind an input quantiser (inputs rounded to multiples of
  1/16 with no straight-through gradient: every input gradient is zero), the planted gradient
  masking of tests/test_masking.py. The digits are multiples of 1/16 already, so the clean
  predictions are cnn-digits'. Not in the default list: it measures strength where only
  black-box search works (AutoAttack's Square), not cost.
* ``resnet16``: a 16x16x3 BatchNorm ResNet the benchmark trains itself (``bench/resnet.py``,
  about ten seconds; a model the zoo does not know), its card's Linf grid; headline eps 0.02.

Grids: ``headline`` is the model's headline eps alone, ``card`` its whole grid in one ensemble
call. With ``--radii`` the standard ensemble also runs at every radius of the grid alone, so that
the whole-grid cost can be compared with the hardest single radius.

``--cascade-cache DIR`` stores the cascade's result per model weights, inputs, grid and library
versions and reuses it, so that protocol candidates are compared against the same reference
without rerunning it (its timings are then those of the run that wrote it).

For every model, grid and variant: wall seconds, forward+backward passes (the ensemble's
``CountingModel``; the cascade's model is wrapped in the same counter), robust accuracy per eps,
and per pair the samples one broke at some eps of the grid and the other did not. The issue's
targets are checked and printed (time >= 5x and passes >= 10x fewer than the cascade, robust
accuracy <= the cascade's + 0.5 points at every eps, <= 0.5% of samples broken by the cascade and
missed by standard, whole grid <= 1.5x the hardest radius). Timings on a shared machine are noisy:
the ratios come from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench.resnet, bench.libraries

from auditkit.attacks import ensemble  # noqa: E402
from auditkit.attacks.ensemble import CountingModel, run_ensemble  # noqa: E402
from auditkit.attacks.registry import get_attack  # noqa: E402
from bench.libraries import NORM_TOL, ImageView  # noqa: E402  (torchattacks' Square wants images)

# The standard budget before issue 15: attack order, settings, random starts.
LEGACY_STANDARD: dict[str, Any] = {
    "linf": ["apgd-ce-linf", "apgd-t-linf", "fmn-linf", "square-linf"],
    "l2": ["apgd-ce-l2", "apgd-t-l2", "fmn-l2", "square-l2"],
    "warm_start": False,
    "settings": {
        **{f"apgd-ce-{n}": {"n_iter": 100} for n in ("linf", "l2")},
        **{f"apgd-t-{n}": {"n_iter": 100, "n_target_classes": 9} for n in ("linf", "l2")},
        **{f"fmn-{n}": {"steps": 100} for n in ("linf", "l2")},
        **{f"square-{n}": {"n_queries": 1000} for n in ("linf", "l2")},
    },
}

# Targets of the issue (bench/README.md).
TIME_RATIO_GOAL, PASS_RATIO_GOAL, ACC_SLACK, MISSED_SHARE, GRID_COST_GOAL = 5.0, 10.0, 0.005, 0.005, 1.5


@dataclass
class Case:
    """A model and its benchmark inputs ``x [N, ...]`` in ``bounds``, labels ``y [N]``."""

    name: str
    model: nn.Module
    x: Tensor
    y: Tensor
    bounds: tuple[float, float]
    grid: list[float]
    headline: float
    num_classes: int
    note: str


def load_case(name: str, samples: int) -> Case:
    """The benchmark inputs of ``name`` (see the module docstring)."""
    from auditkit.data import load_data
    from auditkit.loading import load_model

    if name == "cnn-digits-masked":
        c = load_case("cnn-digits", samples)
        return Case(name, InputQuantiser(c.model).eval(), c.x, c.y, c.bounds, c.grid, c.headline, c.num_classes,
                    "cnn-digits behind an input quantiser (zero input gradients)")
    if name in ("cnn-digits", "cnn-digits-at"):
        loaded = load_model(str(ROOT / "zoo" / name / "model.pt"))
        data = load_data("digits")
        card = loaded.card
        return Case(name, loaded.module.eval(), torch.from_numpy(data.x_test[:samples]).float(),
                    torch.from_numpy(data.y_test[:samples]).long(), (0.0, 1.0),
                    [float(e) for e in card.epsilons["linf"] if e > 0], 0.1, card.num_classes, "card grid")
    if name == "fraud-mlp":
        from bench.libraries import load_cases

        c = load_cases(["fraud-mlp"], samples, [], [0.05])[0]
        return Case(name, c.model, c.x, c.y, c.bounds, [0.01, 0.02, 0.05, 0.1], 0.05, c.num_classes,
                    "unit feature space x = lo + u*(hi-lo)")
    if name == "resnet16":
        from bench.resnet import build_resnet16

        spec = build_resnet16(ROOT / "out" / "bench-resnet16")
        loaded = load_model(str(spec.model), arch=spec.arch)
        data = np.load(spec.data.removeprefix("npz:"))
        return Case(name, loaded.module.eval(), torch.from_numpy(data["x_test"][:samples]).float(),
                    torch.from_numpy(data["y_test"][:samples]).long(), (0.0, 1.0),
                    [float(e) for e in loaded.card.epsilons["linf"] if e > 0], 0.02, loaded.card.num_classes,
                    f"bench/resnet.py, test accuracy {spec.test_accuracy:.3f}")
    raise SystemExit(f"unknown model {name!r}: use cnn-digits, cnn-digits-at, cnn-digits-masked, fraud-mlp, resnet16")


class InputQuantiser(nn.Module):
    """``model(round(16 x) / 16)``: no straight-through estimator, so the input gradient is zero
    everywhere (planted gradient masking)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * 16) / 16)


@contextlib.contextmanager
def standard_as(protocol: dict[str, Any]) -> Iterator[None]:
    """Run ``budget="standard"`` with ``protocol``'s attack lists, settings and warm-start flag."""
    saved_lists = {k: list(v) for k, v in ensemble.BUDGETS["standard"].items()}
    saved_warm = ensemble.WARM_START["standard"]
    saved = {name: get_attack(name).budgets for name in protocol["settings"]}
    try:
        for norm in ("linf", "l2"):
            ensemble.BUDGETS["standard"][norm] = list(protocol[norm])
        ensemble.WARM_START["standard"] = protocol["warm_start"]
        for name, s in protocol["settings"].items():
            # AttackSpec is frozen; each spec gets its own budgets dict for the call.
            object.__setattr__(get_attack(name), "budgets", {**saved[name], "standard": dict(s)})
        yield
    finally:
        ensemble.BUDGETS["standard"].update(saved_lists)
        ensemble.WARM_START["standard"] = saved_warm
        for name, b in saved.items():
            object.__setattr__(get_attack(name), "budgets", b)


def run_auditkit(variant: str, case: Case, grid: list[float]) -> dict[str, Any]:
    """``standard``, ``thorough`` or ``legacy`` on the case: ``robust`` bool [N, K] over ``grid``."""
    torch.manual_seed(0)
    budget = "thorough" if variant == "thorough" else "standard"
    ctx = standard_as(LEGACY_STANDARD) if variant == "legacy" else contextlib.nullcontext()
    with ctx, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = run_ensemble(case.model, case.x, case.y, "linf", [0.0, *grid], budget=budget, bounds=case.bounds,
                           seed=0, batch_size=len(case.x))
        sec = time.perf_counter() - t0
    pa = res.per_attack
    return {
        "seconds": sec, "robust": np.stack([res.robust_at(e) for e in grid], axis=1),
        "passes": sum(v["forward_passes"] + v["backward_passes"] for v in pa.values()),
        "per_attack": {k: {"seconds": round(v["seconds"], 2), "passes": v["forward_passes"] + v["backward_passes"],
                           "n_attacked_at_eps": v["n_attacked_at_eps"][1:]} for k, v in pa.items()},
        "complete": res.complete,
    }


def run_cascade(case: Case, grid: list[float], seed: int = 0) -> dict[str, Any]:
    """AutoAttack standard from torchattacks components, each attack on the still-robust samples,
    independently at every eps of ``grid``; ``seed`` seeds every attack (another seed measures
    the cascade's own run-to-run disagreement: the noise floor of "samples one broke and the
    other missed")."""
    import torchattacks

    model, x, y = case.model, case.x, case.y
    image_view = x.dim() == 2
    if image_view:
        model, x = ImageView(model).eval(), x[:, None, None, :]
    counter = CountingModel(model).eval()
    robust = np.zeros((len(x), len(grid)), bool)
    per_attack: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    for k, eps in enumerate(grid):
        with torch.no_grad():
            alive = (model(x).argmax(1) == y).numpy()
        attacks = [
            ("apgd-ce", lambda: torchattacks.APGD(counter, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce",
                                                  seed=seed)),
            ("apgd-t", lambda: torchattacks.APGDT(counter, norm="Linf", eps=eps, steps=100, n_restarts=1,
                                                  n_classes=case.num_classes, seed=seed)),
            ("fab-t", lambda: torchattacks.FAB(counter, norm="Linf", eps=eps, steps=100, n_restarts=1,
                                               multi_targeted=True, n_classes=case.num_classes, seed=seed)),
            ("square", lambda: torchattacks.Square(counter, norm="Linf", eps=eps, n_queries=5000, n_restarts=1,
                                                   seed=seed)),
        ]
        for name, make in attacks:
            if name == "apgd-t" and case.num_classes < 3:
                if not notes:
                    notes.append("torchattacks' APGD-T (DLR) needs >= 3 classes: skipped on this two-class model")
                continue
            rows = np.flatnonzero(alive)
            if rows.size == 0:
                break
            f0, b0, s0 = counter.forwards, counter.backwards, time.perf_counter()
            idx = torch.as_tensor(rows)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                adv = make()(x[idx], y[idx]).detach()
            delta = (adv - x[idx]).flatten(1).abs().amax(1)
            with torch.no_grad():
                fooled = ((model(adv).argmax(1) != y[idx]) & (delta <= eps + NORM_TOL)).numpy()
            alive[rows[fooled]] = False
            d = per_attack.setdefault(name, {"seconds": 0.0, "passes": 0, "broken": 0})
            d["seconds"] = round(d["seconds"] + time.perf_counter() - s0, 2)
            d["passes"] += counter.forwards - f0 + counter.backwards - b0
            d["broken"] += int(fooled.sum())
        robust[:, k] = alive
    return {"seconds": time.perf_counter() - t0, "robust": robust, "passes": counter.forwards + counter.backwards,
            "per_attack": per_attack, "complete": True, "notes": notes}


def compare(cand: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """Paired figures of ``cand`` against ``ref`` over the same samples and grid."""
    n = cand["robust"].shape[0]
    missed = int((cand["robust"] & ~ref["robust"]).any(axis=1).sum())
    return {
        "time_ratio": ref["seconds"] / max(cand["seconds"], 1e-9),
        "pass_ratio": ref["passes"] / max(cand["passes"], 1),
        "max_acc_excess": float((cand["robust"].mean(axis=0) - ref["robust"].mean(axis=0)).max()),
        "missed": missed, "missed_share": missed / n,
        "extra": int((~cand["robust"] & ref["robust"]).any(axis=1).sum()),
    }


def verdict(c: dict[str, Any]) -> str:
    checks = [("time", c["time_ratio"] >= TIME_RATIO_GOAL), ("passes", c["pass_ratio"] >= PASS_RATIO_GOAL),
              ("accuracy", c["max_acc_excess"] <= ACC_SLACK + 1e-12), ("missed", c["missed_share"] <= MISSED_SHARE)]
    return ", ".join(f"{k} {'ok' if ok else 'NOT MET'}" for k, ok in checks)


def _cascade_key(case: Case, grid: list[float]) -> str:
    """What the cascade's result depends on: model weights, inputs, labels, grid, torchattacks."""
    import hashlib

    import torchattacks

    h = hashlib.sha256()
    for t in [*case.model.state_dict().values(), case.x, case.y]:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([grid, torchattacks.__version__, torch.__version__]).encode())
    return f"{case.name}-{len(case.x)}-{h.hexdigest()[:16]}"


def cascade_cached(case: Case, grid: list[float], cache: Path | None) -> dict[str, Any]:
    """:func:`run_cascade`, read from ``cache/KEY.json`` when the same model, inputs and grid ran
    before (the cascade is the expensive, fixed reference: comparing protocol candidates against
    it should not rerun it). Cached timings are from the run that wrote them; marked ``cached``."""
    if cache is None:
        return run_cascade(case, grid)
    path = cache / f"{_cascade_key(case, grid)}.json"
    if path.is_file():
        r = json.loads(path.read_text())
        return {**r, "robust": np.array(r["robust"], bool), "notes": [*r["notes"], "cached: " + r["date"]]}
    r = run_cascade(case, grid)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**r, "robust": r["robust"].tolist(),
                                "date": datetime.datetime.now().isoformat(timespec="seconds")}))
    return r


def run_row(case: Case, g: str, variants: list[str], cache: Path | None = None) -> dict[str, Any]:
    grid = [case.headline] if g == "headline" else case.grid
    out: dict[str, dict[str, Any]] = {}
    for v in variants:
        out[v] = r = cascade_cached(case, grid, cache) if v == "cascade" else run_auditkit(v, case, grid)
        acc = " ".join(f"{a:.3f}" for a in r["robust"].mean(axis=0))
        print(f"{case.name:<14} {g:<8} {v:<9} {r['seconds']:8.1f}s passes {r['passes']:>9}  robust acc {acc}"
              + (f"  ({'; '.join(r['notes'])})" if r.get("notes") else ""), flush=True)
        print(f"    per attack: {json.dumps(r['per_attack'])}", flush=True)
    row: dict[str, Any] = {"model": case.name, "note": case.note, "grid": g, "epsilons": grid, "n": len(case.x),
                           "variants": {v: {k: (r[k].mean(axis=0).round(4).tolist() if k == "robust" else r[k])
                                            for k in ("seconds", "passes", "robust", "per_attack", "complete")}
                                        for v, r in out.items()},
                           "pairs": {}}
    for ref in ("cascade", "thorough", "legacy"):
        if "standard" in out and ref in out:
            c = compare(out["standard"], out[ref])
            row["pairs"][f"standard/{ref}"] = c
            print(f"    standard vs {ref}: {c['time_ratio']:.2f}x less time, {c['pass_ratio']:.2f}x fewer passes, "
                  f"robust acc excess {100 * c['max_acc_excess']:+.1f} pt, {ref} broke and standard missed "
                  f"{c['missed']} ({100 * c['missed_share']:.1f}%), standard broke and {ref} missed {c['extra']}"
                  + (f"  -> {verdict(c)}" if ref == "cascade" else ""), flush=True)
    return row


def run_radii(case: Case) -> dict[str, Any]:
    """The standard ensemble at each radius alone and on the whole grid: cost ratio."""
    single = {e: run_auditkit("standard", case, [e]) for e in case.grid}
    whole = run_auditkit("standard", case, case.grid)
    hardest_p = max(single, key=lambda e: single[e]["passes"])
    hardest_s = max(single, key=lambda e: single[e]["seconds"])
    res = {
        "single": {str(e): {"seconds": r["seconds"], "passes": r["passes"]} for e, r in single.items()},
        "grid": {"seconds": whole["seconds"], "passes": whole["passes"]},
        "hardest_by_passes": hardest_p, "pass_ratio": whole["passes"] / max(1, single[hardest_p]["passes"]),
        "hardest_by_time": hardest_s, "time_ratio": whole["seconds"] / max(1e-9, single[hardest_s]["seconds"]),
        "same_verdicts": bool(all((whole["robust"][:, k] == single[e]["robust"][:, 0]).all()
                                  for k, e in enumerate(case.grid))),
    }
    print(f"{case.name:<14} radii    standard grid {whole['seconds']:.1f}s / {whole['passes']} passes; hardest radius "
          f"{hardest_p} {single[hardest_p]['passes']} passes ({res['pass_ratio']:.2f}x), by time {hardest_s} "
          f"({res['time_ratio']:.2f}x) -> {'ok' if res['pass_ratio'] <= GRID_COST_GOAL else 'NOT MET'}; per radius: "
          + ", ".join(f"{e}: {r['passes']}" for e, r in single.items()), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn-digits,cnn-digits-at,fraud-mlp,resnet16")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--grids", default="headline,card", help="headline and/or card")
    ap.add_argument("--variants", default="standard,thorough,cascade", help="standard, thorough, legacy, cascade")
    ap.add_argument("--radii", action="store_true", help="also run standard at each radius alone (grid cost)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cascade-cache", type=Path, default=None,
                    help="reuse the cascade's result for the same model, inputs and grid (e.g. out/cascade-cache): "
                         "its time ratio then compares runs of different moments")
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
    radii: dict[str, Any] = {}
    for name in args.models.split(","):
        case = load_case(name, args.samples)
        with torch.no_grad():
            clean = float((case.model(case.x).argmax(1) == case.y).float().mean())
        print(f"{name}: {len(case.x)} samples, clean accuracy {clean:.3f}, grid {case.grid}, headline {case.headline}"
              f" ({case.note})", flush=True)
        for g in args.grids.split(","):
            results.append(run_row(case, g, variants, args.cascade_cache))
        if args.radii:
            radii[name] = run_radii(case)
    env["loadavg_end"] = os.getloadavg()
    env["total_s"] = time.perf_counter() - started
    print(f"total {env['total_s']:.0f}s, load average at start {env['loadavg_start']}, at end {env['loadavg_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": env, "results": results, "radii": radii}, indent=1))


if __name__ == "__main__":
    main()
