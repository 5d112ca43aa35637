"""Auto-PGD (APGD) and its targeted variant APGD-T.

Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML), Algorithm 1. Written by hand from the paper because foolbox 3
has no APGD. The algorithm, in short:

* start at a random point of the eps-ball, step size ``eta = 2 * eps``;
* each iteration takes a gradient step (sign of the gradient for Linf, unit-L2 gradient for L2),
  projects it, then mixes it with the previous update (momentum ``alpha = 0.75``, none at the
  first step) and projects again;
* at checkpoints ``w_j = ceil(p_j * n_iter)`` with ``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, the step size of a sample is halved and
  the sample restarts from its best point so far when either
  (1) fewer than ``rho`` of the steps since the last checkpoint increased the loss, or
  (2) its step size was not reduced at the last checkpoint and its best loss has not improved
      since then.

APGD-T (same paper, Sec. 5) maximises the targeted DLR loss towards each of the top-k
non-true classes of the clean prediction in turn.

Samples already misclassified are never attacked; a sample stops being attacked as soon as it is
misclassified (the attack works on the shrinking still-robust subset of the batch).

Optional discarding (``discard_after``; ours, after the online statistics-based discarding of
A3, Liu et al. CVPR 2022, with a fixed rule instead of online statistics): after that many
iterations, a sample whose largest margin so far has closed less than ``1 - DISCARD_GAP_LEFT``
of the gap between its starting margin and the decision boundary stops being attacked (it is
judged robust to this run). Measured on 100-iteration random-start runs of four models
(bench/README.md): every sample fooled after iteration 25 had closed at least 65% of its gap by
then (APGD-T: 94%), while 55% (APGD-CE) and 88% (APGD-T) of the samples never fooled had closed
less than half; bench/discard.py measures what the rule loses and saves.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from auditkit.attacks.common import (
    AttackOutput,
    check_discard_after,
    check_inputs,
    check_labels,
    check_norm,
    check_positive_int,
    eval_mode,
    is_adversarial,
    make_generator,
    vote_counts,
    vote_fooled,
)
from auditkit.attacks.losses import dlr_targeted_loss, get_loss, margin_loss

# loss(logits [B, C], y [B], target [B] | None) -> [B], higher is more adversarial.
LossFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

MOMENTUM = 0.75
# With ``discard_after``: a still-robust sample whose best margin is still more than this share
# of its starting margin (both negative) is dropped then (module docstring).
DISCARD_GAP_LEFT = 0.5


def checkpoints(n_iter: int) -> list[int]:
    """Iteration counts ``w_j`` after which APGD checks its step size (paper, Sec. 3.2).

    Returns:
        Sorted distinct ``w_j = ceil(p_j * n_iter)`` in ``[1, n_iter]``.
    """
    p = [0.0, 0.22]
    while p[-1] <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # The small slack keeps e.g. 0.22 * 100 = 22.000000000000004 from rounding up to 23.
    ws = {max(1, math.ceil(pj * n_iter - 1e-9)) for pj in p[1:] if pj <= 1.0}
    return sorted(w for w in ws if w <= n_iter)


def _view(t: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample ``[B]`` tensor to broadcast against ``like [B, ...]``."""
    return t.view(-1, *([1] * (like.dim() - 1)))


