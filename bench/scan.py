"""Scan benchmark: wall time and peak memory per zoo model and budget, and IG throughput of
auditkit against a direct captum call on the same inputs.

    .venv/bin/python bench/scan.py [--models cnn-digits,...] [--budgets quick,standard] [--samples N]
                                   [--threads 2] [--ig-samples 256]

Each scan runs in its own subprocess so that peak RSS (ru_maxrss) is per scan. Times vary 2-10x
on a shared machine: compare the ratios printed, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCAN_ONE = """
import json, resource, sys, time, torch
torch.set_num_threads({threads})
import auditkit
t = time.perf_counter()
r = auditkit.scan({path!r}, samples={samples}, budget={budget!r}, progress=False)
wall = time.perf_counter() - t
print(json.dumps({{"wall_s": wall, "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "checks": {{k: v.seconds for k, v in r.sections.items()}}}}))
"""


def bench_scan(model: str, budget: str, samples: int, threads: int) -> dict:
    path = str(REPO / "zoo" / model / "model.pt")
    code = SCAN_ONE.format(threads=threads, path=path, samples=samples, budget=budget)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_ig(n: int, threads: int, steps: int = 32, repeats: int = 3) -> dict:
    """IG on cnn-digits: auditkit.explain.attribute vs captum.attr.IntegratedGradients directly."""
    import torch
    from captum.attr import IntegratedGradients

    from auditkit.data import load_data
    from auditkit.explain.methods import attribute
    from auditkit.zoo import get_model

    torch.set_num_threads(threads)
    model, card = get_model("cnn-digits")
    data = load_data("digits")
    reps = -(-n // len(data.x_test))
    x = torch.from_numpy(data.x_test).repeat(reps, 1, 1, 1)[:n]
    target = model(x).argmax(1)

    def direct() -> torch.Tensor:
        ig = IntegratedGradients(model)
        outs = [ig.attribute(x[i:i + 64], baselines=torch.zeros_like(x[i:i + 64]), target=target[i:i + 64],
                             n_steps=steps) for i in range(0, n, 64)]
        return torch.cat(outs)

    def ours() -> torch.Tensor:
        return attribute("ig", model, x, target, card, n_steps=steps, batch_size=64)

    timings = {}
    for name, fn in (("captum", direct), ("auditkit", ours)):
        fn()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        timings[name] = best
    diff = float((direct() - ours()).abs().max())
    return {"n": n, "steps": steps, "captum_s": timings["captum"], "auditkit_s": timings["auditkit"],
            "captum_samples_per_s": n / timings["captum"], "auditkit_samples_per_s": n / timings["auditkit"],
            "overhead_ratio": timings["auditkit"] / timings["captum"], "max_abs_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn-digits,lstm-reviews,fraud-mlp,gan-digits")
    ap.add_argument("--budgets", default="quick,standard,thorough")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ig-samples", type=int, default=256)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    rows = []
    print(f"{'model':<14} {'budget':<9} {'samples':>7} {'wall s':>8} {'peak MiB':>9}  slowest checks")
    for model in args.models.split(","):
        for budget in args.budgets.split(","):
            r = bench_scan(model, budget, args.samples, args.threads)
            rows.append({"model": model, "budget": budget, "samples": args.samples, **r})
            if "error" in r:
                print(f"{model:<14} {budget:<9} {args.samples:>7}  error: {r['error']}")
                continue
            slow = sorted(r["checks"].items(), key=lambda kv: -kv[1])[:3]
            print(f"{model:<14} {budget:<9} {args.samples:>7} {r['wall_s']:>8.1f} {r['max_rss_mib']:>9.0f}  "
                  + ", ".join(f"{k} {v:.1f}s" for k, v in slow), flush=True)
    ig = bench_ig(args.ig_samples, args.threads)
    print(f"\nIG on cnn-digits, {ig['n']} samples x {ig['steps']} steps: captum {ig['captum_samples_per_s']:.0f}/s, "
          f"auditkit {ig['auditkit_samples_per_s']:.0f}/s, overhead ratio {ig['overhead_ratio']:.2f} "
          f"(max |diff| {ig['max_abs_diff']:.2e})")
    if args.json:
        args.json.write_text(json.dumps({"scans": rows, "ig": ig}, indent=1))


if __name__ == "__main__":
    main()
