"""Work over samples in fixed units, on one process or sharded over torch.distributed ranks.

A check that processes its evaluated samples in *units* (consecutive slices of a size that does
not depend on the number of processes) gets the same result on one process and on N: each unit
is computed by exactly one rank, on exactly the same samples and with the same seed, and every
rank gets every unit's result back in unit order. That is what makes a ``torchrun`` scan write
the same results.json as a single-process one, and it bounds memory too: only one unit's
intermediate tensors are alive at a time.

Without an initialised process group (the normal case) :func:`map_units` is a plain loop.

Under ``torchrun`` (docs/distributed.md), :func:`init_from_env` joins the process group that
torchrun's environment describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): gloo on the CPU, NCCL on CUDA with one GPU per rank (``cuda:LOCAL_RANK``).
Every rank then runs the whole scan; only the per-unit work of :func:`map_units` is split, and
everything else (the checks' aggregates, findings, the verdict) is computed redundantly and
deterministically from the same gathered unit results, so the ranks never diverge in which
collective calls they make. Only rank 0 writes files and prints (:func:`is_main`).

Rules that keep the ranks in step (a rank that skips a collective would hang the others):

* a unit's exception is caught and exchanged like a result; after the exchange every rank
  raises the first failing unit's exception (in unit order), so all ranks fail alike;
* a unit's result is pickled before the exchange, so an unpicklable one fails its unit (on
  every rank), not the collective;
* :func:`map_units` called inside a unit (a helper that itself works in units) runs as a plain
  loop on that rank: collectives only happen at the top level, which every rank reaches;
* with ``seed``, each unit runs under its own seeded torch/NumPy/``random`` state and the
  global state is restored afterwards, so nothing after a :func:`map_units` depends on which
  units this rank ran.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import pickle
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 1800.0  # a collective waiting this long for a peer raises instead of hanging

_inside_unit = False  # True while this process runs a unit's fn (nested map_units: local loop)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` without torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def env_rank_and_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as torchrun sets them in the environment (``(0, 1)`` when unset):
    what a process knows about its role before joining the group (the CLI decides from it
    whether this process writes and prints)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0")) if world > 1 else 0
    except ValueError:
        return 0, 1
    return rank, max(world, 1)


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes results and prints), from the
    process group if one is initialised, else from torchrun's environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank_and_world()[0] == 0


def init_from_env(device: str = "auto", timeout_s: float | None = None) -> str:
    """Join the process group torchrun describes, if any, and return the device to scan on.

    With ``WORLD_SIZE`` > 1 in the environment (torchrun) and no group yet, the default group
    is created from torchrun's variables (``env://``: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``): NCCL when the scan runs on CUDA (``device`` ``"auto"`` with a GPU,
    ``"cuda"`` or ``"cuda:N"``), each rank on ``cuda:LOCAL_RANK`` (an explicit ``"cuda:N"`` is
    kept as given); gloo otherwise. The group is destroyed when the process exits (re-creating
    the default group in one process can read a peer's stale store keys and hang; training
    does the same). A group that already exists (the caller's own) is used as it is.

    Args:
        device: the scan's ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        timeout_s: how long a collective waits for a peer before raising (default
            ``AUDITKIT_DIST_TIMEOUT_S`` from the environment, else ``DEFAULT_TIMEOUT_S``).

    Returns:
        ``device``, or ``"cuda:LOCAL_RANK"`` for ``auto``/``cuda`` under a multi-process group
        on CUDA. Without torchrun (``WORLD_SIZE`` unset or 1): ``device`` unchanged, no group.
    """
    import torch
    import torch.distributed as dist

    from auditkit.errors import BadInputError

    _, world = env_rank_and_world()
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise BadInputError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run a single process")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and device in ("auto", "cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise BadInputError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible: run at "
                "most one process per GPU (--nproc_per_node <= GPUs), or --device cpu")
        device = f"cuda:{local_rank}"
    if cuda:
        torch.cuda.set_device(torch.device(device))  # before init, so that NCCL binds this rank's GPU
    if not dist.is_initialized():
        if timeout_s is None:
            timeout_s = float(os.environ.get("AUDITKIT_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        atexit.register(shutdown)
    return device


def shutdown() -> None:
    """Destroy the default process group if there is one (registered at exit by
    :func:`init_from_env`; safe to call twice)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unit_size(n: int, batch_size: int = 256) -> int:
    """Samples per unit for ``n`` samples: as few units as batches of ``batch_size`` need, of
    equal size, i.e. ``ceil(n / ceil(n / batch_size))`` (at least 1).

    A function of ``n`` and the batch size only, never of the number of processes: that is
    what makes one process and N compute the very same units. 128 samples make one unit of 128,
    450 two of 225, 10,000 with batch 256 forty of 250.

    Why units as large as a batch: every unit pays the ensemble's per-iteration work (the near
    runs' 100-1,000 iterations at each radius) on a small batch, so the cost grows with the
    number of units, not only with the samples. A standard Linf ensemble on 450 cnn-digits
    samples took 107 s in 8 units of 57, 84 s in 4 of at most 128, 61 s in 2 of 225 and 57 s
    in one, with the same robust accuracy (bench/README.md). The price is granularity: a scan
    of at most one batch of samples runs on one rank, whatever the number of processes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n < 1:
        return 1
    return math.ceil(n / math.ceil(n / batch_size))


def unit_slices(n: int, unit: int) -> list[slice]:
    """``range(n)`` cut into consecutive slices of ``unit`` samples (the last may be shorter)."""
    if unit < 1:
        raise ValueError(f"unit must be >= 1, got {unit}")
    return [slice(s, min(n, s + unit)) for s in range(0, n, unit)]


def unit_seed(seed: int, k: int) -> int:
    """The seed of unit ``k`` of a call seeded with ``seed`` (independent streams, < 2**63)."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, dtype=np.uint64)[0] >> 1)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the body with torch (CPU and CUDA), NumPy's and ``random``'s global RNGs seeded by
    ``seed``, restoring their states afterwards (nothing when ``seed`` is None)."""
    if seed is None:
        yield
        return
    import numpy as np
    import torch

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class UnitError(RuntimeError):
    """A unit raised an exception that cannot be sent to the other ranks (unpicklable): they
    raise this instead, with the original's type name and message."""


