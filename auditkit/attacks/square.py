"""Square Attack: a score-based black-box attack by random search (Linf and L2).

Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search" (ECCV), Algorithms 1-3. Written by hand from the paper
because foolbox 3 has no Square Attack. Only forward passes are used (no gradients).

Each iteration proposes a change of the current best perturbation inside a random square window
whose area is a fraction ``p`` of the image (``p`` follows the paper's piecewise-constant
schedule, halving at 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000 queries, rescaled
to ``n_queries``), queries the model once and keeps the proposal if it lowers the margin
``z_y - max_{i != y} z_i`` (equivalently raises ``margin_loss``). A sample stops as soon as it is
misclassified.

* Linf: initialised with vertical stripes of ``+-eps`` (one random sign per column and channel);
  a proposal sets a window of side ``s`` to ``x +- eps`` with one random sign per channel.
* L2: initialised with a grid of nested-rectangle ("pseudo-Gaussian") bumps of random signs,
  rescaled to norm ``eps``; a proposal moves the perturbation's mass out of a second window W2 and
  into window W1, where it adds the two-halves pattern ``eta`` of a random sign, keeping the
  total norm at ``eps`` (per channel, as in the paper's Algorithm 3).

Inputs that are not images (anything but ``[N, C, H, W]`` with ``H, W >= 2``) are treated as
flat vectors of ``D`` features, since squares have no meaning there: a "window" is a random set
of ``max(1, round(p * D))`` features, Linf proposals draw one sign per feature, the Linf start
is a random vertex ``x +- eps`` and the L2 pattern ``eta`` is a random sign vector. This
generalisation is ours, not the paper's.

Optional discarding (``discard_after``; ours, as APGD's in ``auditkit.attacks.apgd``, after A3):
after that many queries, a sample whose margin has closed less than ``1 - DISCARD_GAP_LEFT`` of
the gap between its starting margin and the boundary stops being attacked. Measured on
1000-query runs of four models (bench/README.md): every sample fooled after query 250 had
closed more than half of its gap by then, while 41% of those never fooled had closed under 30%;
bench/discard.py measures what the rule loses and saves.
"""

from __future__ import annotations

import math

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
    project,
)
from auditkit.attacks.losses import margin_loss

# (fraction of the 10,000-query budget after which p is halved again)
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# With ``discard_after``: a still-robust sample whose margin is still more than this share of its
# starting margin (both negative) is dropped then (module docstring). Random search closes the
# gap more slowly and more unevenly than APGD, hence a laxer share than APGD's 0.5.
DISCARD_GAP_LEFT = 0.7


def p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """Fraction of the input changed at iteration ``it`` (the paper's schedule, rescaled from
    10,000 queries to ``n_queries``)."""
    scaled = int(it / n_queries * 10000)
    n_halvings = sum(scaled > t for t in _P_HALVINGS)
    return p_init / 2**n_halvings


