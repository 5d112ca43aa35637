"""The worst-case ensemble over units of samples, on one process or sharded over ranks.

:func:`run_ensemble_sharded` cuts the samples into units (:func:`auditkit.distributed.unit_size`,
a function of the number of samples and the batch size, never of the number of processes),
runs :func:`~auditkit.attacks.ensemble.run_ensemble` on each unit (seeded from the scan seed
and the unit's first row), gathers the units' records on every rank
(:func:`auditkit.distributed.map_units`) and merges them (:func:`merge_ensembles`). One process
and N processes run the same units with the same seeds, so they get the same records.

Merging is exact for everything that follows from the per-sample records: they are
concatenated, and the per-attack figures that are ratios over all samples (own and cumulative
robust accuracy) and the counts derived from records (``n_smallest``) are recomputed from the
merged records with the ensemble's own rules; the gallery is recomputed from the merged records
(:func:`~auditkit.attacks.ensemble.make_gallery`). Costs (``seconds``, passes, queries,
``n_attacked``...) are summed, per-eps counts summed element-wise, error lists concatenated with
their sample rows shifted to the merged numbering. Keys the ensemble may add later follow the
same generic rules (see :func:`_merge_stat`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from auditkit.attacks.common import EOT
from auditkit.attacks.ensemble import EnsembleResult, make_gallery, run_ensemble
from auditkit.distributed import map_units, unit_size
from auditkit.metrics import broken_at

# Per-sample fields of EnsembleResult (length N, or dicts of [N, ...] arrays per attack).
_PER_SAMPLE = ("labels", "clean_pred", "min_norm", "broken_by", "success", "attack_norm", "best_x")
# per_attack keys recomputed from the merged records (sums of ratios would be wrong).
_RECOMPUTED = ("robust_accuracy", "cumulative_robust_accuracy", "n_smallest", "error", "errors")


def run_ensemble_sharded(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    norm: str,
    epsilons: list[float],
    budget: str = "standard",
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    batch_size: int = 256,
    attacks: list[str] | None = None,
    track: Callable[..., Iterable[Any]] = lambda it, **kw: it,
    eot: EOT | None = None,
    unit: int | None = None,
) -> EnsembleResult:
    """:func:`~auditkit.attacks.ensemble.run_ensemble` on ``x`` ``[N, ...]``, ``y`` ``[N]`` unit
    by unit (sharded over torch.distributed ranks when a group is initialised), merged.

    Arguments are :func:`run_ensemble`'s, plus ``unit`` (samples per unit; default
    :func:`~auditkit.distributed.unit_size` of ``N`` and ``batch_size``). Unit ``k`` starting
    at row ``s`` runs with seed ``seed + s`` (the ensemble seeds its own batches by offset the
    same way). ``track`` wraps the loop over this rank's units. Every rank returns the same
    merged :class:`EnsembleResult`, with ``seed`` = ``seed`` and ``best_x`` on ``x``'s device.
    """
    module = model if isinstance(model, nn.Module) else getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise ValueError("model must be a torch nn.Module (or an AuditModel)")
    n = int(x.shape[0])
    size = unit or unit_size(n, batch_size)
    progress = iter(track(range(-(-n // size)), desc=f"attack units ({norm})", total=-(-n // size)))

    def one_unit(k: int, rows: slice) -> EnsembleResult:
        next(progress, None)
        result = run_ensemble(module, x[rows], y[rows], norm, epsilons, budget=budget, bounds=bounds,
                              seed=seed + rows.start, batch_size=batch_size, attacks=attacks, eot=eot)
        # Exchanged between ranks by pickling: no device tensors.
        result.best_x = None if result.best_x is None else result.best_x.detach().cpu()
        return result

    parts = map_units(one_unit, n, size, seed=seed)
    for _ in progress:  # finish the progress bar of this rank's share
        pass
    return merge_ensembles(parts, model=module, x=x, seed=seed)


def merge_ensembles(parts: Sequence[EnsembleResult], *, model: nn.Module | None = None, x: Tensor | None = None,
                    seed: int | None = None) -> EnsembleResult:
    """One :class:`EnsembleResult` for the consecutive units ``parts`` (in sample order).

    Args:
        parts: ensembles run on consecutive slices of the samples, with the same norm, eps grid,
            budget, attacks, bounds and EOT protocol (ValueError otherwise).
        model, x: the model and the whole ``[N, ...]`` input; with both, the gallery is
            recomputed on the merged records (what one ensemble on all samples would show) and
            ``best_x`` is moved to ``x``'s device. Without them, the units' galleries are
            concatenated (indices shifted).
        seed: the merged result's ``seed`` (default: the first part's).

    Returns:
        the merged result; the module docstring says how each field is merged.
    """
    if not parts:
        raise ValueError("merge_ensembles needs at least one part")
    first = parts[0]
    sizes = [len(p.labels) for p in parts]
    offsets = np.cumsum([0, *sizes[:-1]]).tolist()
    merged: dict[str, Any] = {}
    for f in fields(EnsembleResult):
        values = [getattr(p, f.name) for p in parts]
        if f.name in _PER_SAMPLE or f.name in ("per_attack", "gallery", "seed"):
            continue
        if all(_is_rows(v, n) for v, n in zip(values, sizes)):  # a per-sample field added later
            merged[f.name] = _concat(values)
        elif all(_equal(v, values[0]) for v in values[1:]):
            merged[f.name] = values[0]
        else:
            raise ValueError(f"cannot merge ensembles that differ in {f.name!r}: "
                             f"{values[0]!r} vs {next(v for v in values if not _equal(v, values[0]))!r}")
    attacks: list[str] = merged["attacks"]
    merged["seed"] = first.seed if seed is None else seed
    merged["labels"] = np.concatenate([p.labels for p in parts])
    merged["clean_pred"] = np.concatenate([p.clean_pred for p in parts])
    merged["min_norm"] = np.concatenate([p.min_norm for p in parts])
    merged["broken_by"] = [b for p in parts for b in p.broken_by]
    merged["success"] = {a: np.concatenate([p.success[a] for p in parts]) for a in attacks}
    merged["attack_norm"] = {a: np.concatenate([p.attack_norm[a] for p in parts]) for a in attacks}
    best_x = None
    if all(p.best_x is not None for p in parts):
        best_x = torch.cat([p.best_x.detach().cpu() for p in parts])  # type: ignore[union-attr]
        if x is not None:
            best_x = best_x.to(x.device)
    merged["best_x"] = best_x
    merged["per_attack"] = _merge_per_attack(parts, merged, offsets)
    result = EnsembleResult(**merged, gallery=[])
    if model is not None and x is not None and best_x is not None:
        votes = result.eot.votes if result.eot is not None else 1
        result.gallery = make_gallery(model, x, best_x, result.labels, result.clean_pred, result.min_norm,
                                      result.broken_by, result.epsilons, result.tolerance, votes)
    else:
        result.gallery = [{**g, "index": g["index"] + off} for p, off in zip(parts, offsets) for g in p.gallery]
    return result


def _merge_per_attack(parts: Sequence[EnsembleResult], merged: dict[str, Any],
                      offsets: list[int]) -> dict[str, dict[str, Any]]:
    """Per-attack statistics of the merged ensemble (module docstring)."""
    eps: list[float] = merged["epsilons"]
    labels, clean_pred, min_norm = merged["labels"], merged["clean_pred"], merged["min_norm"]
    correct = clean_pred == labels
    n = len(labels)
    tol = parts[0].tolerance
    best = np.where(correct, np.inf, 0.0)  # the worst case after each attack, in run order
    out: dict[str, dict[str, Any]] = {}
    for name in merged["attacks"]:
        stats = [p.per_attack[name] for p in parts]
        entry: dict[str, Any] = {}
        for key in dict.fromkeys(k for s in stats for k in s):  # every key, first-seen order
            if key in _RECOMPUTED:
                continue
            entry[key] = _merge_stat([s.get(key) for s in stats])
        succ, own = merged["success"][name], merged["attack_norm"][name]
        known = [bool((succ[correct, k] >= 0).all()) for k in range(len(eps))]
        entry["robust_accuracy"] = [float((correct & (succ[:, k] == 0)).sum() / n) if known[k] else None
                                    for k in range(len(eps))]
        best = np.minimum(best, own)
        entry["cumulative_robust_accuracy"] = [float((correct & ~broken_at(best, e, tol)).sum() / n) for e in eps]
        errors = [{**e, "samples": [int(i) + off for i in e.get("samples", [])]}
                  for s, off in zip(stats, offsets) for e in s.get("errors", [])]
        entry["errors"] = errors
        entry["error"] = errors[0]["error"] if errors else None
        entry["n_smallest"] = sum(1 for b in merged["broken_by"] if b == name)
        # The ensemble's key order, so that the JSON reads the same.
        order = list(stats[0])
        out[name] = {k: entry[k] for k in sorted(entry, key=lambda k: order.index(k) if k in order else len(order))}
    return out


def _merge_stat(values: list[Any]) -> Any:
    """One per-attack statistic over units, for keys not recomputed from records, in this
    order: None where every unit has None; the sum of numbers (costs and counts: seconds,
    passes, queries, ``n_attacked``; units with None are left out); the element-wise sum of
    equal-length lists of numbers (per-eps counts); the common value when all units agree
    (names, ``settings``); the concatenation of other lists; dicts merged key by key; else
    the first unit's value."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(_is_number(v) for v in present):
        total = sum(present)
        return float(total) if any(isinstance(v, (float, np.floating)) for v in present) else int(total)
    if len(present) == len(values) and all(isinstance(v, list) for v in present):
        length = len(present[0])
        if all(len(v) == length for v in present) and all(_is_number(i) or i is None for v in present for i in v):
            return [None if any(v[i] is None for v in present) else _merge_stat([v[i] for v in present])
                    for i in range(length)]
    if len(present) == len(values) and all(_equal(v, present[0]) for v in present[1:]):
        return present[0]
    if all(isinstance(v, list) for v in present):
        return [i for v in present for i in v]
    if all(isinstance(v, dict) for v in present):
        keys = dict.fromkeys(k for v in present for k in v)
        return {k: _merge_stat([v.get(k) for v in present]) for k in keys}
    return present[0]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_rows(v: Any, n: int) -> bool:
    return isinstance(v, (np.ndarray, Tensor)) and v.ndim >= 1 and v.shape[0] == n


def _concat(values: list[Any]) -> Any:
    if isinstance(values[0], Tensor):
        return torch.cat([v.cpu() for v in values])
    return np.concatenate(values)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a.cpu(), b.cpu())
    return bool(a == b)