class _Projector:
    """Projection onto the intersection of the eps-ball around ``x`` and the box ``[lo, hi]``."""

    def __init__(self, norm: str, eps: float, lo: float, hi: float) -> None:
        self.norm, self.eps, self.lo, self.hi = norm, eps, lo, hi

    def __call__(self, x_new: Tensor, x: Tensor) -> Tensor:
        delta = x_new - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            n = delta.flatten(1).norm(dim=1)
            delta = delta * _view(torch.clamp(self.eps / n.clamp_min(1e-12), max=1.0), delta)
        # Clamping to the box moves every coordinate towards x (x is inside the box), so the
        # result stays inside the ball: the box is applied last.
        return (x + delta).clamp(self.lo, self.hi)

    def direction(self, grad: Tensor) -> Tensor:
        """Steepest-ascent direction of unit norm: sign (Linf) or L2-normalised gradient."""
        if self.norm == "linf":
            return grad.sign()
        n = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        return grad / _view(n, grad)

    def random_start(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """Uniform in the Linf ball, or uniform on the L2 sphere; then clipped to the box."""
        if self.norm == "linf":
            u = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            delta = (2 * u - 1) * self.eps
        else:
            g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            delta = g * _view(self.eps / g.flatten(1).norm(dim=1).clamp_min(1e-12), g)
        return (x + delta).clamp(self.lo, self.hi)


def _loss_and_grad(
    model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, loss_fn: LossFn, eot_iter: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Loss ``[B]``, its gradient w.r.t. the input ``[B, ...]`` and the logits ``[B, C]``,
    each averaged over ``eot_iter`` forward/backward passes (Expectation over Transformation,
    for randomised models), and ``fooled`` bool ``[B]``: the majority vote of those same passes
    (:func:`~auditkit.attacks.common.vote_fooled`; with one pass, ``argmax != y``). Gradients
    are taken w.r.t. the input only, so nothing accumulates in the model's parameters."""
    grad = torch.zeros_like(x)
    loss_sum: Tensor | float = 0.0
    logits_sum: Tensor | float = 0.0
    counts: Tensor | float = 0
    for _ in range(eot_iter):
        xr = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xr)
            loss = loss_fn(logits, y, target)
            (g,) = torch.autograd.grad(loss.sum(), xr, allow_unused=True)
        if g is not None:
            grad += torch.nan_to_num(g)
        loss_sum = loss_sum + loss.detach()
        logits_sum = logits_sum + logits.detach()
        if eot_iter > 1:
            counts = counts + torch.nn.functional.one_hot(logits.detach().argmax(dim=1), logits.shape[1])
    mean_logits = logits_sum / eot_iter
    fooled = vote_fooled(counts, y) if eot_iter > 1 else mean_logits.argmax(dim=1) != y  # type: ignore[arg-type]
    return loss_sum / eot_iter, grad / eot_iter, mean_logits, fooled  # type: ignore[return-value]


def _clean_logits(model: nn.Module, x: Tensor, y: Tensor, eot_iter: int) -> tuple[Tensor, Tensor]:
    """Clean logits ``[N, C]`` (mean over ``eot_iter`` forwards) and which samples are already
    misclassified, bool ``[N]`` (majority vote over those forwards when ``eot_iter > 1``)."""
    with torch.no_grad():
        if eot_iter == 1:
            logits = model(x)
            check_labels(logits, y)
            return logits, logits.argmax(dim=1) != y
        counts, logits = vote_counts(model, x, eot_iter)
    check_labels(logits, y)
    return logits, vote_fooled(counts, y)


def _apgd_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    target: Tensor | None,
    loss_fn: LossFn,
    proj: _Projector,
    n_iter: int,
    rho: float,
    eot_iter: int,
    gen: torch.Generator,
    start: Tensor | None = None,
    discard_after: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One APGD run on a batch of still-robust samples.

    Args:
        x: ``[B, ...]`` clean inputs; y: ``[B]`` labels; target: ``[B]`` targets or None.
        start: ``[B, ...]`` warm-start points (see :func:`_starts`) or None: random starts.
        discard_after: iterations after which samples that made little progress are dropped
            (``DISCARD_GAP_LEFT``, module docstring), or None: every sample runs ``n_iter``.

    Returns:
        ``x_out [B, ...]`` (the fooling point, or the highest-loss point for the others),
        ``fooled`` bool ``[B]`` and ``margin [B]`` (untargeted margin loss at ``x_out``, to
        choose between restarts).
    """
    n = x.shape[0]
    x_out = x.clone()
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    margin_out = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
    cps = set(checkpoints(n_iter))

    # Per-sample state of the active (still robust) samples, all indexed alike; `row` maps
    # them back to the batch. Fooled samples are dropped so later steps cost nothing for them.
    s: dict[str, Tensor] = {"row": torch.arange(n, device=x.device), "x": x, "y": y}
    if target is not None:
        s["t"] = target

    def forward(x_cur: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return _loss_and_grad(model, x_cur, s["y"], s.get("t"), loss_fn, eot_iter)

    def retire(done: Tensor, point: str, margin: str, is_fooled: bool) -> None:
        """Stop attacking the ``done`` samples: write out their ``s[point]`` and ``s[margin]``."""
        if done.any():
            rows = s["row"][done]
            x_out[rows] = s[point][done]
            margin_out[rows] = s[margin][done]
            fooled[rows] = is_fooled
            keep = ~done
            for key in s:
                s[key] = s[key][keep]

    def drop_fooled(newly: Tensor) -> None:
        retire(newly, "cur", "margin", True)

    s["cur"] = proj.random_start(x, gen) if start is None else start
    loss, s["grad"], logits, newly = forward(s["cur"])
    s["margin"] = margin_loss(logits, s["y"])
    # Margins at the start and the largest since (for ``discard_after``).
    s["margin_start"], s["margin_top"] = s["margin"], s["margin"]
    s["prev"] = s["cur"]
    s["x_max"], s["f_max"], s["grad_max"], s["margin_max"] = s["cur"], loss, s["grad"], s["margin"]
    s["f_prev"] = loss
    s["eta"] = torch.full((n,), 2.0 * proj.eps, dtype=x.dtype, device=x.device)
    s["n_increase"] = torch.zeros(n, dtype=torch.long, device=x.device)
    s["f_max_last"] = loss
    # Condition 2 needs the step size unchanged since the previous checkpoint; at the first
    # checkpoint it has never been reduced (eta(w_0) == eta(w_1)), hence False here.
    s["reduced_last"] = torch.zeros(n, dtype=torch.bool, device=x.device)
    drop_fooled(newly)
    last_cp = 0

    for k in range(n_iter):
        if s["row"].numel() == 0:
            break
        x_cur, x_prev, x0 = s["cur"], s["prev"], s["x"]
        alpha = 1.0 if k == 0 else MOMENTUM
        z = proj(x_cur + _view(s["eta"], x_cur) * proj.direction(s["grad"]), x0)
        x_new = proj(x_cur + alpha * (z - x_cur) + (1 - alpha) * (x_cur - x_prev), x0)
        s["prev"], s["cur"] = x_cur, x_new

        loss, s["grad"], logits, newly = forward(x_new)
        s["margin"] = margin_loss(logits, s["y"])
        s["margin_top"] = torch.maximum(s["margin_top"], s["margin"])
        s["n_increase"] = s["n_increase"] + (loss > s["f_prev"]).long()
        s["f_prev"] = loss
        better = loss > s["f_max"]
        if better.any():
            b = _view(better, x_new)
            s["x_max"] = torch.where(b, x_new, s["x_max"])
            s["grad_max"] = torch.where(b, s["grad"], s["grad_max"])
            s["f_max"] = torch.where(better, loss, s["f_max"])
            s["margin_max"] = torch.where(better, s["margin"], s["margin_max"])
        drop_fooled(newly)

        if k + 1 in cps:
            cond1 = s["n_increase"].to(x.dtype) < rho * (k + 1 - last_cp)
            cond2 = ~s["reduced_last"] & (s["f_max"] <= s["f_max_last"])
            halve = cond1 | cond2
            if halve.any():
                h = _view(halve, s["cur"])
                s["eta"] = torch.where(halve, s["eta"] / 2, s["eta"])
                # Restart from the best point, with no momentum carried over.
                s["cur"] = torch.where(h, s["x_max"], s["cur"])
                s["prev"] = torch.where(h, s["x_max"], s["prev"])
                s["grad"] = torch.where(h, s["grad_max"], s["grad"])
                s["f_prev"] = torch.where(halve, s["f_max"], s["f_prev"])
            s["reduced_last"] = halve
            s["f_max_last"] = s["f_max"]
            s["n_increase"] = torch.zeros_like(s["n_increase"])
            last_cp = k + 1
        if k + 1 == discard_after:
            # Both margins are negative here (fooled samples were dropped): the share of the gap
            # still left is margin_top / margin_start, above DISCARD_GAP_LEFT when
            # margin_top < DISCARD_GAP_LEFT * margin_start.
            # Discarded samples keep their best point, not fooled.
            retire(s["margin_top"] < DISCARD_GAP_LEFT * s["margin_start"], "x_max", "margin_max", False)

    # Samples never fooled return their best point.
    x_out[s["row"]] = s["x_max"]
    margin_out[s["row"]] = s["margin_max"]
    return x_out, fooled, margin_out


def _starts(proj: _Projector, x: Tensor, x_init: Tensor | None, gen: torch.Generator) -> Tensor | None:
    """Warm-start points ``[N, ...]``: ``x_init`` projected into the eps-ball and the box, and
    a random start (as without warm start) for the rows where ``x_init`` equals ``x`` (nothing
    to start from). None when ``x_init`` is None.

    A warm start is a point some earlier attack found adversarial at a larger radius (the
    ensemble's smallest adversarial point so far, e.g. FMN's): projected onto a smaller ball it
    usually lies close to the decision boundary in the direction that crossed it, where a
    random start has to find that direction first (the idea of warm starts across an eps grid;
    cf. A3's adaptive initial directions, Liu et al. 2022)."""
    if x_init is None:
        return None
    if x_init.shape != x.shape:
        raise ValueError(f"x_init must have the shape of x {list(x.shape)}, got {list(x_init.shape)}")
    random = proj.random_start(x, gen)
    has = (x_init != x).flatten(1).any(dim=1)
    return torch.where(_view(has, x), proj(x_init.detach().to(x.dtype), x), random)


def _check_discard(discard_after: int | None, n_iter: int, eot_iter: int) -> int | None:
    if check_discard_after(discard_after, "n_iter", n_iter) is not None and eot_iter > 1:
        # Margins of a randomised model are noisy single forwards: no rule on them.
        raise ValueError("discard_after needs a deterministic model (eot_iter 1)")
    return discard_after


def _check_common(norm: str, n_iter: int, n_restarts: int, rho: float, seed: int, eot_iter: int) -> str:
    norm = check_norm(norm)
    check_positive_int("n_iter", n_iter)
    check_positive_int("n_restarts", n_restarts)
    check_positive_int("eot_iter", eot_iter)
    check_positive_int("seed", seed, minimum=0)
    if not isinstance(rho, (int, float)) or not 0.0 < float(rho) <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho!r}")
    return norm


class APGD:
    """Untargeted APGD with cross-entropy (APGD-CE) or DLR (APGD-DLR) loss.

    Configure in ``__init__``, attack with ``run``. Step-size free: only the number of
    iterations is a budget; one iteration costs ``eot_iter`` forward and backward passes.

    Args:
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` or ``"dlr"`` (2-class models: DLR falls back to the margin loss, see
            ``auditkit.attacks.losses``).
        n_iter: iterations per restart.
        n_restarts: random restarts; each restart attacks only the samples still robust.
        rho: fraction of loss-increasing steps below which the step size is halved (0.75).
        seed: seed of the attack's private random generator; same seed, same result.
        eot_iter: forward/backward passes averaged per gradient (EOT, for randomised models;
            AutoAttack's "rand" version uses 20). With ``eot_iter > 1`` every success test,
            in-attack and final, is a majority vote over ``eot_iter`` forwards
            (:class:`~auditkit.attacks.common.EOT`), never a single lucky forward.
        discard_after: iterations after which a sample that has closed less than half of its
            starting margin stops being attacked (module docstring; after A3), or None
            (default, as in AutoAttack): every robust sample runs ``n_iter`` iterations.
    """

    def __init__(
        self,
        norm: str = "linf",
        loss: str = "ce",
        n_iter: int = 100,
        n_restarts: int = 1,
        rho: float = 0.75,
        seed: int = 0,
        eot_iter: int = 1,
        discard_after: int | None = None,
    ) -> None:
        self.norm = _check_common(norm, n_iter, n_restarts, rho, seed, eot_iter)
        self.discard_after = _check_discard(discard_after, n_iter, eot_iter)
        self._loss = get_loss(loss)
        self.loss = loss.lower()
        self.n_iter, self.n_restarts, self.rho = n_iter, n_restarts, float(rho)
        self.seed, self.eot_iter = seed, eot_iter

    def _loss_fn(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return self._loss(logits, y)

    def run(
        self, model: nn.Module, x: Tensor, y: Tensor, eps: float, bounds: tuple[float, float] = (0.0, 1.0),
        x_init: Tensor | None = None,
    ) -> AttackOutput:
        """Attack ``model`` on ``x`` with labels ``y`` within the ``eps``-ball and ``bounds``.

        Args:
            model: classifier mapping ``[N, ...]`` inputs to logits ``[N, C]``; it runs in eval
                mode during the attack and gets its modes back afterwards.
            x: ``[N, ...]`` floating inputs inside ``bounds``.
            y: ``[N]`` integer true labels.
            eps: radius of the threat model, in input units (``>= 0``).
            bounds: ``(low, high)`` valid input range.
            x_init: ``[N, ...]`` warm-start points for the first restart (projected into the
                ball; rows equal to ``x`` start at random), or None: random starts.

        Returns:
            AttackOutput with ``x_adv [N, ...]``, ``success`` bool ``[N]``, ``queries=None``.
        """
        eps, lo, hi = check_inputs(x, y, eps, bounds)
        x = x.detach()
        proj = _Projector(self.norm, eps, lo, hi)
        gen = make_generator(self.seed, x.device)
        with eval_mode(model):
            _, clean_fooled = _clean_logits(model, x, y, self.eot_iter)
            x_adv, success, best = _init_outputs(x, clean_fooled)
            starts = _starts(proj, x, x_init, gen)
            for r in range(self.n_restarts):
                idx = (~success).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                xo, fo, mo = _apgd_run(
                    model, x[idx], y[idx], None, self._loss_fn, proj, self.n_iter, self.rho, self.eot_iter, gen,
                    starts[idx] if starts is not None and r == 0 else None, self.discard_after,
                )
                _merge(x_adv, success, best, idx, xo, fo, mo)
            success = is_adversarial(model, x_adv, y, votes=self.eot_iter)
        return AttackOutput(x_adv=x_adv, success=success, queries=None)


class APGDTargeted:
    """APGD-T: APGD on the targeted DLR loss, towards each of the top-k non-true classes.

    For each target rank ``t = 1..k`` (``k = min(n_target_classes, C - 1)``; the classes are
    ranked by the clean logits, the true class excluded) and each restart, the still-robust
    samples are attacked towards their ``t``-th class. Success still means misclassified
    (``argmax != y``), whichever class is reached. Fewer than 4 classes use the targeted-DLR
    fallbacks documented in ``auditkit.attacks.losses``.

    Args:
        norm, n_iter, n_restarts, rho, seed, eot_iter: as in ``APGD``.
        n_target_classes: how many target classes to try (9 in AutoAttack).
        n_iter_tail: iterations per run for the targets ranked after the first
            ``n_head_targets`` (None: ``n_iter`` for every target, as in AutoAttack). Most
            targeted successes come from the top-ranked classes, where depth pays; the lower
            ranks still break a few samples each, where breadth pays more than depth (measured
            in bench/attacks.py).
        n_head_targets: how many top-ranked targets run ``n_iter`` iterations.
        discard_after: as in ``APGD``, per target run.
    """

    def __init__(
        self,
        norm: str = "linf",
        n_iter: int = 100,
        n_target_classes: int = 9,
        n_restarts: int = 1,
        rho: float = 0.75,
        seed: int = 0,
        eot_iter: int = 1,
        n_iter_tail: int | None = None,
        n_head_targets: int = 3,
        discard_after: int | None = None,
    ) -> None:
        self.norm = _check_common(norm, n_iter, n_restarts, rho, seed, eot_iter)
        check_positive_int("n_target_classes", n_target_classes)
        check_positive_int("n_head_targets", n_head_targets)
        if n_iter_tail is not None:
            check_positive_int("n_iter_tail", n_iter_tail)
        self.n_iter, self.n_target_classes, self.n_restarts = n_iter, n_target_classes, n_restarts
        self.n_iter_tail = n_iter if n_iter_tail is None else n_iter_tail
        self.discard_after = _check_discard(discard_after, min(n_iter, self.n_iter_tail), eot_iter)
        self.n_head_targets = n_head_targets
        self.rho, self.seed, self.eot_iter = float(rho), seed, eot_iter

    @staticmethod
    def _loss_fn(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is None:
            raise RuntimeError("APGD-T runs need a target class per sample")
        return dlr_targeted_loss(logits, y, target)

    def run(
        self, model: nn.Module, x: Tensor, y: Tensor, eps: float, bounds: tuple[float, float] = (0.0, 1.0),
        x_init: Tensor | None = None,
    ) -> AttackOutput:
        """Attack as ``APGD.run`` does (same arguments and output), with targeted runs.

        With ``x_init``, every target's first run starts from the warm-start point and the
        targets are ranked by the logits there (for a point found adversarial at a larger
        radius, the class it reached comes first), instead of the clean logits."""
        eps, lo, hi = check_inputs(x, y, eps, bounds)
        x = x.detach()
        proj = _Projector(self.norm, eps, lo, hi)
        gen = make_generator(self.seed, x.device)
        with eval_mode(model):
            clean_logits, clean_fooled = _clean_logits(model, x, y, self.eot_iter)
            n_classes = clean_logits.shape[1]
            if n_classes < 2:
                raise ValueError("APGD-T needs a model with at least 2 classes")
            starts = _starts(proj, x, x_init, gen)
            rank_logits = clean_logits
            if starts is not None and self.eot_iter == 1:
                with torch.no_grad():
                    rank_logits = model(starts)
            # Non-true classes ranked by logit (clean, or at the warm start), highest first: [N, C - 1].
            others = rank_logits.masked_fill(
                torch.nn.functional.one_hot(y, n_classes).bool(), float("-inf")
            ).argsort(dim=1, descending=True)[:, : n_classes - 1]
            x_adv, success, best = _init_outputs(x, clean_fooled)
            for t in range(min(self.n_target_classes, n_classes - 1)):
                for r in range(self.n_restarts):
                    idx = (~success).nonzero().squeeze(1)
                    if idx.numel() == 0:
                        break
                    n_iter = self.n_iter if t < self.n_head_targets else self.n_iter_tail
                    xo, fo, mo = _apgd_run(
                        model, x[idx], y[idx], others[idx, t], self._loss_fn, proj,
                        n_iter, self.rho, self.eot_iter, gen,
                        starts[idx] if starts is not None and r == 0 else None, self.discard_after,
                    )
                    _merge(x_adv, success, best, idx, xo, fo, mo)
            success = is_adversarial(model, x_adv, y, votes=self.eot_iter)
        return AttackOutput(x_adv=x_adv, success=success, queries=None)


def _init_outputs(x: Tensor, clean_fooled: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``x_adv = x``, success = clean misclassification, best margin = -inf (nothing tried)."""
    success = clean_fooled.clone()
    best = torch.full((x.shape[0],), float("-inf"), dtype=x.dtype, device=x.device)
    return x.clone(), success, best


def _merge(x_adv: Tensor, success: Tensor, best: Tensor, idx: Tensor, xo: Tensor, fo: Tensor, mo: Tensor) -> None:
    """Fold one run's results over rows ``idx`` into the outputs (in place): fooled samples
    take their fooling point; the others keep the point with the largest margin so far."""
    take = fo | (mo > best[idx])
    rows = idx[take]
    x_adv[rows] = xo[take]
    best[rows] = mo[take]
    success[idx[fo]] = True
