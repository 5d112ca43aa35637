"""Scan benchmark: wall time and peak memory (whole-process RSS) per check, per zoo model and budget,
and IG throughput of auditkit against a direct captum call on the same inputs.

    .venv/bin/python bench/scan.py [--models cnn-digits,...,resnet16] [--budgets quick,standard]
                                   [--samples N] [--resnet-samples 128] [--threads 2] [--ig-samples 256]

Each scan runs in its own subprocess. Inside it, the kernel's peak-RSS counter (VmHWM) is reset
before each check (``echo 5 > /proc/self/clear_refs``, Linux) and read after it, so the peak
stated per check is the whole process's peak *while that check ran* (model, data and what earlier
checks left behind included: what the issue's 1.5 GB bound is about). The RSS after ``import
auditkit``, ``import auditkit.scanning`` and at the start of the first check is reported too.
``resnet16`` is bench/resnet.py's 16x16 BatchNorm ResNet (state_dict + ``--arch``), trained on
first use into ``out/resnet16``; it gets ``--resnet-samples`` samples. Times vary 2-10x on a
shared machine: compare the ratios printed, measured in one run.
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
import json, sys, time

def mem():  # (current RSS, peak RSS since the last reset), MiB
    vm = {{l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("Vm")}}
    return vm["VmRSS"] / 1024, vm["VmHWM"] / 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

out = {{"rss_start_mib": mem()[0]}}
import torch
torch.set_num_threads({threads})
out["rss_torch_mib"] = mem()[0]
import auditkit
out["rss_import_auditkit_mib"] = mem()[0]
import auditkit.scanning as scanning
out["rss_import_scanning_mib"] = mem()[0]
checks = {{}}
inner = scanning._run_check

def measured(check, ctx):
    before = mem()[0]
    if not checks:
        out["rss_first_check_mib"] = before
    reset_peak()
    section = inner(check, ctx)
    checks[check.name] = {{"rss_before_mib": before, "peak_mib": mem()[1], "rss_after_mib": mem()[0]}}
    return section

scanning._run_check = measured
t = time.perf_counter()
r = auditkit.scan({path!r}, {data!r}, arch={arch!r}, samples={samples}, budget={budget!r}, only={only!r},
                  progress=False)
out["wall_s"] = time.perf_counter() - t
for k, v in r.sections.items():
    if k in checks:
        checks[k].update(seconds=v.seconds, status=v.status)
out["checks"] = checks
out["peak_mib"] = max((c["peak_mib"] for c in checks.values()), default=0.0)
print(json.dumps(out))
"""


def model_source(model: str) -> tuple[str, str | None, str | None]:
    """``(model path, data spec, --arch)`` of a zoo model or of ``resnet16``."""
    if model == "resnet16":
        sys.path.insert(0, str(REPO))
        from bench.resnet import build_resnet16

        spec = build_resnet16(REPO / "out" / "resnet16")
        return str(spec.model), spec.data, spec.arch
    return str(REPO / "zoo" / model / "model.pt"), None, None


def bench_scan(model: str, budget: str, samples: int, threads: int, only: list[str] | None = None) -> dict:
    path, data, arch = model_source(model)
    code = SCAN_ONE.format(threads=threads, path=path, data=data, arch=arch, samples=samples, budget=budget,
                           only=only)
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
    ap.add_argument("--models", default="cnn-digits,cnn-digits-at,fraud-mlp,fraud-mlp-at,lstm-reviews,gan-digits,resnet16")
    ap.add_argument("--budgets", default="quick,standard,thorough")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--resnet-samples", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ig-samples", type=int, default=256, help="0 skips the IG comparison")
    ap.add_argument("--only", help="comma-separated checks to run (default: all)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    rows = []
    for model in args.models.split(","):
        for budget in args.budgets.split(","):
            samples = args.resnet_samples if model == "resnet16" else args.samples
            r = bench_scan(model, budget, samples, args.threads, args.only.split(",") if args.only else None)
            rows.append({"model": model, "budget": budget, "samples": samples, **r})
            if "error" in r:
                print(f"{model} {budget} {samples}: error: {r['error']}", flush=True)
                continue
            print(f"{model} {budget} samples={samples}: wall {r['wall_s']:.1f}s, peak {r['peak_mib']:.0f} MiB; "
                  f"RSS torch {r['rss_torch_mib']:.0f}, import auditkit {r['rss_import_auditkit_mib']:.0f}, "
                  f"import auditkit.scanning {r['rss_import_scanning_mib']:.0f}, "
                  f"first check {r.get('rss_first_check_mib', 0):.0f} MiB")
            print(f"  {'check':<22} {'status':<8} {'s':>7} {'RSS before':>10} {'peak MiB':>9}")
            for name, c in r["checks"].items():
                print(f"  {name:<22} {c.get('status', '?'):<8} {c.get('seconds', 0):>7.1f} "
                      f"{c['rss_before_mib']:>10.0f} {c['peak_mib']:>9.0f}", flush=True)
    ig = None
    if args.ig_samples > 0:
        ig = bench_ig(args.ig_samples, args.threads)
        print(f"\nIG on cnn-digits, {ig['n']} samples x {ig['steps']} steps: captum {ig['captum_samples_per_s']:.0f}/s, "
              f"auditkit {ig['auditkit_samples_per_s']:.0f}/s, overhead ratio {ig['overhead_ratio']:.2f} "
              f"(max |diff| {ig['max_abs_diff']:.2e})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"scans": rows, "ig": ig}, indent=1))


if __name__ == "__main__":
    main()
