"""Distributed scan benchmark: the same scan on 1 process and under torchrun on N (gloo, CPU).

    .venv/bin/python bench/distributed.py [--model cnn-digits] [--budget standard]
                                          [--only robustness] [--samples 450] [--nproc 2]
                                          [--rounds 1]

Each run is a subprocess of the real CLI (``auditkit.cli scan``), ``--threads 1`` per process
(and OMP_NUM_THREADS=1), so that N processes use N cores; the single-process run is the same
command without torchrun. Printed per run: wall time of the whole command (start-up, model
load, process-group rendezvous included), the scan's own wall time and the checks' seconds
(provenance) and the seconds spent inside the attack ensembles (summed over units: the sharded
work), then the speedup (1-process wall / N-process wall) and whether the two
results.json are identical once timing fields are dropped (tests/test_distributed.py's rule),
and the speedup Amdahl's law allows given the sharded share of the 1-process run.
With ``--rounds`` > 1 the runs alternate (1, N, 1, N...) and the medians are compared. On a
shared machine wall times vary a lot: read the ratio of runs made minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_distributed import first_difference, without_timings  # noqa: E402


def run(nproc: int, args: list[str], out: Path) -> dict[str, float]:
    """One scan with ``nproc`` processes (1: no torchrun); its wall time and provenance times."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m"] \
        if nproc > 1 else [sys.executable, "-m"]
    cmd = [*launcher, "auditkit.cli", "scan", *args, "--out", str(out), "--quiet", "--no-report"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    doc = json.loads((out / "results.json").read_text())
    prov = doc["provenance"]
    # Seconds inside the attack ensembles, summed over units (all ranks): the sharded work.
    models = (doc["sections"].get("robustness", {}).get("data") or {}).get("threat_models") or {}
    attack = sum(a.get("seconds") or 0.0 for tm in models.values() for a in tm["per_attack"].values())
    return {"wall": wall, "scan": prov["wall_seconds"], "attack": attack,
            **{f"check:{k}": v for k, v in prov["timings"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn-digits")
    parser.add_argument("--budget", default="standard")
    parser.add_argument("--only", default="robustness")
    parser.add_argument("--samples", type=int, default=450)  # two units (docs/distributed.md)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    opts = parser.parse_args()
    args = [str(REPO / "zoo" / opts.model / "model.pt"), "--budget", opts.budget, "--samples", str(opts.samples),
            "--threads", "1", *(["--only", opts.only] if opts.only else [])]
    print(f"scan {opts.model} --budget {opts.budget} --samples {opts.samples} --only {opts.only or '(all)'}, "
          f"--threads 1 per process; {os.cpu_count()} CPUs visible")
    times: dict[int, list[dict[str, float]]] = {1: [], opts.nproc: []}
    with tempfile.TemporaryDirectory(prefix="auditkit-bench-dist-") as tmp:
        for r in range(opts.rounds):
            for n in (1, opts.nproc):
                t = run(n, args, Path(tmp) / f"n{n}-r{r}")
                times[n].append(t)
                checks = ", ".join(f"{k[6:]} {v:.1f} s" for k, v in t.items() if k.startswith("check:"))
                print(f"  round {r + 1}, {n} process(es): wall {t['wall']:.1f} s, scan {t['scan']:.1f} s ({checks}; "
                      f"attack ensembles {t['attack']:.1f} s summed over units)")
        docs = [json.loads((Path(tmp) / f"n{n}-r0" / "results.json").read_text()) for n in (1, opts.nproc)]
        diff = first_difference(*(without_timings(d) for d in docs))
    one = statistics.median(t["wall"] for t in times[1])
    many = statistics.median(t["wall"] for t in times[opts.nproc])
    scan1 = statistics.median(t["scan"] for t in times[1])
    scann = statistics.median(t["scan"] for t in times[opts.nproc])
    print(f"median wall: 1 process {one:.1f} s, {opts.nproc} processes {many:.1f} s: speedup {one / many:.2f}x "
          f"(scan only: {scan1:.1f} s vs {scann:.1f} s, {scan1 / scann:.2f}x)")
    base = times[1][0]
    rob = base.get("check:robustness")
    if rob:
        rest = base["scan"] - base["attack"]
        print(f"sharded share of the 1-process scan: {base['attack'] / base['scan']:.0%}; ideal {opts.nproc}-process "
              f"scan time (Amdahl): {rest + base['attack'] / opts.nproc:.1f} s, "
              f"{base['scan'] / (rest + base['attack'] / opts.nproc):.2f}x")
    print("results.json identical (timings aside):", "yes" if diff is None else f"NO, first difference at {diff}")


if __name__ == "__main__":
    main()
