"""Use the machine: default thread count and batch sizes chosen from a memory budget.

Every batched computation over samples (attributions, explanation-quality metrics) asks
:func:`batch_size_for` how many input rows fit the memory budget, instead of a fixed batch size
that is harmless on an 8x8 CNN and several GB on a ResNet. The per-row cost is measured once per
model and input shape: one tiny probe forward pass in grad mode, summing the bytes autograd saves
for the backward pass (``torch.autograd.graph.saved_tensors_hooks``), at two batch sizes so that
the parameters saved alongside (a conv's weight) cancel out. That is the activation memory a
backward pass through one more row holds; a safety factor covers the backward's own transients
and the allocator.

The budget (:func:`memory_budget`) is a constant per device kind, never read from the free memory
at run time: batch sizes, and with them the chunking of seeded methods, then depend only on the
model, the input shape and the configuration, so the same scan gives the same numbers on any
machine of that kind. ``AUDITKIT_MEMORY_BUDGET_MB`` overrides it.

torch is imported inside the functions: this module is a foundation leaf.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["activation_bytes_per_row", "batch_size_for", "default_threads", "memory_budget"]

CPU_BUDGET_MB = 128  # activations of one batch; the process's baseline (torch, libraries, model, data, ~0.7-0.9 GB) comes on top
CUDA_BUDGET_MB = 2048
SAFETY = 2.0  # backward transients (one gradient per saved activation, freed as it goes) and allocator slack
MAX_THREADS = 16  # intra-op threads beyond this rarely help the models auditkit sees, and oversubscribe
_PROBE_ROWS = (1, 3)

# Measured bytes per row, per live module and (input shape, dtype, device): probing is two tiny
# forward passes, but attribute() is called per method and per randomisation layer.
_CACHE: "weakref.WeakKeyDictionary[Any, dict[tuple, int]]" = weakref.WeakKeyDictionary()


def default_threads() -> int:
    """Intra-op threads worth using here: the CPUs this process may run on (affinity mask, and
    a cgroup CPU quota where one is set, as in containers), at most :data:`MAX_THREADS`.

    torch's own default is the machine's physical core count, which in a container limited to 2
    CPUs of a 64-core host means 32 threads fighting over 2 CPUs.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, min(n, MAX_THREADS))


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup v2 ``cpu.max`` (``"max 100000"`` = no limit), else None."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return float(quota) / float(period)
    except (ValueError, ZeroDivisionError):
        return None


def memory_budget(device: "torch.device | str | None" = None) -> int:
    """Bytes one batch's activations may take on ``device``: ``AUDITKIT_MEMORY_BUDGET_MB`` if
    set, else :data:`CPU_BUDGET_MB` (CPU) or :data:`CUDA_BUDGET_MB` (CUDA)."""
    env = os.environ.get("AUDITKIT_MEMORY_BUDGET_MB")
    if env:
        try:
            mb = float(env)
        except ValueError:
            raise ValueError(f"AUDITKIT_MEMORY_BUDGET_MB must be a number of MiB; got {env!r}") from None
        if mb <= 0:
            raise ValueError(f"AUDITKIT_MEMORY_BUDGET_MB must be positive; got {env!r}")
        return int(mb * 2**20)
    kind = str(device) if device is not None else "cpu"
    return (CUDA_BUDGET_MB if kind.startswith("cuda") else CPU_BUDGET_MB) * 2**20


def activation_bytes_per_row(module: "nn.Module", example: "torch.Tensor") -> int:
    """Bytes a forward pass in grad mode saves for backward per input row of ``example``'s
    shape (``[n, *input_shape]``; only its shape, dtype and device are used).

    Measured with two tiny probe batches in eval mode (the module's mode is restored), on zeros
    (token id 0 for integer inputs), so that the parameters autograd also saves cancel out. At
    least the size of one input row. Cached per module and input shape.
    """
    import torch

    key = (tuple(example.shape[1:]), example.dtype, str(example.device))
    try:
        cached = _CACHE.setdefault(module, {})
    except TypeError:  # not weak-referenceable: no cache
        cached = {}
    if key in cached:
        return cached[key]
    row_bytes = example[:1].element_size() * max(1, math.prod(example.shape[1:]))
    sizes = []
    was_training = module.training
    module.eval()
    try:
        for rows in _PROBE_ROWS:
            probe = torch.zeros((rows, *example.shape[1:]), dtype=example.dtype, device=example.device)
            if probe.is_floating_point():
                probe.requires_grad_(True)
            sizes.append(_saved_bytes(module, probe))
    except Exception:  # noqa: BLE001  (a model the probe cannot run: fall back to a coarse bound)
        sizes = []
    finally:
        module.train(was_training)
    if len(sizes) == 2:
        per_row = (sizes[1] - sizes[0]) / (_PROBE_ROWS[1] - _PROBE_ROWS[0])
    else:
        per_row = 0.0
    # A model whose saved tensors the hooks cannot see (or a probe that failed): 64 input rows'
    # worth per row, generous for the small models that hide their graph this way.
    result = int(max(per_row, row_bytes if sizes else 64 * row_bytes))
    cached[key] = result
    return result


def _saved_bytes(module: "nn.Module", probe: "torch.Tensor") -> int:
    """Bytes of the distinct tensors autograd saves during ``module(probe)``, plus the output."""
    import torch

    seen: set[tuple[int, int]] = set()
    total = 0

    def pack(t: "torch.Tensor") -> "torch.Tensor":
        nonlocal total
        try:
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
        except Exception:  # noqa: BLE001  (sparse, meta or wrapper tensors)
            key = (id(t), t.numel() * t.element_size())
        if key not in seen:
            seen.add(key)
            total += key[1]
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(probe)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total += sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))
    return total


def batch_size_for(
    module: "nn.Module",
    example: "torch.Tensor",
    budget_bytes: int | None = None,
    rows_per_sample: int = 1,
    maximum: int | None = None,
) -> int:
    """Samples per batch so that a forward and backward pass fits ``budget_bytes``.

    Args:
        module: the model the batch goes through.
        example: a batch ``[n, *input_shape]`` of its inputs (shape, dtype, device are used).
        budget_bytes: activation memory allowed for one batch (default :func:`memory_budget`
            of ``example``'s device).
        rows_per_sample: input rows each sample expands to (IG's ``n_steps``, SmoothGrad's
            noisy copies, the four deletion/insertion variants).
        maximum: an upper bound (e.g. the caller's ``batch_size``).

    Returns:
        ``floor(budget / (SAFETY * bytes_per_row * rows_per_sample))``, at least 1 (a single
        sample that does not fit is still computed: the caller may split its rows further),
        at most ``maximum``.
    """
    budget = memory_budget(example.device) if budget_bytes is None else budget_bytes
    per_sample = SAFETY * activation_bytes_per_row(module, example) * max(1, rows_per_sample)
    n = max(1, int(budget // per_sample))
    return min(n, maximum) if maximum is not None else n
