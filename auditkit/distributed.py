"""Work over samples in fixed units, on one process or sharded over torch.distributed ranks.

A check that processes its evaluated samples in *units* (consecutive slices of a size that does
not depend on the number of processes) gets the same result on one process and on N: each unit
is computed by exactly one rank, on exactly the same samples and with the same seed, and every
rank gets every unit's result back in unit order. That is what makes a ``torchrun`` scan write
the same results.json as a single-process one, and it bounds memory too: only one unit's
intermediate tensors are alive at a time.

Without an initialised process group (the normal case) :func:`map_units` is a plain loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` without torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def unit_slices(n: int, unit: int) -> list[slice]:
    """``range(n)`` cut into consecutive slices of ``unit`` samples (the last may be shorter)."""
    if unit < 1:
        raise ValueError(f"unit must be >= 1, got {unit}")
    return [slice(s, min(n, s + unit)) for s in range(0, n, unit)]


def map_units(fn: Callable[[int, slice], T], n: int, unit: int) -> list[T]:
    """``[fn(k, rows_k) for each unit k]`` over ``range(n)`` cut into units of ``unit`` samples.

    Under torch.distributed, rank ``r`` computes the units ``k`` with ``k % world_size == r``
    and the results are exchanged (``all_gather_object``: they must be picklable; move tensors
    to the CPU first), so every rank returns the full list in unit order. ``fn`` must depend
    only on ``k`` and ``rows`` (seed it from them), never on which rank runs it.
    """
    slices = unit_slices(n, unit)
    rank, world = rank_and_world()
    mine = {k: fn(k, rows) for k, rows in enumerate(slices) if k % world == rank}
    if world == 1:
        return [mine[k] for k in range(len(slices))]
    import torch.distributed as dist

    gathered: list[dict[int, T] | None] = [None] * world
    dist.all_gather_object(gathered, mine)
    merged: dict[int, T] = {}
    for part in gathered:
        merged.update(part or {})
    return [merged[k] for k in range(len(slices))]
