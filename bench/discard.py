"""What the near runs' discarding costs in strength and saves in passes (issue 15; bench/README.md).

    .venv/bin/python bench/discard.py [--models cnn-digits,cnn-digits-at,fraud-mlp,resnet16]
        [--samples 256] [--norm linf|l2] [--threads 1] [--json PATH]

For every model and every radius of its benchmark grid (Linf: ``bench/attacks.py``'s cases; L2:
``L2_GRIDS``, the cards' L2 radii, and for fraud-mlp radii in its unit feature space), the
three near-run attacks of the ``standard`` budget (``auditkit.attacks.ensemble.NEAR_SETTINGS``:
APGD-CE 100 iterations, APGD-T 9 targets x 100, Square 1000 queries, random starts), called
through the registry with those overrides as the ensemble calls them, run on every
clean-correct sample twice with the same seed: with the budget's ``discard_after`` and without.
The population is wider than the near runs' (there, only samples FMN brought within 1.25 eps and
that the short runs left robust): every sample the attack can break late is a test of the rule.

Printed per attack (all radii of all models pooled, and per model): samples broken without
discarding and missed with it (the strength the rule costs; the goal is 0), samples broken with
discarding only (chance: the runs diverge once a batch shrinks), and the passes each run took
(``CountingModel``: forward + backward) with their ratio. Needs only the main ``.venv`` (the
ResNet is trained by ``bench/resnet.py`` on first use, about ten seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditkit.attacks.ensemble import NEAR_SETTINGS, CountingModel  # noqa: E402
from auditkit.attacks.registry import get_attack  # noqa: E402
from bench.attacks import load_case  # noqa: E402


# L2 radii: the cards' (cnn-digits, cnn-digits-at; resnet16's with 0.25 added, since its samples
# all break by 0.5); fraud-mlp has no card grid: radii in its unit space [0, 1]^30.
L2_GRIDS = {"cnn-digits": [0.25, 0.5, 1.0, 1.5, 2.0, 3.0], "cnn-digits-at": [0.25, 0.5, 1.0, 1.5, 2.0, 3.0],
            "fraud-mlp": [0.05, 0.1, 0.25, 0.5], "resnet16": [0.25, 0.5, 1.0, 2.0]}


def near_run(name: str, discard: bool) -> dict[str, Any]:
    """The near-run overrides of ``name`` (``apgd-ce``, ``apgd-t``, ``square``), as the ensemble
    passes them to the registry on top of the standard budget, with or without discarding."""
    cfg = dict(NEAR_SETTINGS["standard"][name])
    if not discard:
        cfg.pop("discard_after", None)
    return cfg


def measure(model_name: str, samples: int, norm: str) -> list[dict[str, Any]]:
    case = load_case(model_name, samples)
    with torch.no_grad():
        ok = case.model(case.x).argmax(dim=1) == case.y
    x, y = case.x[ok], case.y[ok]
    rows = []
    for eps in case.grid if norm == "linf" else L2_GRIDS[model_name]:
        for name in ("apgd-ce", "apgd-t", "square"):
            out: dict[str, Any] = {}
            for discard in (False, True):
                counter = CountingModel(case.model).eval()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # The ensemble's own call of a near run (random start, seed 0).
                    res = get_attack(f"{name}-{norm}").run(counter, x, y, [eps], case.bounds, 0, budget="standard",
                                                           batch_size=len(x), overrides=near_run(name, discard))[0]
                out[discard] = (res.success.cpu().numpy(), counter.forwards + counter.backwards)
            (full, p_full), (disc, p_disc) = out[False], out[True]
            rows.append({"model": model_name, "norm": norm, "eps": eps, "attack": name, "n": int(len(x)),
                         "broken_full": int(full.sum()), "broken_discard": int(disc.sum()),
                         "lost": np.flatnonzero(full & ~disc).tolist(),
                         "gained": np.flatnonzero(disc & ~full).tolist(),
                         "passes_full": int(p_full), "passes_discard": int(p_disc)})
            r = rows[-1]
            print(f"{model_name:<14} eps {eps:<6} {name:<8} broken {r['broken_full']:>4} / {r['broken_discard']:>4} "
                  f"of {r['n']}  lost {len(r['lost'])} gained {len(r['gained'])}  passes {p_full:>9} -> {p_disc:>9} "
                  f"({p_full / max(p_disc, 1):.2f}x)", flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> None:
    print("\nper attack, all models and radii pooled (the goal: lost 0):")
    for name in ("apgd-ce", "apgd-t", "square"):
        rs = [r for r in rows if r["attack"] == name]
        full, disc = sum(r["passes_full"] for r in rs), sum(r["passes_discard"] for r in rs)
        print(f"  {name:<8} broken without/with discarding {sum(r['broken_full'] for r in rs)} / "
              f"{sum(r['broken_discard'] for r in rs)}, lost {sum(len(r['lost']) for r in rs)}, gained "
              f"{sum(len(r['gained']) for r in rs)}, passes {full} -> {disc} ({full / max(disc, 1):.2f}x fewer)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn-digits,cnn-digits-at,fraud-mlp,resnet16")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--norm", choices=["linf", "l2"], default="linf")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    rows = [r for m in a.models.split(",") for r in measure(m, a.samples, a.norm)]
    summarise(rows)
    print(f"total {time.perf_counter() - t0:.0f}s")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"samples": a.samples, "norm": a.norm, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
