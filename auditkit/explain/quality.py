"""Explanation-quality metrics: is an attribution faithful to the model, and to the truth?

Five families (DESIGN.md §7):

* :func:`ig_completeness` — integrated gradients' completeness error from captum's convergence
  delta, with the number of integration steps doubled until it is small.
* :func:`randomisation_test` — the cascading model-parameter randomisation test of Adebayo et al.
  2018, "Sanity Checks for Saliency Maps": a map that survives the destruction of the weights
  does not explain the model.
* :func:`deletion_insertion` — deletion and insertion curves (Petsiuk et al. 2018, RISE) against
  a random ranking.
* :func:`infidelity_sensitivity` — captum's ``infidelity`` and ``sensitivity_max`` (Yeh et al.
  2019).
* :func:`tabular_ground_truth`, :func:`token_ground_truth` — agreement with the causes that the
  zoo's synthetic data knows about itself.

Every function returns a plain JSON-able dict (floats, ints, bools, strings, lists). Memory is
flat in the number of samples: each function works in units of :data:`UNIT` samples
(:func:`auditkit.distributed.map_units`, shared out between the ranks of a torchrun scan), a unit
returns per-sample records (NumPy), and the figures are aggregated from all units' records, so
only one unit's intermediate tensors are alive at a time. Randomness is seeded per unit from
``seed + first sample index`` (the convention of :func:`~auditkit.explain.methods.attribute`'s
chunks): the same on one process and on N. Rank
correlations, the cascading randomisation, the deletion/insertion curves and the ground-truth
scores are written here by hand: captum has no cascading randomisation test, no
deletion/insertion curves and no ground-truth metrics; Quantus has some of them but would add a
heavy dependency for a few dozen lines of tensor code.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor, nn

from auditkit.card import AuditCard
from auditkit.distributed import map_units
from auditkit.explain.methods import attribute, available_methods
from auditkit.resources import batch_size_for

__all__ = [
    "deletion_insertion",
    "ig_completeness",
    "infidelity_sensitivity",
    "randomisation_test",
    "tabular_ground_truth",
    "token_ground_truth",
]


UNIT = 32  # samples per unit: a constant, so that results do not depend on the process count

# --------------------------------------------------------------------------- input checks


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_inputs(x: Tensor, target: Tensor, card: AuditCard) -> tuple[Tensor, Tensor]:
    """Validate ``x`` ``[N, *input_shape]`` and ``target`` ``[N]``; return target as int64."""
    if card.task == "gan":
        raise ValueError("explanation-quality metrics need a classifier; this card's task is 'gan'")
    if not isinstance(x, Tensor) or not isinstance(target, Tensor):
        raise ValueError("x and target must be torch tensors (use torch.as_tensor)")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [N, *input_shape]; got {list(x.shape)}")
    if list(x.shape[1:]) != list(card.input_shape):
        raise ValueError(
            f"x has sample shape {list(x.shape[1:])} but the card's input_shape is "
            f"{card.input_shape}; reshape x or fix the card"
        )
    if card.task == "text-classification" and x.dtype != torch.int64:
        raise ValueError(f"text inputs must be int64 token ids; got {x.dtype}")
    if card.task != "text-classification" and not x.is_floating_point():
        raise ValueError(f"image and tabular inputs must be floating point; got {x.dtype}")
    target = torch.as_tensor(target)
    if target.shape != (x.shape[0],):
        raise ValueError(
            f"target must have shape [N] = [{x.shape[0]}] (one class index per sample); "
            f"got {list(target.shape)}"
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices; got {target.dtype}")
    if card.num_classes and (target.min() < 0 or target.max() >= card.num_classes):
        raise ValueError(f"target holds class indices outside 0..{card.num_classes - 1}")
    return x, target.long()


def _rows(t: Tensor | None, rows: slice, n: int) -> Tensor | None:
    """Rows ``rows`` of a per-sample tensor ``[n, ...]``; anything else (None, one shared
    baseline, a scalar) unchanged."""
    if isinstance(t, Tensor) and t.dim() >= 1 and t.shape[0] == n and n > 1:
        return t[rows]
    return t


def _pad_mask(x: Tensor, card: AuditCard) -> Tensor | None:
    """bool ``[N, L]``, True at padding, for token inputs; None otherwise."""
    if card.task != "text-classification" or card.text is None:
        return None
    return x == card.text.pad_id


def _call_attribute(
    method: str, module: nn.Module, x: Tensor, target: Tensor, card: AuditCard, **kwargs: object
) -> Tensor:
    """:func:`auditkit.explain.methods.attribute` with gradients on, as a float32 tensor."""
    # captum's metrics call explanations under no_grad; gradient methods need autograd.
    with torch.enable_grad():
        out = attribute(method, module, x, target, card, **kwargs)  # type: ignore[arg-type]
    attr = out[0] if isinstance(out, tuple) else out
    return attr.detach().float()


# --------------------------------------------------------------------------- 1. completeness


def ig_completeness(
    module: nn.Module,
    x: Tensor,
    target: Tensor,
    card: AuditCard,
    baseline: Tensor | None = None,
    start_steps: int = 16,
    max_steps: int = 512,
    tol: float = 0.01,
) -> dict:
    """Completeness error of integrated gradients, with steps doubled until it is small.

    IG's attributions should sum to ``f(x)_t - f(b)_t`` (the completeness axiom); a Riemann or
    Gauss-Legendre approximation with too few steps misses it. Per sample the relative error is
    ``|sum(attr) - (f(x)_t - f(b)_t)| / max(|f(x)_t - f(b)_t|, 1e-6)``, computed from captum's
    convergence delta ``delta = sum(attr) - (f(x)_t - f(b)_t)`` (so ``f(x)_t - f(b)_t =
    sum(attr) - delta``); captum's default Gauss-Legendre rule is used at every step count.
    It goes through :func:`~auditkit.explain.methods.attribute`, so it measures the IG that is
    reported: for tabular models with an encoded space, IG on the encoded inputs summed per
    feature (the sum, and so the delta, is the same as over the encoded columns).

    Args:
        module: classifier returning logits ``[N, C]``; ``f`` is the logit of class ``t``.
        x: ``[N, *input_shape]`` inputs (float, or int64 tokens for text: layer IG on the
            embedding).
        target: ``[N]`` int64 class indices.
        card: the model's card.
        baseline: IG baseline (``attribute``'s default when None: zeros, or pads for text).
        start_steps: first number of integration steps; doubled until ``p95 < tol``.
        max_steps: the largest number of steps tried.
        tol: tolerance on the 95th percentile of the relative error (0.01 = 1%).

    Returns:
        ``{"n_steps", "met", "tol", "median", "p95", "max", "n_samples", "history"}`` where
        ``n_steps`` is the last step count tried, ``met`` whether ``p95 < tol`` there, and
        ``history`` a list of ``{"n_steps", "median", "p95"}``. Good: ``met`` true at a modest
        ``n_steps``; a relative error above a few percent means the attributions do not add up
        to the output change and should not be read as shares of it.
    """
    x, target = _check_inputs(x, target, card)
    if start_steps < 2 or max_steps < start_steps:
        raise ValueError(f"need 2 <= start_steps <= max_steps; got {start_steps}, {max_steps}")
    if tol <= 0:
        raise ValueError(f"tol must be positive; got {tol}")
    n = x.shape[0]

    def relative_errors(steps: int) -> np.ndarray:
        def unit(_k: int, rows: slice) -> np.ndarray:  # [n_unit] relative errors
            with torch.enable_grad():
                attr, delta = attribute(  # type: ignore[misc]
                    "ig", module, x[rows], target[rows], card, n_steps=steps,
                    baseline=_rows(baseline, rows, n), return_delta=True,
                )
            attr = attr.detach().double()
            delta = delta.detach().double().reshape(-1)
            total = attr.reshape(attr.shape[0], -1).sum(1) - delta  # f(x)_t - f(b)_t
            return (delta.abs() / total.abs().clamp_min(1e-6)).cpu().numpy()

        return np.concatenate(map_units(unit, n, UNIT))

    history: list[dict] = []
    steps = start_steps
    while True:
        rel = relative_errors(steps)
        median, p95 = float(np.median(rel)), float(np.percentile(rel, 95))
        history.append({"n_steps": steps, "median": median, "p95": p95})
        if p95 < tol or steps * 2 > max_steps:
            break
        steps *= 2
    return {
        "n_steps": steps,
        "met": bool(p95 < tol),
        "tol": tol,
        "median": median,
        "p95": p95,
        "max": float(rel.max()),
        "n_samples": int(x.shape[0]),
        "history": history,
    }


# --------------------------------------------------------------------------- 2. randomisation


def _rank_correlation(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-row Spearman rank correlation of ``a`` and ``b`` ``[N, D]`` (ties get average ranks).

    ``valid`` bool ``[N, D]`` keeps only those entries of each row (text: non-pad tokens). A row
    that is constant in one map and not the other scores 0 (no shared ranking); constant in both
    scores 1 (identical maps).
    """
    from scipy.stats import rankdata  # imported on use: scipy.stats alone is ~60 MB of RSS

    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        u, v = (a[i], b[i]) if valid is None else (a[i][valid[i]], b[i][valid[i]])
        ru, rv = rankdata(u) - (len(u) + 1) / 2, rankdata(v) - (len(v) + 1) / 2
        den = math.sqrt(float((ru * ru).sum() * (rv * rv).sum()))
        if den == 0:
            out[i] = 1.0 if np.ptp(u) == 0 and np.ptp(v) == 0 else 0.0
        else:
            out[i] = float((ru * rv).sum()) / den
    return out


def _layers_in_forward_order(module: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules that own parameters directly, in the order a forward pass runs them.

    Modules that never run in ``forward`` (e.g. a GAN's discriminator) are left out. Falls back to
    registration order where hooks cannot be set (TorchScript).
    """
    owners = {
        name: m
        for name, m in module.named_modules()
        if next(m.parameters(recurse=False), None) is not None
    }
    order: list[str] = []
    handles = []
    try:
        for name, m in owners.items():
            hook = lambda *_, n=name: order.append(n) if n not in order else None  # noqa: E731
            handles.append(m.register_forward_hook(hook))
    except (RuntimeError, AttributeError):
        for h in handles:
            h.remove()
        return list(owners)
    try:
        with torch.no_grad():
            module(x[:1])
    finally:
        for h in handles:
            h.remove()
    return order


@torch.no_grad()
def _reinitialise(layer: nn.Module, generator_seed: int) -> None:
    """Fresh random parameters for ``layer``'s own parameters; its buffers are kept."""
    buffers = {k: v.clone() for k, v in layer.named_buffers(recurse=False)}
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
        torch.manual_seed(generator_seed)
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
        else:
            for p in layer.parameters(recurse=False):
                std = float(p.std()) if p.numel() > 1 else 0.01
                p.normal_(0.0, std if std > 0 else 0.01)
    # e.g. BatchNorm's reset_parameters also resets its running statistics: put them back.
    for k, v in buffers.items():
        getattr(layer, k).copy_(v)


def randomisation_test(
    module: nn.Module,
    x: Tensor,
    target: Tensor,
    card: AuditCard,
    methods: list[str],
    seed: int = 0,
    threshold: float = 0.5,
    layers: list[str] | None = None,
    n_steps: int = 32,
) -> dict:
    """Cascading model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks").

    On a deep copy of ``module``, the layers' parameters are re-initialised cumulatively from the
    top (logits) layer down to the first (``reset_parameters()`` where the layer has it, else a
    normal draw with the parameter's own spread); buffers (normalisation constants, running
    statistics) are kept. After each step every method's attribution is recomputed (same target,
    same seed) and compared with the one for the trained model by the per-sample Spearman rank
    correlation of absolute values (``spearman_abs``, the paper's main measure) and of signed
    values (``spearman_raw``), averaged over samples. Pads are left out for text.

    Args:
        module: eager classifier ``[N, *input_shape] -> [N, C]`` logits; it is not modified.
        x: ``[N, *input_shape]`` inputs; target: ``[N]`` int64 class indices.
        card: the model's card.
        methods: names for :func:`auditkit.explain.methods.attribute`.
        seed: seeds the re-initialisation (layer ``i`` uses ``seed + i``) and the methods.
        threshold: a map "passes" when both similarities after full randomisation fall below it.
        layers: cascade order (module names, top first); default: the modules owning
            parameters, in reverse order of a forward pass (for ``DigitsCNN``: classifier.3,
            classifier.1, features.5, features.2, features.0).
        n_steps: integration steps for path methods.

    Returns:
        ``{"layers", "n_samples", "threshold", "methods": {name: {"cascade": [{"layer",
        "spearman_abs", "spearman_raw"}, ...], "final_spearman_abs", "final_spearman_raw",
        "input_similarity", "verdict"}}, "skipped": {name: reason}}``. ``input_similarity``
        (images only, else None) is the rank correlation of the fully randomised map's absolute
        values with ``|x|``: near 1 means the map shows the input, not the model. Good: both
        similarities fall towards 0 as the cascade proceeds, verdict ``"passes"``. A map whose
        similarity stays high ("fails: insensitive to the model's parameters") cannot be
        explaining what the model learned.
    """
    x, target = _check_inputs(x, target, card)
    if not methods:
        raise ValueError("methods is empty: name at least one attribution method")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1); got {threshold}")
    eager = not isinstance(module, torch.jit.ScriptModule)
    avail = available_methods(card, module, eager)
    skipped: dict[str, str] = {}
    for m in methods:
        if m not in avail:
            skipped[m] = f"unknown method {m!r}; known: {', '.join(sorted(avail))}"
        elif avail[m] is not None:
            skipped[m] = str(avail[m])
    run = [m for m in methods if m not in skipped]
    if not run:
        return {"layers": [], "n_samples": int(x.shape[0]), "threshold": threshold, "methods": {},
                "skipped": skipped}

    x = x.to(_device(module))
    target = target.to(x.device)
    # On a copy: a model left in train mode would update its BatchNorm statistics in the probe.
    names = list(layers) if layers is not None else _layers_in_forward_order(copy.deepcopy(module), x)[::-1]
    known = dict(module.named_modules())
    for name in names:
        if name not in known:
            raise ValueError(
                f"layer {name!r} is not a submodule; known: {', '.join(k for k in known if k)}"
            )
    if not names:
        raise ValueError("the model has no layer with parameters to randomise")

    pad = _pad_mask(x, card)
    image = card.task == "image-classification"

    def unit(_k: int, rows: slice) -> dict[str, dict[str, np.ndarray]]:
        """Per-sample similarities of one unit: ``{method: {"abs": [L, n], "raw": [L, n],
        "input": [n] (images)}}`` for the ``L`` cascade steps."""
        # A fresh copy of the trained model per unit: the cascade's re-initialisation is seeded
        # per layer, so every unit sees the very same randomised models.
        model = copy.deepcopy(module)
        layers_of = dict(model.named_modules())
        xs, ts = x[rows], target[rows]
        valid = None if pad is None else (~pad[rows]).cpu().numpy()

        def maps() -> dict[str, np.ndarray]:
            return {
                m: _call_attribute(m, model, xs, ts, card, seed=seed + rows.start, n_steps=n_steps)
                .reshape(xs.shape[0], -1)
                .cpu()
                .numpy()
                for m in run
            }

        original = maps()
        out = {m: {"abs": [], "raw": []} for m in run}
        current = original
        for i, name in enumerate(names):
            _reinitialise(layers_of[name], seed + i)
            current = maps()
            for m in run:
                out[m]["abs"].append(_rank_correlation(np.abs(original[m]), np.abs(current[m]), valid))
                out[m]["raw"].append(_rank_correlation(original[m], current[m], valid))
        result = {m: {"abs": np.stack(v["abs"]), "raw": np.stack(v["raw"])} for m, v in out.items()}
        if image:
            xa = np.abs(xs.reshape(xs.shape[0], -1).detach().cpu().numpy())
            for m in run:
                if current[m].shape == xa.shape:
                    result[m]["input"] = _rank_correlation(np.abs(current[m]), xa)
        return result

    units = map_units(unit, x.shape[0], UNIT)
    per_sample = {
        m: {key: np.concatenate([u[m][key] for u in units], axis=-1) for key in units[0][m]} for m in run
    }
    cascade: dict[str, list[dict]] = {
        m: [
            {"layer": name, "spearman_abs": float(per_sample[m]["abs"][i].mean()),
             "spearman_raw": float(per_sample[m]["raw"][i].mean())}
            for i, name in enumerate(names)
        ]
        for m in run
    }

    results: dict[str, dict] = {}
    for m in run:
        final_abs, final_raw = cascade[m][-1]["spearman_abs"], cascade[m][-1]["spearman_raw"]
        input_sim = float(per_sample[m]["input"].mean()) if "input" in per_sample[m] else None
        if final_abs < threshold and final_raw < threshold:
            verdict = "passes"
        else:
            kept = " and ".join(
                f"{k} rank correlation {v:.2f}"
                for k, v in (("absolute", final_abs), ("signed", final_raw))
                if v >= threshold
            )
            verdict = f"fails: insensitive to the model's parameters ({kept} after full randomisation)"
        results[m] = {
            "cascade": cascade[m],
            "final_spearman_abs": final_abs,
            "final_spearman_raw": final_raw,
            "input_similarity": input_sim,
            "verdict": verdict,
        }
    return {
        "layers": names,
        "n_samples": int(x.shape[0]),
        "threshold": threshold,
        "methods": results,
        "skipped": skipped,
    }


# --------------------------------------------------------------------------- 3. deletion/insertion


def _removal_ranks(scores: Tensor, valid: Tensor, gen: torch.Generator) -> Tensor:
    """Rank ``[N, D]`` (0 = removed first) by decreasing score; ties broken at random (seeded).

    Invalid entries (pads) get the last ranks, so they are never removed before a real feature.
    """
    n, d = scores.shape
    s = scores.masked_fill(~valid, -math.inf)
    perm = torch.rand(n, d, generator=gen).argsort(dim=1)  # random tie-break order
    order = perm.gather(1, torch.argsort(s.gather(1, perm), dim=1, descending=True, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(d).expand(n, d).contiguous())
    return ranks


def _deletion_baseline(x: Tensor, card: AuditCard, baseline: Tensor | float | int | None) -> Tensor:
    """The replacement value for removed features, broadcast to ``x``'s shape."""
    if card.task == "text-classification":
        assert card.text is not None  # guaranteed by the card's validator
        tok = card.text.unk_id if baseline is None else int(baseline)  # type: ignore[arg-type]
        # Pads stay pads; real tokens are replaced by <unk> (or the given token id).
        return torch.where(x == card.text.pad_id, x, torch.full_like(x, tok))
    if baseline is None:
        if card.task == "tabular-classification":
            # Per-feature median of the batch: an actual value of each column (valid codes for
            # categorical and binary features), unlike the mean.
            return x.median(0).values.expand_as(x)
        return torch.zeros_like(x)
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        return b.expand_as(x)
    except RuntimeError:
        raise ValueError(
            f"baseline of shape {list(b.shape)} does not broadcast to x {list(x.shape)}; "
            f"pass a scalar, one sample {list(x.shape[1:])} or a batch {list(x.shape)}"
        ) from None


def deletion_insertion(
    module: nn.Module,
    x: Tensor,
    target: Tensor,
    attributions: Tensor,
    card: AuditCard,
    steps: int = 20,
    seed: int = 0,
    baseline: Tensor | float | int | None = None,
    batch_size: int = 256,
) -> dict:
    """Deletion and insertion curves of an attribution, against a random ranking (RISE, 2018).

    Features are ranked by decreasing (signed) attribution: pixels by the sum over channels,
    tabular features individually, tokens individually with pads never counted. Deletion replaces
    the top fraction ``f`` of each sample's features by the baseline and records the softmax
    probability of the target class; insertion starts from the baseline and puts the top
    fraction back. The same is done with a random ranking (seeded) as the reference. Fractions
    are ``0, 1/steps, ..., 1`` of each sample's own feature count; AUCs are trapezoids over
    ``[0, 1]``.

    Args:
        module: classifier returning logits ``[N, C]``.
        x: ``[N, *input_shape]`` inputs. target: ``[N]`` int64 class indices.
        attributions: images/tabular: same shape as ``x``; text: ``[N, L]`` per-token scores.
        card: the model's card.
        steps: number of fractions after 0 (20 → steps of 5%).
        seed: seeds the random ranking and the tie-breaks.
        baseline: replacement value: images zeros, tabular the per-feature median of ``x``
            (pass a tensor ``[F]`` e.g. training medians), text the ``<unk>`` token id (pass
            another id as an int).
        batch_size: samples per forward pass.

    Returns:
        ``{"fractions", "deletion", "insertion", "deletion_random", "insertion_random"`` (mean
        target probability per fraction) ``, "deletion_auc", "deletion_auc_random",
        "insertion_auc", "insertion_auc_random", "deletion_win_rate", "insertion_win_rate",
        "beats_random": {"deletion", "insertion"}, "n_samples"}``. Win rates are the fraction
        of samples whose own curve beats the random one. Good: deletion AUC well below random
        (the probability collapses once the top features are gone) and insertion AUC well above
        random.
    """
    x, target = _check_inputs(x, target, card)
    if not isinstance(attributions, Tensor):
        raise ValueError("attributions must be a torch tensor")
    want = list(x.shape)
    if list(attributions.shape) != want:
        raise ValueError(
            f"attributions have shape {list(attributions.shape)} but x has {want}; pass one "
            f"attribution per input feature (per token for text)"
        )
    if not torch.isfinite(attributions.float()).all():
        raise ValueError("attributions contain NaN or infinite values")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")

    device = _device(module)
    x, target = x.to(device), target.to(device)
    n_all = x.shape[0]
    if card.task != "image-classification":
        pad_all = _pad_mask(x, card)
        if pad_all is not None and (~pad_all).sum(1).eq(0).any():
            raise ValueError("a sample has no features to rank (a text row made only of pads)")
    base_all = _deletion_baseline(x, card, baseline)  # over all of x: the tabular median is the batch's
    fractions = np.linspace(0.0, 1.0, steps + 1)
    forward_batch = batch_size_for(module, x, maximum=batch_size)

    def unit(_k: int, rows: slice) -> np.ndarray:
        """Curves ``[4, n_unit, steps + 1]`` of one unit: deletion, insertion, and both for the
        random ranking (seeded by ``seed + rows.start``)."""
        xs, ts = x[rows], target[rows]
        n = xs.shape[0]
        attr = attributions[rows].detach().float().to(device)
        if card.task == "image-classification":
            scores = attr.sum(1).reshape(n, -1)  # one score per pixel: channels summed
            valid = torch.ones_like(scores, dtype=torch.bool)
        else:
            scores = attr.reshape(n, -1)
            pad = _pad_mask(xs, card)
            valid = torch.ones_like(scores, dtype=torch.bool) if pad is None else ~pad
        n_valid = valid.sum(1)
        base = base_all[rows]
        gen = torch.Generator().manual_seed(seed + rows.start)
        random_scores = torch.rand(scores.shape, generator=gen)
        ranks = {
            "attr": _removal_ranks(scores.cpu(), valid.cpu(), gen).to(device),
            "random": _removal_ranks(random_scores, valid.cpu(), gen).to(device),
        }

        def expand(mask: Tensor) -> Tensor:  # [n, D] feature mask → xs's shape
            if card.task == "image-classification":
                return mask.reshape(n, 1, *xs.shape[2:]).expand_as(xs)
            return mask.reshape(xs.shape)

        def target_prob(inputs: Tensor) -> Tensor:
            probs = []
            with torch.no_grad():
                for i in range(0, inputs.shape[0], forward_batch):
                    logits = module(inputs[i : i + forward_batch])
                    probs.append(torch.softmax(logits.float(), 1))
            p = torch.cat(probs)
            return p.reshape(4, n, -1).gather(2, ts.expand(4, n)[..., None])[..., 0]

        curves = torch.empty(4, n, steps + 1)  # deletion, insertion, deletion_random, insertion_random
        for j, f in enumerate(fractions):
            k = torch.round(f * n_valid.double()).long()[:, None]
            variants = []
            for key in ("attr", "random"):
                top = expand(ranks[key] < k)
                variants += [torch.where(top, base, xs), torch.where(top, xs, base)]
            # [4, n, ...]: attribution deletion, insertion, random deletion, insertion (4 copies of xs)
            batch = torch.stack(variants)
            curves[:, :, j] = target_prob(batch.reshape(4 * n, *xs.shape[1:])).cpu()
        return curves.numpy()

    all_curves = torch.from_numpy(np.concatenate(map_units(unit, n_all, UNIT), axis=1))
    n = n_all
    del_c, ins_c, del_r, ins_r = all_curves[0], all_curves[1], all_curves[2], all_curves[3]

    def auc(c: Tensor) -> np.ndarray:  # per-sample area [N]
        return np.trapezoid(c.numpy(), fractions, axis=1)

    a = {k: auc(c) for k, c in (("del", del_c), ("ins", ins_c), ("del_r", del_r), ("ins_r", ins_r))}
    result = {
        "fractions": fractions.tolist(),
        "deletion": del_c.mean(0).tolist(),
        "insertion": ins_c.mean(0).tolist(),
        "deletion_random": del_r.mean(0).tolist(),
        "insertion_random": ins_r.mean(0).tolist(),
        "deletion_auc": float(a["del"].mean()),
        "deletion_auc_random": float(a["del_r"].mean()),
        "insertion_auc": float(a["ins"].mean()),
        "insertion_auc_random": float(a["ins_r"].mean()),
        "deletion_win_rate": float((a["del"] < a["del_r"]).mean()),
        "insertion_win_rate": float((a["ins"] > a["ins_r"]).mean()),
        "n_samples": int(n),
    }
    result["beats_random"] = {
        "deletion": bool(result["deletion_auc"] < result["deletion_auc_random"]),
        "insertion": bool(result["insertion_auc"] > result["insertion_auc_random"]),
    }
    return result


# --------------------------------------------------------------------------- 4. infidelity


def _feature_scale(x: Tensor, card: AuditCard) -> Tensor:
    """Per-feature input range, broadcastable to ``x``; 0 where a feature must not be perturbed.

    Images: the card's bounds (1 if none). Tabular: ``max - min`` of continuous and integer
    features; categorical codes and binary flags are left unperturbed (noise on a code has no
    meaning).
    """
    if card.task == "tabular-classification":
        assert card.features is not None
        return torch.tensor(
            [f.max - f.min if f.kind in ("continuous", "integer") else 0.0 for f in card.features],
            dtype=x.dtype,
            device=x.device,
        )
    lo, hi = card.bounds if card.bounds is not None else (0.0, 1.0)
    return torch.tensor(hi - lo, dtype=x.dtype, device=x.device)


def infidelity_sensitivity(
    module: nn.Module,
    x: Tensor,
    target: Tensor,
    method: str,
    card: AuditCard,
    n_perturb: int = 10,
    seed: int = 0,
    noise_scale: float = 0.05,
    radius: float = 0.02,
) -> dict:
    """captum's explanation infidelity and max-sensitivity (Yeh et al. 2019) for one method.

    Infidelity ``E_I[(I · attr - (f(x)_t - f(x - I)_t))^2]`` with Gaussian ``I`` of standard
    deviation ``noise_scale`` × the feature's range, seeded, and captum's ``normalize=True``
    (attributions rescaled by the best scalar, so the value does not depend on their units).
    The same perturbation is used for every method, which makes the numbers comparable between
    methods. Max-sensitivity: the largest relative change ``||attr(x') - attr(x)|| /
    ||attr(x)||`` over ``n_perturb`` uniform draws ``x'`` in an L-inf ball of ``radius`` ×
    range. Tabular categorical and binary features are not perturbed. Images and tabular only.

    Args:
        module: classifier returning logits ``[N, C]``; ``f`` is the logit of class ``t``.
        x: ``[N, *input_shape]`` float inputs. target: ``[N]`` int64 class indices.
        method: a name for :func:`auditkit.explain.methods.attribute`.
        card: the model's card.
        n_perturb: perturbations per sample for each metric.
        seed: seeds the perturbations and the method.
        noise_scale, radius: perturbation sizes as fractions of the input range.

    Returns:
        ``{"method", "infidelity_mean", "infidelity_median", "sensitivity_mean",
        "sensitivity_median", "n_samples", "n_perturb", "noise_scale", "radius"}`` or
        ``{"skipped": reason}`` for text. Good: both small; infidelity is in squared logit
        units, sensitivity is relative (0.1 = the map moves by 10% of its norm).
    """
    from captum.metrics import infidelity, sensitivity_max

    x, target = _check_inputs(x, target, card)
    if card.task == "text-classification":
        return {"skipped": "infidelity and sensitivity perturb continuous inputs; token ids are discrete"}
    if n_perturb < 1:
        raise ValueError(f"n_perturb must be >= 1; got {n_perturb}")
    device = _device(module)
    x, target = x.to(device), target.to(device)
    scale = _feature_scale(x, card)
    # Perturbed copies per captum batch: n_perturb per sample, fewer where they would not fit.
    fit_rows = batch_size_for(module, x)

    def unit(_k: int, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample infidelity and sensitivity ``[n_unit]`` of one unit (seeded by
        ``seed + rows.start``)."""
        xs, ts = x[rows], target[rows]
        gen = torch.Generator(device=xs.device).manual_seed(seed + rows.start)
        per_batch = max(xs.shape[0], min(xs.shape[0] * n_perturb, fit_rows))

        def gaussian(inputs: Tensor) -> tuple[Tensor, Tensor]:
            noise = torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=inputs.dtype)
            noise = noise * noise_scale * scale
            return noise, inputs - noise

        def uniform(inputs: Tensor, perturb_radius: float) -> Tensor:
            u = torch.rand(inputs.shape, generator=gen, device=inputs.device, dtype=inputs.dtype)
            return inputs + (2 * u - 1) * perturb_radius * scale

        def explain(inputs: Tensor | tuple[Tensor, ...], target: Tensor) -> Tensor | tuple[Tensor]:
            # captum passes the unperturbed inputs as a 1-tuple (and expects a tuple back, as its
            # own attribute methods give) and the perturbed ones as a tensor.
            if isinstance(inputs, tuple):
                return (_call_attribute(method, module, inputs[0], target, card, seed=seed + rows.start),)
            return _call_attribute(method, module, inputs, target, card, seed=seed + rows.start)

        attr = explain(xs, ts)
        with torch.no_grad():
            infid = infidelity(
                module, gaussian, xs, attr, target=ts, n_perturb_samples=n_perturb, normalize=True,
                max_examples_per_batch=per_batch,
            )
        sens = sensitivity_max(
            explain, xs, perturb_func=uniform, perturb_radius=radius, n_perturb_samples=n_perturb,
            target=ts, max_examples_per_batch=per_batch,
        )
        return infid.detach().cpu().double().numpy(), sens.detach().cpu().double().numpy()

    units = map_units(unit, x.shape[0], UNIT)
    infid_np = np.concatenate([u[0] for u in units])
    sens_np = np.concatenate([u[1] for u in units])
    return {
        "method": method,
        "infidelity_mean": float(infid_np.mean()),
        "infidelity_median": float(np.median(infid_np)),
        "sensitivity_mean": float(sens_np.mean()),
        "sensitivity_median": float(np.median(sens_np)),
        "n_samples": int(x.shape[0]),
        "n_perturb": n_perturb,
        "noise_scale": noise_scale,
        "radius": radius,
    }


# --------------------------------------------------------------------------- 5. ground truth


def tabular_ground_truth(importance: dict[str, float], causal: list[str], non_causal: list[str]) -> dict:
    """Agreement of global feature importance with the known causal features.

    Args:
        importance: global importance per feature name, e.g. mean ``|attribution|`` over a test
            set (larger = more important).
        causal: names of the features that cause the label.
        non_causal: names of the distractors (no effect on the label). Features in
            ``importance`` that are in neither list are reported as ``unlabelled`` and left out.

    Returns:
        ``{"ranks": {causal name: rank among the labelled features, 1 = most important},
        "precision_at_k", "k", "causal_outrank_non_causal", "auroc", "unlabelled"}``.
        ``precision_at_k`` is the fraction of the ``k = len(causal)`` most important labelled
        features that are causal. Good: precision 1, all causal features above every
        distractor, AUROC 1 (0.5 = chance).
    """
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    causal, non_causal = list(causal), list(non_causal)
    if not causal or not non_causal:
        raise ValueError("tabular_ground_truth needs at least one causal and one non-causal feature")
    both = set(causal) & set(non_causal)
    if both:
        raise ValueError(f"features listed as both causal and non-causal: {sorted(both)}")
    missing = [f for f in causal + non_causal if f not in importance]
    if missing:
        raise ValueError(f"no importance given for {missing}; pass one value per feature")
    labelled = causal + non_causal
    values = np.array([float(importance[f]) for f in labelled])
    if not np.isfinite(values).all():
        raise ValueError("importance values must be finite")
    # Ties share the mean rank; 1 = most important.
    ranks = rankdata(-values, method="average")
    k = len(causal)
    order = np.argsort(-values, kind="stable")
    top = {labelled[i] for i in order[:k]}
    is_causal = np.array([1] * len(causal) + [0] * len(non_causal))
    return {
        "ranks": {f: float(ranks[i]) for i, f in enumerate(causal)},
        "k": k,
        "precision_at_k": len(top & set(causal)) / k,
        "causal_outrank_non_causal": bool(values[:k].min() > values[k:].max()),
        "auroc": float(roc_auc_score(is_causal, values)),
        "unlabelled": sorted(set(importance) - set(labelled)),
    }


def _token_scores(
    scores: np.ndarray, relevance: np.ndarray, valid: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """hit@1, hit@k and first-relevant rank for ``scores`` ``[N, L]`` (higher = more relevant)."""
    n, length = scores.shape
    s = np.where(valid, scores, -np.inf)
    # Random tie-break: lexsort sorts by the last key first.
    order = np.lexsort((rng.random((n, length)), -s), axis=1)
    rel_sorted = np.take_along_axis(relevance, order, axis=1)
    k = relevance.sum(1)
    pos = np.arange(length)[None, :]
    hit_k = (rel_sorted & (pos < k[:, None])).sum(1) / k
    first = rel_sorted.argmax(1) + 1  # 1-based rank of the best-ranked deciding token
    return {
        "hit_at_1": float(rel_sorted[:, 0].mean()),
        "hit_at_k": float(hit_k.mean()),
        "mean_first_rank": float(first.mean()),
    }


def token_ground_truth(
    attr: np.ndarray, relevance: np.ndarray, pad_mask: np.ndarray, seed: int = 0
) -> dict:
    """Agreement of per-token attributions with the tokens that decide the label.

    Args:
        attr: ``[N, L]`` per-token attribution scores; ranked by absolute value.
        relevance: bool ``[N, L]``, True at the deciding tokens (e.g. the sentiment word and its
            negator).
        pad_mask: bool ``[N, L]``, True at padding positions (never ranked).
        seed: seeds the random reference ranking and the tie-breaks.

    Returns:
        ``{"hit_at_1", "hit_at_k", "mean_first_rank", "random": {same keys}, "n_sentences",
        "n_skipped"}``. Per sentence: ``hit_at_1`` is 1 if the top-|attr| token is a deciding
        token; ``hit_at_k`` the fraction of the ``k`` deciding tokens found among the top-``k``
        tokens (k = number of deciding tokens); ``mean_first_rank`` the 1-based rank of the best
        ranked deciding token; all averaged over sentences. Sentences without a deciding
        (non-pad) token are skipped. Good: hit rates near 1 and first rank near 1, well beyond
        the random reference.
    """
    attr, relevance, pad_mask = np.asarray(attr), np.asarray(relevance), np.asarray(pad_mask)
    if attr.ndim != 2 or relevance.shape != attr.shape or pad_mask.shape != attr.shape:
        raise ValueError(
            f"attr, relevance and pad_mask must all be [N, L]; got {list(attr.shape)}, "
            f"{list(relevance.shape)}, {list(pad_mask.shape)}"
        )
    if relevance.dtype != bool or pad_mask.dtype != bool:
        raise ValueError("relevance and pad_mask must be boolean arrays")
    if not np.isfinite(attr).all():
        raise ValueError("attr contains NaN or infinite values")
    valid = ~pad_mask
    rel = relevance & valid
    keep = rel.any(1)
    if not keep.any():
        raise ValueError("no sentence has a deciding (non-pad) token; check relevance and pad_mask")
    rng = np.random.default_rng(seed)
    scores, rel, valid = np.abs(attr[keep]).astype(float), rel[keep], valid[keep]
    out: dict = _token_scores(scores, rel, valid, rng)
    out["random"] = _token_scores(rng.random(scores.shape), rel, valid, rng)
    out["n_sentences"] = int(keep.sum())
    out["n_skipped"] = int((~keep).sum())
    return out
