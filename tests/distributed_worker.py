"""Worker for tests/test_distributed.py: map_units on one process or under torchrun (gloo).

Run as ``python tests/distributed_worker.py MODE OUTDIR`` (one process) or
``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py
MODE OUTDIR``. Each rank writes ``OUTDIR/rank{r}.pt`` with what it saw. Modes:

* ``map``: seeded units drawing from torch's, NumPy's and ``random``'s global RNGs, a nested
  map_units inside each unit, and the global RNG state after the call;
* ``unit-fails``: unit 2 of 5 raises; every rank must raise that same error, and nobody hangs;
* ``rank-dies``: rank 1 dies before the exchange; torchrun must end the run (no hang).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from auditkit.distributed import init_from_env, map_units, rank_and_world


def main(mode: str, out: Path) -> None:
    init_from_env("cpu")
    rank, world = rank_and_world()
    record: dict[str, object] = {"rank": rank, "world": world}
    torch.manual_seed(123)
    if mode == "map":
        def unit(k: int, rows: slice) -> dict[str, object]:
            inner = map_units(lambda j, r: (j, r.start, r.stop), rows.stop - rows.start, 2)
            return {"k": k, "rows": (rows.start, rows.stop), "torch": torch.rand(2),
                    "numpy": float(np.random.rand()), "random": random.random(), "inner": inner, "by": rank}

        record["units"] = map_units(unit, 21, 4, seed=7)
        record["after"] = torch.rand(3)  # the caller's stream, as if no unit had drawn from it
    elif mode == "unit-fails":
        def failing(k: int, rows: slice) -> int:
            if k == 2:
                raise ValueError(f"unit {k} failed on rows {rows.start}-{rows.stop}")
            return k

        try:
            map_units(failing, 10, 2, seed=0)
            record["error"] = None
        except ValueError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["after"] = map_units(lambda k, rows: k * 10, 4, 1)  # the group still works
    elif mode == "rank-dies":
        if rank == 1:
            sys.stdout.flush()
            os._exit(3)
        map_units(lambda k, rows: k, 4, 1)
    torch.save(record, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