def _transportable(exc: BaseException) -> BaseException:
    try:
        clone = pickle.loads(pickle.dumps(exc))
        if type(clone) is type(exc) and str(clone) == str(exc):
            return exc
    except Exception:  # noqa: BLE001  (any pickling failure: send a description instead)
        pass
    return UnitError(f"{type(exc).__name__}: {exc}")


def map_units(fn: Callable[[int, slice], T], n: int, unit: int, *, seed: int | None = None) -> list[T]:
    """``[fn(k, rows_k) for each unit k]`` over ``range(n)`` cut into units of ``unit`` samples.

    Under torch.distributed, rank ``r`` computes the units ``k`` with ``k % world_size == r``
    and the results are exchanged (``all_gather_object``: they must be picklable; move tensors
    to the CPU first), so every rank returns the full list in unit order. ``fn`` must depend
    only on ``k`` and ``rows`` (seed it from them), never on which rank runs it.

    With ``seed``, unit ``k`` runs with the global torch/NumPy/``random`` RNGs seeded by
    ``unit_seed(seed, k)`` and the caller's RNG states are restored afterwards (the module
    docstring says why). An exception raised by a unit is re-raised, after the exchange, on
    every rank: the first failing unit's, in unit order (the same on one process and on N).
    Called from inside a unit, it runs every unit locally (no collective).
    """
    global _inside_unit
    slices = unit_slices(n, unit)
    rank, world = rank_and_world()
    if _inside_unit:
        rank, world = 0, 1
    sharded = world > 1
    mine: dict[int, tuple[bool, Any]] = {}
    for k, rows in enumerate(slices):
        if k % world != rank:
            continue
        outer, _inside_unit = _inside_unit, True
        try:
            with _seeded(None if seed is None else unit_seed(seed, k)):
                value = fn(k, rows)
            if sharded:
                pickle.dumps(value)  # an unpicklable result fails its unit here, not the exchange
            mine[k] = (True, value)
        except Exception as exc:  # noqa: BLE001  (exchanged, then re-raised on every rank)
            if not sharded:
                raise  # one process: the first failing unit is this one; keep its traceback
            mine[k] = (False, exc)
            break  # later units cannot matter: the first failing unit (in unit order) is raised
        finally:
            _inside_unit = outer
    if not sharded:
        return [mine[k][1] for k in range(len(slices))]
    import torch.distributed as dist

    # Our own failed units keep their exception object (and traceback) for re-raising here.
    local = {k: v for k, v in mine.items() if not v[0]}
    sent = {k: (ok, v if ok else _transportable(v)) for k, (ok, v) in mine.items()}
    gathered: list[dict[int, tuple[bool, Any]] | None] = [None] * world
    dist.all_gather_object(gathered, sent)
    merged: dict[int, tuple[bool, Any]] = {}
    for part in gathered:
        merged.update(part or {})
    for k in range(len(slices)):
        ok, value = merged[k]  # a unit a failed rank skipped lies after a failure: never reached
        if not ok:
            raise local[k][1] if k in local else value
    return [merged[k][1] for k in range(len(slices))]
