"""Evasion attack on a tabular classifier under the threat model its card declares.

Written by hand: no installed library (foolbox, captum, ART's feature-space attacks) attacks
mixed-type tabular inputs under per-feature mutability, ranges, integrality and categorical
codes with a cost in feature units, and reports the cheapest change per sample.

Threat model (from ``card.features``):

* only features with ``changeable=True`` move; every other feature keeps its exact value;
* every feature stays within ``[min, max]``; integer features are whole numbers, binary features
  are 0 or 1, categorical features are one of their codes ``0..len(categories)-1``. These hold
  at *every* point the model is queried on, not only at the end (project, then discretise);
* the attacker is a fraudster: only samples of the positive class (``card.positive_class``) that
  the model currently flags are attacked (true positives), and success means the model no longer
  predicts the positive class (or predicts ``target_class``, if given).

Cost of a change ``x -> x'`` in *feature units*::

    cost = sum over continuous/integer features of |x'_f - x_f| / (max_f - min_f)
         + discrete_cost * (number of categorical or binary features changed)

i.e. the L1 distance after scaling every numeric range to [0, 1], plus a fixed price per discrete
change (``DISCRETE_COST = 0.1`` by default: a categorical switch or a flag flip costs as much as
moving a numeric feature by a tenth of its range).

Algorithm, per budget ``b`` (budgets ascending; a sample that has evaded is not attacked again):

1. Discrete search: enumerate every combination of at most ``max_discrete_changes`` changes of
   changeable categorical/binary features (their one-hot encoding gives no gradient); keep, per
   sample, the unchanged configuration and the ``n_discrete_candidates`` configurations that
   lower the positive-class margin the most at the clean numeric values (only those that lower it).
2. Continuous search: from each kept configuration of cost ``c <= b``, PGD on the changeable
   continuous/integer features in the normalised space, minimising the positive-class logit
   margin, projected after each step onto ``{L1 <= b - c} ∩ [min, max]`` (exact projection by
   bisection on the soft threshold), then discretised: integers rounded to the nearest value, or
   towards the original where nearest rounding would exceed the budget.
3. Cost reduction of each evading point: shrink the numeric change by bisection on its scale,
   then revert every changed feature to its original value where the point still evades.

The reported cheapest change per sample is the cheapest evading point found over all budgets;
evasion at budget ``b`` is the fraction of attacked samples whose cheapest change costs ``<= b``
(so the curve is non-decreasing by construction: a point within ``b`` is within every larger
budget). It is an upper bound on the model's robustness, like every attack.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from auditkit.attacks.common import check_positive_int, eval_mode, make_generator
from auditkit.card import AuditCard
from auditkit.stats import proportion

DISCRETE_COST = 0.1
DEFAULT_BUDGETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
# Projections aim slightly inside the budget so float32 rounding never lands a point outside it.
_BUDGET_SLACK = 1e-4
_SCALE_BISECTIONS = 10
_L1_BISECTIONS = 40


@dataclass
class _Schema:
    """The card's feature schema as tensors ``[F]`` on the data's device (float64)."""

    lo: Tensor
    hi: Tensor
    span: Tensor  # max - min, 1 where the range is empty (such a feature never moves)
    integral: Tensor  # bool: integer, binary or categorical
    changeable: Tensor  # bool
    numeric: list[int]  # changeable continuous/integer features with a non-empty range
    discrete: list[int]  # changeable categorical/binary features
    names: list[str]
    kinds: list[str]
    categories: list[list[str] | None]


def _schema(card: AuditCard, device: torch.device) -> _Schema:
    if not card.features:
        raise ValueError("the card has no 'features': a tabular attack needs the feature schema "
                         "(add FeatureSpec entries to the card)")
    feats = card.features
    f64 = dict(dtype=torch.float64, device=device)
    lo = torch.tensor([f.min for f in feats], **f64)
    hi = torch.tensor([f.max for f in feats], **f64)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    numeric = [i for i, f in enumerate(feats)
               if f.changeable and f.kind in ("continuous", "integer") and f.max > f.min]
    discrete = [i for i, f in enumerate(feats) if f.changeable and f.kind in ("categorical", "binary")]
    return _Schema(
        lo=lo, hi=hi, span=span,
        integral=torch.tensor([f.kind != "continuous" for f in feats], device=device),
        changeable=torch.tensor([f.changeable for f in feats], device=device),
        numeric=numeric, discrete=discrete,
        names=[f.name for f in feats], kinds=[f.kind for f in feats],
        categories=[f.categories for f in feats],
    )


def valid_points(x: Tensor, x0: Tensor, card: AuditCard) -> Tensor:
    """Whether each row of ``x`` is a legal change of the matching row of ``x0`` under ``card``.

    Args:
        x: ``[N, F]`` candidate points, raw feature units (categoricals as codes).
        x0: ``[N, F]`` original points.
        card: card with ``features``.

    Returns:
        bool ``[N]``: non-changeable features equal ``x0``, every feature within
        ``[min, max]``, integer/binary/categorical features integral (binary thus 0/1,
        categorical thus a valid code).
    """
    s = _schema(card, x.device)
    xd, x0d = x.double(), x0.double()
    in_range = ((xd >= s.lo) & (xd <= s.hi)).all(1)
    integral = ((xd == xd.round()) | ~s.integral).all(1)
    fixed = ((xd == x0d) | s.changeable).all(1)
    return in_range & integral & fixed


def change_cost(x: Tensor, x0: Tensor, card: AuditCard, discrete_cost: float = DISCRETE_COST) -> Tensor:
    """Cost of moving ``x0`` to ``x`` in feature units (module docstring).

    Args:
        x, x0: ``[N, F]`` points in raw feature units.
        card: card with ``features``.
        discrete_cost: price of one categorical/binary change.

    Returns:
        ``[N]`` float64 costs: normalised L1 over continuous/integer features plus
        ``discrete_cost`` per changed categorical/binary feature (all features counted, whether
        changeable or not; use :func:`valid_points` for legality).
    """
    s = _schema(card, x.device)
    return _cost(x, x0, s, discrete_cost)


def _cost(x: Tensor, x0: Tensor, s: _Schema, discrete_cost: float) -> Tensor:
    d = (x.double() - x0.double()).abs()
    disc = torch.tensor([k in ("categorical", "binary") for k in s.kinds], device=x.device)
    numeric = torch.where(disc, torch.zeros_like(d), d / s.span).sum(1)
    return numeric + discrete_cost * ((d > 0) & disc).sum(1).double()


def _check_inputs(x: Tensor, y: Tensor, card: AuditCard, budgets: list[float], steps: int,
                  seed: int, batch_size: int, discrete_cost: float, target_class: int | None,
                  restarts: int) -> _Schema:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2:
        raise ValueError("x must be a floating-point tensor [N, F] of raw feature values")
    s = _schema(card, x.device)
    if x.shape[1] != len(s.names):
        raise ValueError(f"x has {x.shape[1]} columns but the card has {len(s.names)} features")
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],) or y.dtype.is_floating_point:
        raise ValueError(f"y must be an integer tensor of labels with shape [{x.shape[0]}]")
    if not budgets:
        raise ValueError("budgets is empty: give at least one cost budget, e.g. [0.05, 0.1]")
    for b in budgets:
        if not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
            raise ValueError(f"budgets must be finite numbers >= 0 (feature units), got {b!r}")
    if not math.isfinite(discrete_cost) or discrete_cost <= 0:
        raise ValueError(f"discrete_cost must be > 0, got {discrete_cost!r}")
    check_positive_int("steps", steps, minimum=0)
    check_positive_int("seed", seed, minimum=0)
    check_positive_int("batch_size", batch_size)
    check_positive_int("restarts", restarts)
    if card.positive_index is None:
        raise ValueError("the card has no 'positive_class': set it to the class the attacker "
                         "wants to escape (e.g. 'fraud')")
    if target_class is not None and not (0 <= target_class < card.num_classes
                                         and target_class != card.positive_index):
        raise ValueError(f"target_class must be a class index other than the positive class "
                         f"{card.positive_index}, in [0, {card.num_classes})")
    if x.numel() and bool(torch.isnan(x).any()):
        raise ValueError("x contains NaN: impute or drop those rows first")
    ok = valid_points(x, x, card)
    if not bool(ok.all()):
        i = int((~ok).nonzero()[0])
        xd = x[i].double()
        bad = [n for j, n in enumerate(s.names)
               if not (s.lo[j] <= xd[j] <= s.hi[j]) or (s.integral[j] and xd[j] != xd[j].round())]
        raise ValueError(f"row {i} of x violates the card (features {bad}: outside [min, max] or "
                         f"not integral): fix the data or the card's feature ranges")
    return s


# ----------------------------------------------------------------------------- model helpers


def _margin(logits: Tensor, pos: int, target: int | None) -> Tensor:
    """Positive-class margin ``[B]`` to minimise; the attack succeeds once it is below 0."""
    z_pos = logits[:, pos]
    if target is not None:
        return z_pos - logits[:, target]
    other = logits.clone()
    other[:, pos] = float("-inf")
    return z_pos - other.amax(1)


def _evades(logits: Tensor, pos: int, target: int | None) -> Tensor:
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != pos


def _forward(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]) \
            if x.shape[0] else model(x)


# ----------------------------------------------------------------------------- discrete search


def _discrete_configs(s: _Schema, max_changes: int) -> list[tuple[tuple[int, float | None], ...]]:
    """All combinations of at most ``max_changes`` discrete changes, as ``((feature, value),...)``
    with ``value=None`` meaning "flip" (binary) — the empty combination first."""
    options: list[list[tuple[int, float | None]]] = []
    for f in s.discrete:
        if s.kinds[f] == "binary":
            options.append([(f, None)])
        else:
            options.append([(f, float(c)) for c in range(len(s.categories[f] or []))])
    configs: list[tuple[tuple[int, float | None], ...]] = [()]
    for k in range(1, min(max_changes, len(options)) + 1):
        for group in itertools.combinations(options, k):
            configs.extend(itertools.product(*group))
    return configs


def _apply_config(x0: Tensor, config: tuple[tuple[int, float | None], ...]) -> tuple[Tensor, Tensor]:
    """``x0`` with the config applied ``[N, F]``, and whether it really changes every listed
    feature of each row (a categorical set to its own value is not a change) ``[N]``."""
    x = x0.clone()
    real = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    for f, v in config:
        if v is None:
            x[:, f] = 1 - x0[:, f]
        else:
            x[:, f] = v
            real &= x0[:, f] != v
    return x, real


# ----------------------------------------------------------------------------- continuous search


def _project_l1_box(v: Tensor, lo: Tensor, hi: Tensor, radius: Tensor) -> Tensor:
    """Euclidean projection of ``v [B, C]`` onto ``{d : lo <= d <= hi, ||d||_1 <= radius}``.

    ``lo <= 0 <= hi``; the solution is ``clip(soft_threshold(v, lam), lo, hi)`` with the smallest
    ``lam >= 0`` that meets the radius (KKT of the separable problem), found by bisection.
    """
    d = v.clamp(lo, hi)
    over = d.abs().sum(1) > radius
    if not bool(over.any()):
        return d
    lam_lo = torch.zeros_like(radius)
    lam_hi = v.abs().amax(1)
    for _ in range(_L1_BISECTIONS):
        lam = (lam_lo + lam_hi) / 2
        dd = (v.sign() * (v.abs() - lam.unsqueeze(1)).clamp_min(0)).clamp(lo, hi)
        too_big = dd.abs().sum(1) > radius
        lam_lo = torch.where(too_big, lam, lam_lo)
        lam_hi = torch.where(too_big, lam_hi, lam)
    dd = (v.sign() * (v.abs() - lam_hi.unsqueeze(1)).clamp_min(0)).clamp(lo, hi)
    return torch.where(over.unsqueeze(1), dd, d)


def _discretise(xs: Tensor, raw: Tensor, s: _Schema, radius: Tensor | None) -> Tensor:
    """``xs [B, F]`` with its numeric changeable columns set to ``raw [B, C]`` (float64), clamped
    to range and with integer features rounded: to the nearest value, or — in rows whose cost
    would then exceed ``radius [B]`` — towards the original value (never costs more than ``raw``)."""
    cols = s.numeric
    base = xs[:, cols].double()
    lo, hi, span = s.lo[cols], s.hi[cols], s.span[cols]
    integral = s.integral[cols]
    raw = torch.minimum(torch.maximum(raw, lo), hi)
    nearest = torch.where(integral, raw.round(), raw)
    if radius is not None:
        cost = ((nearest - base).abs() / span).sum(1)
        toward = torch.where(integral, base + (raw - base).trunc(), raw)
        nearest = torch.where((cost > radius).unsqueeze(1), toward, nearest)
    # Integer features with non-integral card limits: stay inside [ceil(min), floor(max)].
    nearest = torch.where(integral, nearest.clamp(lo.ceil(), hi.floor()), nearest)
    out = xs.clone()
    out[:, cols] = nearest.to(xs.dtype)
    return out


def _pgd(model: nn.Module, xs: Tensor, radius: Tensor, s: _Schema, pos: int, target: int | None,
         steps: int, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """PGD on the numeric changeable features of ``xs [B, F]`` within L1 ``radius [B]``
    (normalised units), from ``xs`` itself or, with ``gen``, from a random point of the ball.
    Every point the model sees is valid. Returns the evading point (or the last point)
    ``[B, F]`` and whether it evades ``[B]``."""
    with torch.no_grad():
        evaded = _evades(model(xs), pos, target)
    x_out = xs.clone()
    cols = s.numeric
    if not cols or steps == 0:
        return x_out, evaded
    span = s.span[cols]
    base = xs[:, cols].double()
    d_lo = s.lo[cols] - base  # box of the change, in raw units
    d_hi = s.hi[cols] - base
    radius = radius * (1 - _BUDGET_SLACK)
    # The normalised change (feature units): the continuous iterate behind the valid points.
    delta = torch.zeros_like(base)
    x_cur = xs.clone()
    if gen is not None:
        u = torch.rand(base.shape, generator=gen, device=base.device, dtype=base.dtype)
        r0 = radius * torch.rand(radius.shape, generator=gen, device=base.device, dtype=base.dtype)
        delta = _project_l1_box((2 * u - 1) * radius.unsqueeze(1), d_lo / span, d_hi / span, r0)
        x_cur = _discretise(xs, base + delta * span, s, radius)
        with torch.no_grad():
            start_ok = _evades(model(x_cur), pos, target) & ~evaded
        x_out[start_ok] = x_cur[start_ok]
        evaded |= start_ok
    active = (~evaded).nonzero().squeeze(1)
    for t in range(steps + 1):
        if active.numel() == 0:
            break
        xa = x_cur[active].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            (g,) = torch.autograd.grad(_margin(logits, pos, target).sum(), xa)
        newly = _evades(logits.detach(), pos, target)
        if bool(newly.any()):
            rows = active[newly]
            x_out[rows] = x_cur[rows]
            evaded[rows] = True
            active, g = active[~newly], g[~newly]
        if t == steps or active.numel() == 0:
            break
        gu = torch.nan_to_num(g[:, cols].double()) * span  # gradient w.r.t. the normalised change
        gn = gu.norm(dim=1, keepdim=True)
        # Cosine-decayed step, as a fraction of the radius, along the unit L2 gradient.
        eta = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t / steps))
        r = radius[active].unsqueeze(1)
        step = torch.where(gn > 0, eta * r * gu / gn.clamp_min(1e-300), torch.zeros_like(gu))
        d = _project_l1_box(delta[active] - step, d_lo[active] / span, d_hi[active] / span,
                            radius[active])
        delta[active] = d
        x_cur[active] = _discretise(xs[active], base[active] + d * span, s, radius[active])
    if active.numel():
        x_out[active] = x_cur[active]
    return x_out, evaded


def _reduce_cost(model: nn.Module, x_adv: Tensor, xs: Tensor, x0: Tensor, s: _Schema, pos: int,
                 target: int | None, discrete_cost: float) -> Tensor:
    """Cheaper evading points ``[B, F]`` for evading ``x_adv [B, F]``: shrink the numeric change
    (from the configuration ``xs``) by bisection on its scale, then revert single features to
    ``x0`` wherever the point still evades."""
    best = x_adv.clone()
    if s.numeric:
        cols = s.numeric
        base, change = xs[:, cols].double(), (x_adv[:, cols] - xs[:, cols]).double()
        a_lo = torch.zeros(x_adv.shape[0], dtype=torch.float64, device=x_adv.device)
        a_hi = torch.ones_like(a_lo)
        for _ in range(_SCALE_BISECTIONS):
            a = (a_lo + a_hi) / 2
            # |round(a * change)| <= |change| for integer changes and a <= 1: never costs more.
            cand = _discretise(xs, base + a.unsqueeze(1) * change, s, None)
            with torch.no_grad():
                ok = _evades(model(cand), pos, target)
            best = torch.where(ok.unsqueeze(1), cand, best)
            a_hi = torch.where(ok, a, a_hi)
            a_lo = torch.where(ok, a_lo, a)
    # Revert the features that cost most first (by their mean cost over the batch).
    d = (best.double() - x0.double()).abs() / s.span
    d[:, s.discrete] = discrete_cost * (d[:, s.discrete] > 0).double()
    for f in d.mean(0).argsort(descending=True).tolist():
        changed = best[:, f] != x0[:, f]
        if not bool(changed.any()):
            continue
        cand = best.clone()
        cand[:, f] = x0[:, f]
        with torch.no_grad():
            ok = _evades(model(cand), pos, target) & changed
        best = torch.where(ok.unsqueeze(1), cand, best)
    return best


def _candidates(model: nn.Module, x0: Tensor, logits0: Tensor, s: _Schema, pos: int,
                target: int | None, max_changes: int, keep_top: int, discrete_cost: float,
                batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Starting points of the numeric search: each sample of ``x0 [n, F]`` unchanged, and with
    the ``keep_top`` discrete configurations that lower its margin most (and lower it at all).

    Returns ``xs [R, F]``, their discrete cost ``[R]`` (float64) and sample index ``[R]``.
    """
    n, dev = x0.shape[0], x0.device
    m0 = _margin(logits0, pos, target)
    xs, cost, sample, margin = [x0], [torch.zeros(n, dtype=torch.float64, device=dev)], \
        [torch.arange(n, device=dev)], [torch.full((n,), float("-inf"), device=dev)]
    for cfg in _discrete_configs(s, max_changes)[1:]:
        xc, real = _apply_config(x0, cfg)
        mc = _margin(_forward(model, xc, batch_size), pos, target)
        keep = real & (mc < m0)
        xs.append(xc[keep])
        cost.append(torch.full((int(keep.sum()),), discrete_cost * len(cfg), dtype=torch.float64,
                               device=dev))
        sample.append(keep.nonzero().squeeze(1))
        margin.append(mc[keep])
    xs_all, cost_all, sample_all, margin_all = (torch.cat(t) for t in (xs, cost, sample, margin))
    # Group by sample, lowest margin first (the unchanged row has margin -inf: always first).
    order = torch.argsort(margin_all, stable=True)
    order = order[torch.argsort(sample_all[order], stable=True)]
    sample_sorted = sample_all[order]
    _, counts = torch.unique_consecutive(sample_sorted, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.arange(order.numel(), device=dev) - starts
    order = order[rank <= keep_top]
    return xs_all[order], cost_all[order], sample_all[order]


# ----------------------------------------------------------------------------- report helpers


def _value(f: int, v: float, s: _Schema) -> float | int | str:
    """A feature value as a reader wants it: category name, int, or float."""
    if s.kinds[f] == "categorical":
        return (s.categories[f] or [])[int(round(v))]
    if s.kinds[f] in ("integer", "binary"):
        return int(round(v))
    return float(f"{v:.6g}")


def _changes(x: Tensor, x0: Tensor, s: _Schema, discrete_cost: float) -> list[dict[str, Any]]:
    out = []
    for f in range(len(s.names)):
        a, b = float(x0[f]), float(x[f])
        if a == b:
            continue
        discrete = s.kinds[f] in ("categorical", "binary")
        out.append({
            "feature": s.names[f],
            "kind": s.kinds[f],
            "from": _value(f, a, s),
            "to": _value(f, b, s),
            "delta": None if s.kinds[f] == "categorical" else float(f"{b - a:.6g}"),
            "cost": discrete_cost if discrete else abs(b - a) / float(s.span[f]),
        })
    return out


def _feature_table(x_adv: Tensor, x0: Tensor, s: _Schema) -> list[dict[str, Any]]:
    """Per changeable feature, over the successful evasions ``x_adv [M, F]``: the fraction that
    changed it, and the mean signed / absolute change (raw units) or the top transitions."""
    rows = []
    m = x_adv.shape[0]
    for f in range(len(s.names)):
        if not bool(s.changeable[f]):
            continue
        changed = x_adv[:, f] != x0[:, f]
        k = int(changed.sum())
        row: dict[str, Any] = {"feature": s.names[f], "kind": s.kinds[f],
                               "fraction_changed": k / m if m else float("nan"), "n_changed": k}
        if s.kinds[f] in ("categorical", "binary"):
            pairs: dict[str, int] = {}
            for a, b in zip(x0[changed, f].tolist(), x_adv[changed, f].tolist()):
                key = f"{_value(f, a, s)} -> {_value(f, b, s)}"
                pairs[key] = pairs.get(key, 0) + 1
            row["top_transitions"] = [{"change": key, "count": c} for key, c in
                                      sorted(pairs.items(), key=lambda kv: -kv[1])[:5]]
        else:
            delta = (x_adv[changed, f] - x0[changed, f]).double()
            row["mean_change"] = float(delta.mean()) if k else None
            row["mean_abs_change"] = float(delta.abs().mean()) if k else None
            row["mean_cost"] = float((delta.abs() / s.span[f]).mean()) if k else None
        rows.append(row)
    rows.sort(key=lambda r: -r["n_changed"])
    return rows


# ----------------------------------------------------------------------------- public entry


def tabular_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    card: AuditCard,
    *,
    budgets: list[float] | None = None,
    target_class: int | None = None,
    steps: int = 50,
    seed: int = 0,
    batch_size: int = 1024,
    discrete_cost: float = DISCRETE_COST,
    max_discrete_changes: int = 2,
    n_discrete_candidates: int = 32,
    restarts: int = 1,
) -> dict[str, Any]:
    """Minimal-cost evasion of the positive class under the card's feature constraints.

    Args:
        model: classifier ``[N, F]`` raw features -> logits ``[N, C]`` (run in eval mode).
        x: ``[N, F]`` float rows in raw units (categoricals as codes), valid under the card.
        y: ``[N]`` int64 true labels.
        card: card with ``features`` (kinds, ranges, ``changeable``) and ``positive_class``.
        budgets: costs in feature units (module docstring), default ``DEFAULT_BUDGETS``.
        target_class: class the attacker wants (default: anything but the positive class).
        steps: PGD steps per budget and discrete configuration.
        seed: seed of the random starts of restarts after the first (the first PGD run of
            each budget starts from the configuration itself, so restarts=1 is deterministic).
        batch_size: rows per forward pass.
        discrete_cost: cost of one categorical/binary change.
        max_discrete_changes: most categorical/binary features changed together.
        n_discrete_candidates: discrete configurations kept per sample (besides none).
        restarts: PGD runs per budget for the samples not yet evaded.

    Returns:
        JSON-able dict:

        - ``threat_model``: text; ``cost_definition``; ``discrete_cost``;
          ``changeable_features`` / ``fixed_features``: names;
        - ``n_samples``, ``n_positive`` (label is the positive class), ``n_attacked`` (true
          positives: the attacked set), ``positive_class``;
        - ``curve``: ``[{"budget", "evasion": {value, ci_low, ci_high, n}}]`` — evasion rate
          among the attacked samples with Wilson 95% intervals, budgets ascending;
        - ``cheapest``: one entry per attacked sample: ``index`` (row of ``x``), ``success``,
          ``cost`` (None on failure), ``changes`` (``[{feature, kind, from, to, delta, cost}]``),
          ``score_before`` / ``score_after`` (positive-class probability), ``x_adv`` (the row,
          list of floats; the original row on failure);
        - ``median_cost``: median cost of the successful cheapest changes (None if none);
        - ``feature_table``: per changeable feature, over successful evasions: ``fraction_changed``,
          ``n_changed``, ``mean_change`` / ``mean_abs_change`` / ``mean_cost`` (numeric) or
          ``top_transitions`` (categorical/binary), most often changed first;
        - ``params``: the settings.
    """
    budgets = sorted(DEFAULT_BUDGETS if budgets is None else list(budgets))
    s = _check_inputs(x, y, card, budgets, steps, seed, batch_size, discrete_cost, target_class,
                      restarts)
    check_positive_int("max_discrete_changes", max_discrete_changes, minimum=0)
    check_positive_int("n_discrete_candidates", n_discrete_candidates, minimum=0)
    pos = int(card.positive_index)  # type: ignore[arg-type]
    x = x.detach()
    with eval_mode(model):
        logits = _forward(model, x, batch_size)
        if logits.dim() != 2 or logits.shape[1] != card.num_classes:
            raise ValueError(f"the model returns {list(logits.shape)}; expected logits "
                             f"[N, {card.num_classes}] for the card's classes")
        attacked = ((y == pos) & (logits.argmax(1) == pos)).nonzero().squeeze(1)
        x0 = x[attacked]
        n = x0.shape[0]

        xs_all, cost_all, sample_all = _candidates(model, x0, logits[attacked], s, pos, target_class,
                                                   max_discrete_changes, n_discrete_candidates,
                                                   discrete_cost, batch_size)
        gen = make_generator(seed, x.device)
        best_cost = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
        best_x = x0.clone()
        for b in budgets:
            for restart in range(restarts):
                rows = ((cost_all <= b) & torch.isinf(best_cost[sample_all])).nonzero().squeeze(1)
                for start in range(0, rows.numel(), batch_size):
                    r = rows[start:start + batch_size]
                    xs, smp = xs_all[r], sample_all[r]
                    radius = (b - cost_all[r]).clamp_min(0)
                    x_adv, ok = _pgd(model, xs, radius, s, pos, target_class, steps,
                                     gen if restart > 0 else None)
                    if not bool(ok.any()):
                        continue
                    xs, smp, x_adv = xs[ok], smp[ok], x_adv[ok]
                    x_adv = _reduce_cost(model, x_adv, xs, x0[smp], s, pos, target_class,
                                         discrete_cost)
                    with torch.no_grad():
                        still = _evades(model(x_adv), pos, target_class)
                    cost = _cost(x_adv, x0[smp], s, discrete_cost)
                    cost = torch.where(still, cost, torch.full_like(cost, float("inf")))
                    # The cheapest evading row of each sample replaces its best if cheaper.
                    low = torch.full_like(best_cost, float("inf")).scatter_reduce(
                        0, smp, cost, reduce="amin")
                    take = torch.isfinite(cost) & (cost == low[smp]) & (cost < best_cost[smp])
                    best_x[smp[take]] = x_adv[take]
                    best_cost[smp[take]] = cost[take]
        after = _forward(model, best_x, batch_size) if n else logits[:0]

    success = torch.isfinite(best_cost)
    curve = [{"budget": float(b),
              "evasion": proportion(int((best_cost <= b).sum()), n)} for b in budgets]
    p_before = torch.softmax(logits[attacked].double(), 1)[:, pos]
    p_after = torch.softmax(after.double(), 1)[:, pos] if n else p_before
    cheapest = []
    for i in range(n):
        ok = bool(success[i])
        cheapest.append({
            "index": int(attacked[i]),
            "success": ok,
            "cost": float(best_cost[i]) if ok else None,
            "changes": _changes(best_x[i], x0[i], s, discrete_cost) if ok else [],
            "score_before": float(p_before[i]),
            "score_after": float(p_after[i]),
            "x_adv": [float(v) for v in best_x[i].tolist()],
        })
    costs = best_cost[success]
    return {
        "threat_model": (
            "only features marked changeable move; each stays in [min, max]; integer features "
            "integral, binary 0/1, categorical a valid code (checked at every query); true "
            "positives attacked, success = no longer predicted " +
            (card.class_names[target_class] if target_class is not None
             else f"'{card.class_names[pos]}'")),
        "cost_definition": ("sum over continuous/integer features of |change| / (max - min) + "
                            f"{discrete_cost} per categorical or binary feature changed"),
        "discrete_cost": discrete_cost,
        "changeable_features": [s.names[i] for i in range(len(s.names)) if bool(s.changeable[i])],
        "fixed_features": [s.names[i] for i in range(len(s.names)) if not bool(s.changeable[i])],
        "positive_class": card.class_names[pos],
        "n_samples": int(x.shape[0]),
        "n_positive": int((y == pos).sum()),
        "n_attacked": n,
        "curve": curve,
        "median_cost": float(costs.median()) if costs.numel() else None,
        "cheapest": cheapest,
        "feature_table": _feature_table(best_x[success], x0[success], s),
        "params": {"budgets": [float(b) for b in budgets], "steps": steps, "seed": seed,
                   "target_class": target_class, "max_discrete_changes": max_discrete_changes,
                   "n_discrete_candidates": n_discrete_candidates, "restarts": restarts,
                   "batch_size": batch_size},
    }
