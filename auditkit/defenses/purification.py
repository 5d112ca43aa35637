"""Input purification defenses, evaluated both naively and adaptively (Athalye et al. 2018).

Purifiers (each an ``nn.Module`` mapping images ``[N, C, H, W]`` to purified images of the same
shape, inside the same bounds):

* :class:`BitDepthReduction` and :class:`MedianFilter`: feature squeezing (Xu, Evans & Qi,
  "Feature squeezing: detecting adversarial examples in deep neural networks", NDSS 2018):
  quantise each pixel to ``2**bits`` levels; replace each pixel by the median of its
  ``size x size`` neighbourhood (scipy.ndimage.median_filter's window and ``reflect`` borders,
  computed in torch so that it runs on the model's device).
* :class:`GANProjection`: Defense-GAN (Samangouei, Kabkab & Chellappa, ICLR 2018): project the
  input onto the range of a generator by gradient descent on the latent code,
  ``z* = argmin_z ||G(z) - x||^2``, from ``n_restarts`` random starts, keeping the best. The
  starts are random at every call (drawn from the purifier's own seeded generator), so the
  defended model is randomised.

:class:`PurifiedModel` chains a purifier and a classifier, ``forward(x) = classifier(purify(x))``.
Its backward pass uses BPDA (Backward Pass Differentiable Approximation, Athalye, Carlini &
Wagner, "Obfuscated gradients give a false sense of security", ICML 2018): the purifier is
treated as the identity in the backward pass (a straight-through autograd function), since
quantisation has zero gradient almost everywhere and the Defense-GAN projection is an inner
optimisation loop.

:func:`evaluate_defense` reports, side by side and on the same samples:

* **non-adaptive** robust accuracy: APGD-CE crafted against the *bare* classifier at each eps,
  then fed to the pipeline (what a defense paper that "does not attack the defense" reports);
* **adaptive** robust accuracy: the *same* APGD implementation and settings attacking the whole
  pipeline through BPDA, with EOT (``eot_iter``, gradients averaged over the purifier's random
  draws) for randomised purifiers (``adaptive_bpda_only``); the reported ``adaptive`` figure is
  the per-sample worst case of that attack and the non-adaptive points, since an adversary who
  knows the defense can try both (an ensemble, as in AutoAttack); it is therefore never above
  the non-adaptive figure, and ``adaptive_bpda_only`` shows what BPDA achieves on its own. Identity-BPDA is a poor
  approximation of a projection onto a generator's range, and on Defense-GAN it alone can be
  weaker than the transferred points at large eps: both figures are reported.

Written by hand: no installed library ships these purifiers or BPDA (ART has feature squeezing
but not on torch tensors with a straight-through backward, and would be a large dependency).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from auditkit.attacks.apgd import APGD
from auditkit.attacks.common import check_norm, check_positive_int, eval_mode
from auditkit.attacks.registry import BUDGET_NAMES, get_attack, is_adversarial_batched
from auditkit.stats import proportion

__all__ = [
    "BitDepthReduction",
    "GANProjection",
    "MedianFilter",
    "PURIFIERS",
    "PurifiedModel",
    "bpda",
    "evaluate_defense",
    "list_purifiers",
    "make_purifier",
    "transfer_attack",
]


# ----------------------------------------------------------------------------- purifiers


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise ValueError(f"purifiers take float images [N, C, H, W], got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")


class BitDepthReduction(nn.Module):
    """Quantise each pixel to ``2**bits`` evenly spaced levels of ``bounds`` (feature squeezing).

    Input and output ``[N, ...]`` float inside ``bounds``. Deterministic; zero gradient almost
    everywhere (the reason BPDA is needed to attack it).
    """

    randomised = False

    def __init__(self, bits: int = 3, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        check_positive_int("bits", bits)
        if bits > 16:
            raise ValueError(f"bits must be at most 16, got {bits}")
        self.bits = bits
        self.lo, self.hi = (float(b) for b in bounds)
        if not self.lo < self.hi:
            raise ValueError(f"bounds must satisfy low < high, got {bounds!r}")

    def forward(self, x: Tensor) -> Tensor:
        levels = 2**self.bits - 1
        u = ((x - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        return torch.round(u * levels) / levels * (self.hi - self.lo) + self.lo

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def _symmetric_pad(x: Tensor, before: int, after: int, dim: int) -> Tensor:
    """Pad ``x`` along ``dim`` by mirroring with the edge repeated (scipy's ``reflect``)."""
    if before == 0 and after == 0:
        return x
    n = x.shape[dim]
    if before > n or after > n:
        raise ValueError(f"median filter window larger than the image ({n} pixels along dim {dim})")
    parts = []
    if before:
        parts.append(x.narrow(dim, 0, before).flip(dim))
    parts.append(x)
    if after:
        parts.append(x.narrow(dim, n - after, after).flip(dim))
    return torch.cat(parts, dim=dim)


class MedianFilter(nn.Module):
    """Median of each pixel's ``size x size`` neighbourhood, per channel (feature squeezing).

    Same window placement, rank and borders as ``scipy.ndimage.median_filter(x, size=(1, 1,
    size, size), mode="reflect")``: the window of output pixel ``i`` spans
    ``i - size//2 .. i - size//2 + size - 1`` and the value is the element of rank
    ``size*size // 2`` (for an even window, the upper of the two middle values).
    Input and output ``[N, C, H, W]``.
    """

    randomised = False

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        check_positive_int("size", size, minimum=2)
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x)
        s = self.size
        before, after = s // 2, s - 1 - s // 2
        padded = _symmetric_pad(_symmetric_pad(x, before, after, 2), before, after, 3)
        windows = padded.unfold(2, s, 1).unfold(3, s, 1)  # [N, C, H, W, s, s]
        flat = windows.reshape(*x.shape, s * s)
        return flat.kthvalue(s * s // 2 + 1, dim=-1).values

    def extra_repr(self) -> str:
        return f"size={self.size}"


class GANProjection(nn.Module):
    """Defense-GAN: the closest image in the range of ``generator`` (Samangouei et al. 2018).

    For each input ``x``, ``n_restarts`` latent codes ``z ~ N(0, I)`` are refined by ``steps``
    Adam steps (learning rate ``lr``) on ``||G(z) - x||^2``; the output is ``G(z)`` of the
    restart with the smallest error. The starts are drawn from the purifier's own generator
    (seeded with ``seed``; :meth:`reset` rewinds it), so repeated calls differ: the defense is
    randomised and attacking it needs EOT. The generator runs in eval mode and is never
    updated (gradients are taken w.r.t. ``z`` only).

    Args:
        generator: module ``[B, latent_dim] -> [B, C, H, W]`` images in the classifier's bounds.
        latent_dim: size of ``z``.
        n_restarts, steps, lr: the projection's random restarts and descent.
        seed: seed of the starts.
        batch_size: inputs projected together (each brings ``n_restarts`` codes).
    """

    randomised = True

    def __init__(
        self,
        generator: nn.Module,
        latent_dim: int,
        n_restarts: int = 10,
        steps: int = 100,
        lr: float = 0.1,
        seed: int = 0,
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        if not isinstance(generator, nn.Module):
            raise ValueError(f"generator must be an nn.Module, got {type(generator).__name__}")
        check_positive_int("latent_dim", latent_dim)
        check_positive_int("n_restarts", n_restarts)
        check_positive_int("steps", steps, minimum=0)
        check_positive_int("batch_size", batch_size)
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.generator = generator
        self.latent_dim, self.n_restarts, self.steps, self.lr = latent_dim, n_restarts, steps, float(lr)
        self.seed, self.batch_size = seed, batch_size
        self._gen = torch.Generator().manual_seed(seed)

    def reset(self, seed: int | None = None) -> None:
        """Rewind the random starts to ``seed`` (default: the constructor's)."""
        self._gen = torch.Generator().manual_seed(self.seed if seed is None else seed)

    def project(self, x: Tensor, return_z: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``G(z*)`` ``[N, ...]`` for ``x`` ``[N, ...]`` (and ``z*`` ``[N, latent_dim]`` if asked)."""
        outs, zs = [], []
        with eval_mode(self.generator):
            for start in range(0, x.shape[0], self.batch_size):
                rec, z = self._project(x[start : start + self.batch_size].detach())
                outs.append(rec)
                zs.append(z)
        rec, z = torch.cat(outs), torch.cat(zs)
        return (rec, z) if return_z else rec

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, r = x.shape[0], self.n_restarts
        z = torch.randn(n * r, self.latent_dim, generator=self._gen).to(x.device, x.dtype).requires_grad_(True)
        target = x.repeat_interleave(r, dim=0)
        opt = torch.optim.Adam([z], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                err = (self.generator(z) - target).flatten(1).pow(2).sum(1)
                # Gradient w.r.t. z only: the generator's parameters are never touched.
                (z.grad,) = torch.autograd.grad(err.sum(), z)
                opt.step()
        with torch.no_grad():
            rec = self.generator(z)
            err = (rec - target).flatten(1).pow(2).sum(1).view(n, r)
            best = err.argmin(1) + torch.arange(n, device=x.device) * r
        return rec[best].detach(), z[best].detach()

    def forward(self, x: Tensor) -> Tensor:
        return self.project(x)  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"n_restarts={self.n_restarts}, steps={self.steps}, lr={self.lr}, seed={self.seed}"


# ----------------------------------------------------------------------------- BPDA and pipeline


class _StraightThrough(torch.autograd.Function):
    """forward: ``fn(x)``; backward: the incoming gradient unchanged (identity's Jacobian)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            return fn(x).detach()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def bpda(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)`` whose backward pass is the identity's (BPDA, Athalye et al. 2018).

    Args:
        fn: the purifier ``[N, ...] -> [N, ...]`` (same shape), possibly non-differentiable.
        x: ``[N, ...]`` input.

    Returns:
        ``fn(x)``, with ``d out / d x`` replaced by the identity.
    """
    return _StraightThrough.apply(x, fn)


class PurifiedModel(nn.Module):
    """``classifier(purifier(x))``: a purification defense as one model.

    With ``bpda=True`` (default) the backward pass treats the purifier as the identity, so
    gradient attacks on this model are adaptive (BPDA). With ``bpda=False`` gradients flow
    through the purifier as autograd sees it: zero for quantisation, none for the Defense-GAN
    projection (it returns a detached tensor) — the obfuscated gradients a naive white-box
    attack would meet.
    """

    def __init__(self, classifier: nn.Module, purifier: nn.Module, bpda: bool = True) -> None:
        super().__init__()
        self.classifier = classifier
        self.purifier = purifier
        self.use_bpda = bpda

    @property
    def randomised(self) -> bool:
        return bool(getattr(self.purifier, "randomised", False))

    def purify(self, x: Tensor) -> Tensor:
        return self.purifier(x)

    def forward(self, x: Tensor) -> Tensor:
        purified = bpda(self.purifier, x) if self.use_bpda else self.purifier(x)
        return self.classifier(purified)


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class PurifierSpec:
    """A named purifier: what it is and how to build it for a budget."""

    name: str
    summary: str
    build: Callable[..., nn.Module]
    eot_iter: dict[str, int]  # EOT draws per gradient, per budget (1 for deterministic purifiers)


DEFAULT_GAN = "gan-digits"  # the zoo GAN Defense-GAN projects onto when no generator is given


def default_generator() -> tuple[nn.Module, int, Any] | str:
    """``(generator, latent_dim, card)`` of the zoo's ``gan-digits``, or why it is unavailable.

    The one place the defenses read the zoo (declared in tests/test_architecture.py): Defense-GAN
    needs a generator of the scanned model's inputs, and the zoo ships one for 8x8 digits. The
    card's ``input_shape`` and ``bounds`` say what the generator draws.
    """
    from auditkit.zoo import artifact_path, get_model

    if not artifact_path(DEFAULT_GAN).exists():
        return f"the zoo's {DEFAULT_GAN} artifact is missing; train it with `auditkit zoo train {DEFAULT_GAN}`"
    gan, card = get_model(DEFAULT_GAN)
    return gan.generator, int(card.latent_dim or gan.latent_dim), card  # type: ignore[attr-defined]


def _gan_projection(bounds: tuple[float, float], seed: int, budget: str, generator: nn.Module | None = None,
                    latent_dim: int | None = None) -> GANProjection:
    if generator is None:
        found = default_generator()
        if isinstance(found, str):
            raise FileNotFoundError(found)
        generator, latent_dim, _ = found
    if latent_dim is None:
        raise ValueError("pass latent_dim together with a generator")
    restarts, steps = GAN_SETTINGS[budget]
    return GANProjection(generator, int(latent_dim), n_restarts=restarts, steps=steps, seed=seed)


# Defense-GAN's (restarts, descent steps) per budget; the paper uses 10 restarts and 200 steps
# on MNIST. The projection runs at every forward pass of an attack, so it dominates the cost.
GAN_SETTINGS = {"quick": (2, 20), "standard": (4, 30), "thorough": (10, 200)}

PURIFIERS: dict[str, PurifierSpec] = {
    s.name: s
    for s in [
        PurifierSpec("squeeze-bits", "feature squeezing: bit-depth reduction to 3 bits (Xu et al. 2018)",
                     lambda bounds, seed, budget, **kw: BitDepthReduction(3, bounds),
                     {b: 1 for b in BUDGET_NAMES}),
        PurifierSpec("median-filter", "feature squeezing: 2x2 median filter (Xu et al. 2018)",
                     lambda bounds, seed, budget, **kw: MedianFilter(2),
                     {b: 1 for b in BUDGET_NAMES}),
        PurifierSpec("defense-gan", "Defense-GAN: projection onto the range of gan-digits' generator "
                     "(Samangouei et al. 2018)", _gan_projection,
                     {"quick": 2, "standard": 2, "thorough": 8}),
    ]
}


def list_purifiers() -> list[str]:
    """Names of the registered purifiers."""
    return sorted(PURIFIERS)


def make_purifier(name: str, bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, budget: str = "standard",
                  **kwargs: Any) -> nn.Module:
    """Build the registered purifier ``name`` (``defense-gan`` loads the zoo's ``gan-digits``
    unless ``generator=`` and ``latent_dim=`` are given). ValueError lists the known names."""
    if name not in PURIFIERS:
        raise ValueError(f"unknown purifier {name!r}; known: {', '.join(list_purifiers())}")
    if budget not in BUDGET_NAMES:
        raise ValueError(f"unknown budget {budget!r}: use one of {', '.join(BUDGET_NAMES)}")
    return PURIFIERS[name].build(bounds=bounds, seed=seed, budget=budget, **kwargs)


# ----------------------------------------------------------------------------- evaluation


def _apgd(norm: str, budget: str, seed: int, eot_iter: int = 1) -> APGD:
    """APGD-CE with the registry's settings of ``budget`` (the ensemble's own APGD-CE)."""
    settings = get_attack(f"apgd-ce-{norm}").settings(budget)
    return APGD(norm=norm, loss="ce", seed=seed, eot_iter=eot_iter, **settings)


def transfer_attack(
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    eps_list: list[float],
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    budget: str = "standard",
    norm: str = "linf",
) -> list[Tensor]:
    """APGD-CE against the bare classifier at each eps: the non-adaptive adversarial inputs.

    Args:
        classifier: ``[N, ...] -> [N, C]`` logits; x: ``[N, ...]`` inside ``bounds``; y: ``[N]``.
        eps_list: radii in input units.

    Returns:
        one ``x_adv [N, ...]`` per eps (``x`` itself at eps 0).
    """
    attack = _apgd(check_norm(norm), budget, seed)
    return [x.clone() if float(e) == 0 else attack.run(classifier, x, y, float(e), bounds).x_adv for e in eps_list]


def _seconds_per_sample(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            fn(x[s : s + batch_size])
    return (time.perf_counter() - start) / max(1, len(x))


def evaluate_defense(
    name: str,
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    eps_list: list[float],
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    budget: str = "standard",
    *,
    norm: str = "linf",
    purifier: nn.Module | None = None,
    transfer: list[Tensor] | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Non-adaptive and adaptive robust accuracy of a purification defense, side by side.

    Args:
        name: a registered purifier (``list_purifiers()``), or any label when ``purifier`` is given.
        classifier: the bare classifier ``[N, C, H, W] -> [N, C]`` logits.
        x: ``[N, C, H, W]`` float inputs inside ``bounds``; y: ``[N]`` int labels.
        eps_list: radii (input units) of the ``norm`` threat model.
        bounds, seed, budget: input range, seed of every attack and draw, attack budget
            (APGD-CE iterations/restarts as the registry's ``apgd-ce-*``; EOT draws and
            Defense-GAN settings as ``PURIFIERS``/``GAN_SETTINGS``).
        norm: ``"linf"`` or ``"l2"``.
        purifier: a purifier module to use instead of building ``name``.
        transfer: precomputed ``transfer_attack`` outputs for these samples (one per eps), to
            share the non-adaptive attack between defenses.
        batch_size: samples per forward pass when predicting.

    Returns:
        JSON-able dict: ``defense``, ``summary``, ``randomised``, ``norm``, ``budget``, ``n``,
        ``epsilons``, ``clean_accuracy`` (the pipeline) and ``undefended_clean_accuracy`` (each
        ``{value, ci_low, ci_high, n}``, Wilson 95%), ``curve`` (per eps: ``undefended``,
        ``non_adaptive``, ``adaptive_bpda_only``, ``adaptive``, each such a proportion), ``max_overstatement``
        (``{eps, points}``: the largest non-adaptive minus adaptive gap, in points),
        ``attacks`` (what each column ran), ``seconds_per_sample`` (the purifier alone) and
        ``records`` (per sample: clean-correct and robust flags per eps for both evaluations).
        A sample counts as robust only if the pipeline also classifies it correctly clean.
    """
    norm = check_norm(norm)
    if budget not in BUDGET_NAMES:
        raise ValueError(f"unknown budget {budget!r}: use one of {', '.join(BUDGET_NAMES)}")
    eps_values = [float(e) for e in eps_list]
    if not eps_values or any(not (e >= 0 and math.isfinite(e)) for e in eps_values):
        raise ValueError(f"eps_list must be a non-empty list of finite numbers >= 0, got {eps_list!r}")
    if purifier is None:
        purifier = make_purifier(name, bounds=bounds, seed=seed, budget=budget)
    spec = PURIFIERS.get(name)
    randomised = bool(getattr(purifier, "randomised", False))
    eot = (spec.eot_iter[budget] if spec else (4 if randomised else 1)) if randomised else 1
    if transfer is not None and len(transfer) != len(eps_values):
        raise ValueError(f"transfer has {len(transfer)} entries but eps_list has {len(eps_values)}")
    x, y = x.detach(), y.long()
    if hasattr(purifier, "reset"):
        purifier.reset(seed)  # type: ignore[operator]
    pipeline = PurifiedModel(classifier, purifier, bpda=True)
    n = len(x)

    with eval_mode(classifier):
        bare_ok = (~is_adversarial_batched(classifier, x, y, batch_size)).cpu().numpy()
        clean_ok = (~is_adversarial_batched(pipeline, x, y, batch_size)).cpu().numpy()
        if transfer is None:
            transfer = transfer_attack(classifier, x, y, eps_values, bounds, seed, budget, norm)
        adaptive_attack = _apgd(norm, budget, seed, eot_iter=eot)
        rows = []
        non_adaptive = np.zeros((n, len(eps_values)), bool)
        bpda_only = np.zeros((n, len(eps_values)), bool)
        adaptive = np.zeros((n, len(eps_values)), bool)
        fooled = ~clean_ok  # by the BPDA attack at a smaller eps: its point lies in every larger ball
        for k in sorted(range(len(eps_values)), key=lambda k: eps_values[k]):
            e = eps_values[k]
            x_t = transfer[k].to(x.device)
            transfer_ok = (~is_adversarial_batched(pipeline, x_t, y, batch_size)).cpu().numpy() if e > 0 else clean_ok
            non_adaptive[:, k] = clean_ok & transfer_ok
            todo = np.flatnonzero(~fooled)
            if e > 0 and todo.size:
                idx = torch.as_tensor(todo, device=x.device)
                out = adaptive_attack.run(pipeline, x[idx], y[idx], e, bounds)
                fooled[todo] = out.success.cpu().numpy()
            bpda_only[:, k] = ~fooled
            if e > 0:
                # The adaptive adversary knows the defense and may also use the transferred
                # points: robust only if the pipeline resists every attempt. For a randomised
                # purifier each query is a fresh draw, so the transferred point counts as two
                # attempts: the non-adaptive evaluation's draw and one more.
                again = transfer_ok if not randomised else (~is_adversarial_batched(pipeline, x_t, y, batch_size)).cpu().numpy()
                adaptive[:, k] = ~fooled & transfer_ok & again
            else:
                adaptive[:, k] = clean_ok
        for k, e in enumerate(eps_values):
            x_t = transfer[k].to(x.device)
            undefended_ok = bare_ok & (~is_adversarial_batched(classifier, x_t, y, batch_size)).cpu().numpy()
            rows.append({
                "eps": e,
                "undefended": proportion(int(undefended_ok.sum()), n),
                "non_adaptive": proportion(int(non_adaptive[:, k].sum()), n),
                "adaptive": proportion(int(adaptive[:, k].sum()), n),
                "adaptive_bpda_only": proportion(int(bpda_only[:, k].sum()), n),
            })
        seconds = _seconds_per_sample(purifier, x, batch_size)

    gaps = [(100.0 * (r["non_adaptive"]["value"] - r["adaptive"]["value"]), r["eps"]) for r in rows]
    worst_gap, worst_eps = max(gaps)
    apgd_settings = get_attack(f"apgd-ce-{norm}").settings(budget)
    return {
        "defense": name,
        "summary": spec.summary if spec else type(purifier).__name__,
        "randomised": randomised,
        "norm": norm,
        "budget": budget,
        "n": n,
        "epsilons": eps_values,
        "clean_accuracy": proportion(int(clean_ok.sum()), n),
        "undefended_clean_accuracy": proportion(int(bare_ok.sum()), n),
        "curve": rows,
        "max_overstatement": {"eps": worst_eps, "points": worst_gap},
        "attacks": {
            "undefended": f"APGD-CE {apgd_settings} on the bare classifier",
            "non_adaptive": f"APGD-CE {apgd_settings} on the bare classifier, its points fed to the pipeline",
            "adaptive_bpda_only": f"APGD-CE {apgd_settings} on the pipeline with BPDA (identity backward)"
                                  + (f" and EOT over {eot} draws" if eot > 1 else ""),
            "adaptive": "per-sample worst case of adaptive_bpda_only and the non-adaptive points, both on "
                        "the pipeline",
        },
        "purifier": f"{type(purifier).__name__}({purifier.extra_repr()})",
        "eot_iter": eot,
        "seconds_per_sample": seconds,
        "records": {
            "clean_correct": clean_ok.tolist(),
            "non_adaptive_robust": non_adaptive.tolist(),
            "adaptive_robust": adaptive.tolist(),
            "adaptive_bpda_only_robust": bpda_only.tolist(),
        },
    }