def _rect_pattern(r1: int, r2: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Nested-rectangle bump ``[r1, r2]``: cell (i, j) at Chebyshev distance d from the centre
    holds ``sum_{k >= d} 1 / (k + 1)^2`` (the paper's pseudo-Gaussian ``eta^(r1, r2)``)."""
    if r1 == 0 or r2 == 0:
        return torch.zeros(r1, r2, device=device, dtype=dtype)
    ci, cj = r1 // 2, r2 // 2
    i = torch.arange(r1, device=device).view(-1, 1)
    j = torch.arange(r2, device=device).view(1, -1)
    d = torch.maximum((i - ci).abs(), (j - cj).abs())
    n_rings = max(ci, cj) + 1
    weights = 1.0 / (torch.arange(n_rings, device=device, dtype=dtype) + 1) ** 2
    suffix = weights.flip(0).cumsum(0).flip(0)  # suffix[d] = sum_{k >= d} weights[k]
    return suffix[d]


def _eta(s: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The L2 window pattern ``[s, s]``: a bump on the top half, a negative bump on the bottom
    half, unit L2 norm."""
    top = _rect_pattern(s // 2, s, device, dtype)
    bottom = _rect_pattern(s - s // 2, s, device, dtype)
    eta = torch.cat([top, -bottom], dim=0)
    return eta / eta.norm()


class _Layout:
    """How an input ``[B, ...]`` is viewed as ``[B, c, F]``: ``c`` channels of ``F`` positions,
    and how random windows over the positions are drawn (squares for images, random feature
    subsets otherwise)."""

    def __init__(self, shape: torch.Size) -> None:
        self.image = len(shape) == 4 and shape[2] >= 2 and shape[3] >= 2
        if self.image:
            self.c, self.h, self.w = shape[1], shape[2], shape[3]
            self.f = self.h * self.w
        else:
            self.c, self.f = 1, math.prod(shape[1:])

    def side(self, p: float, l2: bool = False) -> int:
        """Window size for fraction ``p``: the square's side (images) or feature count.

        L2 windows are larger: as in the paper's code, squares have an odd side of at least 3
        (the pattern ``eta`` needs rows for both of its halves); feature subsets hold at least
        2 features (with 1, a proposal could only keep or drop that feature's value).
        """
        if self.image:
            s = round(math.sqrt(p * self.f))
            if l2:
                s = max(s, 3)
                s += 1 - s % 2
            return max(1, min(s, self.h, self.w))
        return max(1, min(max(2 if l2 else 1, round(p * self.f)), self.f))

    def _square_masks(self, b: int, s: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        """Boolean mask ``[b, 1, F]`` of a random s-by-s square per sample, and its top-left
        corners ``[b, 2]``."""
        vh = torch.randint(0, self.h - s + 1, (b,), generator=gen, device=device)
        vw = torch.randint(0, self.w - s + 1, (b,), generator=gen, device=device)
        rows = torch.arange(self.h, device=device).view(1, -1)
        cols = torch.arange(self.w, device=device).view(1, -1)
        in_h = (rows >= vh.view(-1, 1)) & (rows < vh.view(-1, 1) + s)
        in_w = (cols >= vw.view(-1, 1)) & (cols < vw.view(-1, 1) + s)
        mask = (in_h.unsqueeze(2) & in_w.unsqueeze(1)).reshape(b, 1, self.f)
        return mask, torch.stack([vh, vw], dim=1)

    def window(self, b: int, s: int, gen: torch.Generator, device: torch.device) -> Tensor:
        """Boolean mask ``[b, 1, F]`` of one random window per sample."""
        if self.image:
            return self._square_masks(b, s, gen, device)[0]
        return self._subset_masks(b, s, gen, device)[0]

    def _subset_masks(self, b: int, k: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        """Two random feature subsets per sample, ``[b, 1, F]`` each, disjoint when
        ``2k <= F`` (the second is the next ``k`` of the same random permutation)."""
        order = torch.rand(b, self.f, generator=gen, device=device).argsort(dim=1)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(self.f, device=device).expand(b, -1))
        k2 = min(k, self.f - k) if self.f > k else 0
        first = rank < k
        second = (rank >= k) & (rank < k + k2) if k2 > 0 else first
        return first.unsqueeze(1), second.unsqueeze(1)

    def l2_windows(
        self, b: int, s: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Windows W1, W2 (``[b, 1, F]`` bool) and the unit-norm pattern placed on W1
        (``[b, 1, F]``) for one L2 proposal per sample."""
        if not self.image:
            w1, w2 = self._subset_masks(b, s, gen, device)
            signs = _random_signs((b, 1, self.f), gen, device, dtype)
            pattern = signs * w1 / math.sqrt(s)
            return w1, w2, pattern
        w1, corner = self._square_masks(b, s, gen, device)
        w2 = self._square_masks(b, s, gen, device)[0]
        eta = _eta(s, device, dtype)
        # One pattern per sample, randomly turned by 90 degrees: [b, s, s].
        turn = torch.rand(b, generator=gen, device=device) < 0.5
        pats = torch.where(turn.view(-1, 1, 1), eta.t().expand(b, s, s), eta.expand(b, s, s))
        # Place each sample's pattern at its corner by indexing with local coordinates.
        li = (torch.arange(self.h, device=device).view(1, -1) - corner[:, :1]).clamp(0, s - 1)
        lj = (torch.arange(self.w, device=device).view(1, -1) - corner[:, 1:]).clamp(0, s - 1)
        bi = torch.arange(b, device=device).view(-1, 1, 1)
        placed = pats[bi, li.unsqueeze(2), lj.unsqueeze(1)].reshape(b, 1, self.f)
        return w1, w2, placed * w1

    def linf_init(self, b: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Signs ``[b, c, F]`` of the Linf start: vertical stripes (images) or random signs."""
        if self.image:
            stripes = _random_signs((b, self.c, 1, self.w), gen, device, dtype)
            return stripes.expand(b, self.c, self.h, self.w).reshape(b, self.c, self.f)
        return _random_signs((b, 1, self.f), gen, device, dtype)

    def l2_init(self, b: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Direction ``[b, c, F]`` (not normalised) of the L2 start: a grid of bumps of side
        ``max(1, H // 5)`` with one random sign per bump and channel (images), or random signs."""
        if not self.image:
            return _random_signs((b, 1, self.f), gen, device, dtype)
        s = max(1, min(self.h, self.w) // 5)
        nh, nw = self.h // s, self.w // s
        off_h, off_w = (self.h - nh * s) // 2, (self.w - nw * s) // 2
        bump = _rect_pattern(s, s, device, dtype)
        i = torch.arange(self.h, device=device) - off_h
        j = torch.arange(self.w, device=device) - off_w
        inside = ((i >= 0) & (i < nh * s)).view(-1, 1) & ((j >= 0) & (j < nw * s)).view(1, -1)
        tile_i, tile_j = i.clamp(0, nh * s - 1) // s, j.clamp(0, nw * s - 1) // s
        pattern = bump[(i % s).view(-1, 1), (j % s).view(1, -1)] * inside  # [H, W]
        signs = _random_signs((b, self.c, nh, nw), gen, device, dtype)
        signs = signs[:, :, tile_i.view(-1, 1), tile_j.view(1, -1)]  # [b, c, H, W]
        return (signs * pattern).reshape(b, self.c, self.f)


def _random_signs(shape: tuple[int, ...], gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Uniform random +-1 tensor of ``shape``."""
    return torch.randint(0, 2, shape, generator=gen, device=device).to(dtype) * 2 - 1


class SquareAttack:
    """Square Attack (score-based, untargeted), Linf or L2; see the module docstring.

    Configure in ``__init__``, attack with ``run``.

    Args:
        norm: ``"linf"`` or ``"l2"``.
        n_queries: forward passes per sample and restart (the initial point included).
        p_init: initial fraction of the input changed per proposal (0.8 in AutoAttack;
            the paper uses 0.05 for Linf and 0.1 for L2 on ImageNet-size inputs).
        n_restarts: restarts from a fresh random start, each on the still-robust samples.
        seed: seed of the attack's private random generator; same seed, same result.
        discard_after: queries after which a sample that has closed less than 30% of its
            starting margin stops being attacked (module docstring), or None (default, as in
            the paper): every robust sample gets ``n_queries``.
    """

    def __init__(
        self, norm: str = "linf", n_queries: int = 1000, p_init: float = 0.8, n_restarts: int = 1, seed: int = 0,
        discard_after: int | None = None,
    ) -> None:
        self.norm = check_norm(norm)
        check_positive_int("n_queries", n_queries)
        check_positive_int("n_restarts", n_restarts)
        check_positive_int("seed", seed, minimum=0)
        if not isinstance(p_init, (int, float)) or not 0.0 < float(p_init) <= 1.0:
            raise ValueError(f"p_init must be in (0, 1], got {p_init!r}")
        self.n_queries, self.p_init, self.n_restarts, self.seed = n_queries, float(p_init), n_restarts, seed
        self.discard_after = check_discard_after(discard_after, "n_queries", n_queries)

    def run(
        self, model: nn.Module, x: Tensor, y: Tensor, eps: float, bounds: tuple[float, float] = (0.0, 1.0),
        x_init: Tensor | None = None,
    ) -> AttackOutput:
        """Attack ``model`` on ``x`` with labels ``y`` within the ``eps``-ball and ``bounds``.

        Args:
            model: classifier mapping ``[N, ...]`` inputs to logits ``[N, C]``; only its
                outputs are used. It runs in eval mode and gets its modes back afterwards.
            x: ``[N, ...]`` floating inputs inside ``bounds``.
            y: ``[N]`` integer true labels.
            eps: radius of the threat model, in input units (``>= 0``).
            bounds: ``(low, high)`` valid input range.
            x_init: Linf only: ``[N, ...]`` warm-start points for the first restart (their
                perturbation clamped to ``+-eps``; rows equal to ``x`` start from stripes), or
                None. Ignored for L2, whose proposals assume the paper's start.

        Returns:
            AttackOutput with ``x_adv [N, ...]`` (fooling point, or the lowest-margin point
            found), ``success`` bool ``[N]`` and ``queries`` int64 ``[N]``: forward passes spent
            on each sample, the clean check included (1 for samples already misclassified).
        """
        eps, lo, hi = check_inputs(x, y, eps, bounds)
        x = x.detach()
        n = x.shape[0]
        gen = make_generator(self.seed, x.device)
        layout = _Layout(x.shape)
        if x_init is not None and x_init.shape != x.shape:
            raise ValueError(f"x_init must have the shape of x {list(x.shape)}, got {list(x_init.shape)}")
        warm = x_init is not None and self.norm == "linf"
        with torch.no_grad(), eval_mode(model):
            clean_logits = model(x)
            check_labels(clean_logits, y)
            queries = torch.ones(n, dtype=torch.long, device=x.device)
            success = clean_logits.argmax(dim=1) != y
            x_adv = x.clone()
            best = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
            for r in range(self.n_restarts):
                idx = (~success).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                init = x_init[idx].detach().to(x.dtype) if warm and r == 0 else None  # type: ignore[index]
                xo, fo, mo, q = self._run_once(model, x[idx], y[idx], eps, lo, hi, layout, gen, init)
                take = fo | (mo > best[idx])
                x_adv[idx[take]] = xo[take]
                best[idx[take]] = mo[take]
                success[idx[fo]] = True
                queries[idx] += q
            success = is_adversarial(model, x_adv, y)
        return AttackOutput(x_adv=x_adv, success=success, queries=queries)

    def _run_once(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: float,
        lo: float,
        hi: float,
        layout: _Layout,
        gen: torch.Generator,
        x_init: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One restart on still-robust samples ``x [B, ...]`` (Linf: from ``x_init`` where it
        differs from ``x``, see :meth:`run`).

        Returns ``x_out [B, ...]`` (fooling point or lowest-margin point), ``fooled [B]``,
        ``margin [B]`` (``margin_loss`` at ``x_out``) and ``queries [B]`` spent.
        """
        b, shape, dev, dt = x.shape[0], x.shape, x.device, x.dtype
        c, f = layout.c, layout.f
        x_out = x.clone()
        fooled = torch.zeros(b, dtype=torch.bool, device=dev)
        margin_out = torch.full((b,), float("-inf"), dtype=dt, device=dev)
        queries = torch.zeros(b, dtype=torch.long, device=dev)

        def to_input(v: Tensor) -> Tensor:
            return v.reshape(v.shape[0], *shape[1:])

        # Canonical view [B, c, F]; the state of still-robust samples, `row` mapping to the batch.
        xv = x.reshape(b, c, f)
        if self.norm == "linf":
            start = xv + eps * layout.linf_init(b, gen, dev, dt)
            if x_init is not None:
                iv = x_init.reshape(b, c, f)
                has = (iv != xv).flatten(1).any(dim=1).view(-1, 1, 1)
                start = torch.where(has, xv + (iv - xv).clamp(-eps, eps), start)
        else:
            direction = layout.l2_init(b, gen, dev, dt)
            start = xv + project(direction * (eps / direction.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1), "l2", eps)
        s: dict[str, Tensor] = {"row": torch.arange(b, device=dev), "x": xv, "y": y, "best": start.clamp(lo, hi)}

        def query(cand: Tensor) -> tuple[Tensor, Tensor]:
            logits = model(to_input(cand))
            queries[s["row"]] += 1
            return margin_loss(logits, s["y"]), logits.argmax(dim=1) != s["y"]

        def retire(done: Tensor, is_fooled: bool) -> None:
            """Stop attacking the ``done`` samples: write out their best point and margin."""
            if done.any():
                rows = s["row"][done]
                x_out[rows] = to_input(s["best"][done])
                margin_out[rows] = s["margin"][done]
                fooled[rows] = is_fooled
                for key in s:
                    s[key] = s[key][~done]

        s["margin"], is_adv = query(s["best"])
        s["margin_start"] = s["margin"]
        for it in range(self.n_queries):
            retire(is_adv, True)
            if it == self.discard_after:
                # After `it` proposals (and the start): drop the samples with more than
                # DISCARD_GAP_LEFT of their (negative) starting margin left; they keep their best.
                retire(s["margin"] < DISCARD_GAP_LEFT * s["margin_start"], False)
            # The start used one query; stop when the budget or the robust samples run out.
            if it == self.n_queries - 1 or s["row"].numel() == 0:
                break
            cand = self._propose(s["x"], s["best"], eps, layout, p_schedule(self.p_init, it, self.n_queries), gen)
            cand = cand.clamp(lo, hi)
            margin, adv = query(cand)
            accept = (margin > s["margin"]) | adv
            s["best"] = torch.where(accept.view(-1, 1, 1), cand, s["best"])
            s["margin"] = torch.where(accept, margin, s["margin"])
            is_adv = adv

        x_out[s["row"]] = to_input(s["best"])
        margin_out[s["row"]] = s["margin"]
        return x_out, fooled, margin_out, queries

    def _propose(self, xv: Tensor, best: Tensor, eps: float, layout: _Layout, p: float, gen: torch.Generator) -> Tensor:
        """One candidate ``[B, c, F]`` per sample (before clipping to the bounds)."""
        b, dev, dt = xv.shape[0], xv.device, xv.dtype
        if self.norm == "linf":
            size = layout.side(p)
            mask = layout.window(b, size, gen, dev)
            sign_shape = (b, layout.c, 1) if layout.image else (b, 1, layout.f)
            signs = _random_signs(sign_shape, gen, dev, dt)
            cand = torch.where(mask, xv + eps * signs, best)
            # A proposal equal to the current point wastes a query: flip its signs instead
            # (with one sign per window, the flip is the only other choice).
            same = ((cand - best).abs() * mask).flatten(1).amax(dim=1) == 0
            if same.any():
                cand = torch.where(mask & same.view(-1, 1, 1), xv - eps * signs, cand)
            return cand
        return self._propose_l2(xv, best, eps, layout, layout.side(p, l2=True), gen)

    @staticmethod
    def _propose_l2(xv: Tensor, best: Tensor, eps: float, layout: _Layout, size: int, gen: torch.Generator) -> Tensor:
        """The paper's L2 proposal (Algorithm 3), per channel: the mass of the perturbation on
        W1 and W2, plus the unused budget, is put back on W1 as its old direction plus a
        random-sign pattern; W2 is emptied. The total norm becomes ``eps``."""
        b, c, dev, dt = xv.shape[0], layout.c, xv.device, xv.dtype
        nu = best - xv  # [B, c, F]
        w1, w2, pattern = layout.l2_windows(b, size, gen, dev, dt)
        w12 = w1 | w2
        unused_sq = (eps**2 - nu.pow(2).sum(dim=(1, 2))).clamp_min(0).view(-1, 1, 1)
        norm_w1 = (nu * w1).pow(2).sum(dim=2, keepdim=True).sqrt()  # [B, c, 1]
        norm_w12_sq = (nu * w12).pow(2).sum(dim=2, keepdim=True)
        rho = _random_signs((b, c, 1), gen, dev, dt)
        temp = rho * pattern + (nu * w1) / norm_w1.clamp_min(1e-12)
        temp = temp / temp.pow(2).sum(dim=2, keepdim=True).sqrt().clamp_min(1e-12)
        avail = (norm_w12_sq + unused_sq / c).sqrt()
        new_nu = torch.where(w12, torch.zeros_like(nu), nu) + temp * avail
        # The construction keeps ||nu|| = eps up to rounding; project to make it exact.
        return xv + project(new_nu, "l2", eps)
