"""Adversarial training: PGD-AT (Madry et al. 2018) and TRADES (Zhang et al. 2019).

Both are :class:`~auditkit.training.TrainTask` implementations, so they run through the shared
:func:`~auditkit.training.fit` (CPU or CUDA, checkpoint/resume, DDP under ``torchrun``):

>>> result = adversarial_train(model, TensorDataset(x, y), TrainConfig(epochs=30),
...                            method="pgd", eps=0.1, steps=7, bounds=(0.0, 1.0))

* **PGD-AT** (Madry et al., "Towards deep learning models resistant to adversarial attacks",
  ICLR 2018): every batch is replaced by PGD adversarial examples (random start in the ball,
  ``steps`` signed-gradient steps of the cross-entropy, projection) and the model takes a
  cross-entropy step on them.
* **TRADES** (Zhang et al., "Theoretically principled trade-off between robustness and
  accuracy", ICML 2019): loss ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))`` with ``x_adv``
  maximising that KL from a small Gaussian start, as in the authors' reference code
  (``KLDivLoss(log_softmax(f(x_adv)), softmax(f(x)))``, batch mean).

The attack that makes the training examples runs with the model in eval mode (BatchNorm uses
its running statistics, Dropout is off, nothing is updated), then the update step runs in train
mode. Gradients of the attack are taken w.r.t. the input only, through the bare module (never
the DDP wrapper: the attack's backward passes must not trigger DDP's gradient all-reduce).

Where the perturbation may go is a :class:`PerturbationSet`: an Linf or L2 ball of radius
``eps`` measured in units of ``scale`` (1 for images; each feature's range for tabular data),
intersected with the box ``bounds`` (scalars, or per-feature tensors), on the coordinates of
``feature_mask`` only. :func:`tabular_perturbation` builds it from a card's feature schema:
only *changeable* continuous and integer features move, within their ``[min, max]``, with
``eps`` a fraction of each feature's range. Categorical and binary features stay unchanged
during training and integer features move as real numbers (no rounding) — a continuous
relaxation that is enough to train on; the evaluation (``auditkit.attacks.tabular``) enforces
the full discrete threat model.

Written by hand: the loops are a few lines over the shared trainer; torchattacks/ART would
bring their own training loops, devices and checkpoints.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from auditkit.attacks.common import check_eps, check_norm, check_positive_int, eval_mode
from auditkit.card import AuditCard
from auditkit.training import ClassifierTask, StepContext, TrainConfig, TrainResult, fit

__all__ = [
    "PGDTrainingTask",
    "PerturbationSet",
    "TradesTask",
    "adversarial_train",
    "pgd_attack",
    "tabular_perturbation",
]

Method = Literal["pgd", "trades"]
BoundsLike = tuple[float, float] | tuple[Tensor, Tensor]


def _view(t: Tensor, like: Tensor) -> Tensor:
    """A per-sample ``[B]`` tensor reshaped to broadcast against ``like [B, ...]``."""
    return t.view(-1, *([1] * (like.dim() - 1)))


class PerturbationSet:
    """The inputs an attacker may reach from ``x``: ball ∩ box ∩ mask.

    Args:
        eps: radius, ``>= 0``, in units of ``scale``.
        norm: ``"linf"`` or ``"l2"``; the norm of ``(x' - x) / scale``.
        bounds: ``(low, high)`` valid input range: two floats, or two tensors broadcastable to one
            sample (e.g. ``[F]`` per-feature minima and maxima).
        scale: ``None`` (input units) or a positive tensor broadcastable to one sample: the unit
            of each coordinate (tabular: the feature's range, so ``eps`` is a fraction of it).
        feature_mask: ``None`` (every coordinate moves) or a bool tensor broadcastable to one
            sample; ``False`` coordinates never change.
    """

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        bounds: BoundsLike = (0.0, 1.0),
        scale: Tensor | None = None,
        feature_mask: Tensor | None = None,
    ) -> None:
        self.eps = check_eps(eps)
        self.norm = check_norm(norm)
        try:
            lo, hi = bounds
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}") from None
        self.lo = torch.as_tensor(lo, dtype=torch.float32)
        self.hi = torch.as_tensor(hi, dtype=torch.float32)
        if self.lo.shape != self.hi.shape or not bool((self.lo <= self.hi).all()):
            raise ValueError("bounds must be (low, high) of the same shape with low <= high everywhere")
        if scale is not None:
            scale = torch.as_tensor(scale, dtype=torch.float32)
            if not bool((scale > 0).all()):
                raise ValueError("scale must be positive everywhere (it is the unit of each coordinate)")
        if feature_mask is not None:
            feature_mask = torch.as_tensor(feature_mask)
            if feature_mask.dtype != torch.bool:
                raise ValueError(f"feature_mask must be a bool tensor, got {feature_mask.dtype}")
        self.scale = scale
        self.feature_mask = feature_mask

    def _tensors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        to = dict(device=x.device, dtype=x.dtype)
        scale = None if self.scale is None else self.scale.to(**to)
        mask = None if self.feature_mask is None else self.feature_mask.to(device=x.device, dtype=x.dtype)
        return self.lo.to(**to), self.hi.to(**to), scale, mask

    def project(self, x_new: Tensor, x: Tensor) -> Tensor:
        """``x_new [B, ...]`` moved to the nearest allowed point around ``x [B, ...]`` (ball, then
        mask, then box: clamping to a box that contains ``x`` only shrinks the perturbation)."""
        lo, hi, scale, mask = self._tensors(x)
        delta = x_new - x
        if scale is not None:
            delta = delta / scale
        if mask is not None:
            delta = delta * mask
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            n = delta.flatten(1).norm(dim=1)
            delta = delta * _view(torch.clamp(self.eps / n.clamp_min(1e-12), max=1.0), delta)
        if scale is not None:
            delta = delta * scale
        return torch.maximum(torch.minimum(x + delta, hi), lo)

    def step(self, grad: Tensor, step_size: float) -> Tensor:
        """Steepest-ascent step of length ``step_size`` (units of ``scale``) for ``grad [B, ...]``:
        signed gradient (Linf) or normalised gradient (L2), measured in the scaled coordinates."""
        _, _, scale, mask = self._tensors(grad)
        g = grad if scale is None else grad * scale  # gradient w.r.t. the scaled coordinates
        if mask is not None:
            g = g * mask
        if self.norm == "linf":
            d = g.sign()
        else:
            d = g / _view(g.flatten(1).norm(dim=1).clamp_min(1e-12), g)
        d = d * step_size
        return d if scale is None else d * scale

    def random_start(self, x: Tensor) -> Tensor:
        """A random point of the set: uniform in the Linf ball, or a random direction of the L2
        ball with a uniform radius. Draws from torch's global RNG (which ``fit`` seeds and
        checkpoints, so resumed runs draw the same)."""
        if self.norm == "linf":
            delta = (2 * torch.rand(x.shape, device=x.device, dtype=x.dtype) - 1) * self.eps
        else:
            g = torch.randn(x.shape, device=x.device, dtype=x.dtype)
            r = torch.rand(x.shape[0], device=x.device, dtype=x.dtype) * self.eps
            delta = g * _view(r / g.flatten(1).norm(dim=1).clamp_min(1e-12), g)
        _, _, scale, _ = self._tensors(x)
        if scale is not None:
            delta = delta * scale
        return self.project(x + delta, x)


def tabular_perturbation(card: AuditCard, eps: float, norm: str = "linf") -> PerturbationSet:
    """The training-time perturbation set of a tabular card.

    Only features with ``changeable=True`` of kind continuous or integer (with ``max > min``)
    move, each within its ``[min, max]``; ``eps`` is a fraction of each feature's range
    (normalised feature units). Categorical and binary features stay as they are; integer
    features are not rounded (module docstring).

    Raises ValueError when the card has no feature schema or no feature can move.
    """
    if not card.features:
        raise ValueError("the card has no 'features': tabular adversarial training needs the feature schema")
    feats = card.features
    lo = torch.tensor([f.min for f in feats], dtype=torch.float32)
    hi = torch.tensor([f.max for f in feats], dtype=torch.float32)
    mask = torch.tensor([f.changeable and f.kind in ("continuous", "integer") and f.max > f.min for f in feats])
    if not bool(mask.any()):
        raise ValueError("no changeable continuous or integer feature in the card: nothing for the attack to move")
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return PerturbationSet(eps, norm, bounds=(lo, hi), scale=span, feature_mask=mask)


def pgd_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    pset: PerturbationSet,
    steps: int,
    step_size: float,
    random_start: bool = True,
) -> Tensor:
    """Projected gradient ascent on the cross-entropy (Madry et al. 2018).

    Args:
        model: classifier ``[B, ...] -> [B, C]`` logits, used as it is (the caller sets its mode).
        x: ``[B, ...]`` clean inputs inside ``pset``'s box; y: ``[B]`` int64 labels.
        pset: where the perturbation may go; steps: gradient steps (0: random start only);
        step_size: length of each step, in units of ``pset.scale``.
        random_start: start at a random point of ``pset`` (else at ``x``).

    Returns:
        ``x_adv [B, ...]`` (detached) inside ``pset`` around ``x``.
    """
    x = x.detach()
    x_adv = pset.random_start(x) if random_start else x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x_adv).float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = pset.project(x_adv.detach() + pset.step(grad, step_size), x)
    return x_adv.detach()


class _AdversarialTask:
    """Shared settings of PGD-AT and TRADES: the model, its optimizer and the inner attack."""

    def __init__(
        self,
        model: nn.Module,
        pset: PerturbationSet,
        steps: int = 7,
        step_size: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eps_warmup_epochs: int = 0,
        cosine: bool = False,
        class_weights: Tensor | None = None,
    ) -> None:
        if not isinstance(pset, PerturbationSet):
            raise TypeError(f"pset must be a PerturbationSet, got {type(pset).__name__}")
        check_positive_int("steps", steps, minimum=1)
        check_positive_int("eps_warmup_epochs", eps_warmup_epochs, minimum=0)
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        # Madry et al.'s rule: the steps together travel 2.5 eps, so any point can be reached.
        self.step_size = 2.5 * pset.eps / steps if step_size is None else float(step_size)
        if not self.step_size > 0 and pset.eps > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.model = model
        self.modules: dict[str, nn.Module] = {"model": model}
        self.pset = pset
        self.eps = pset.eps
        self.steps = steps
        self.lr, self.weight_decay, self.cosine = lr, weight_decay, cosine
        self.eps_warmup_epochs = eps_warmup_epochs
        self._current = pset  # the set of the current epoch (eps ramps up during warm-up)
        # ClassifierTask validates the optimizer settings and class weights and owns the schedule.
        self._plain = ClassifierTask(model, lr=lr, weight_decay=weight_decay, cosine=cosine,
                                     class_weights=class_weights)
        self.class_weights = self._plain.class_weights

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._plain.configure_optimizers()

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Cosine learning rate (optional) and a linear eps ramp over the warm-up epochs; both
        pure functions of the epoch, so a resumed run is exact."""
        self._plain.on_epoch_start(epoch, epochs)
        factor = min(1.0, (epoch + 1) / self.eps_warmup_epochs) if self.eps_warmup_epochs else 1.0
        self._current = copy.copy(self.pset)
        self._current.eps = self.eps * factor
        self._step_now = self.step_size * factor

    def _attack_set(self) -> tuple[PerturbationSet, float]:
        return self._current, getattr(self, "_step_now", self.step_size)

    def _ce(self, logits: Tensor, y: Tensor) -> Tensor:
        weight = None
        if self.class_weights is not None:
            if self.class_weights.numel() != logits.shape[1]:
                raise ValueError(f"class_weights has {self.class_weights.numel()} entries but the model has "
                                 f"{logits.shape[1]} classes")
            weight = self.class_weights.to(logits.device)
        return F.cross_entropy(logits.float(), y, weight=weight)

    def _lr(self, ctx: StepContext) -> float:
        return ctx.optimizers["model"].param_groups[0]["lr"]


class PGDTrainingTask(_AdversarialTask):
    """PGD adversarial training (Madry et al. 2018): cross-entropy on PGD examples only.

    Batches are ``(x, y)``. Each step: PGD with a random start (``steps`` steps of
    ``step_size``, default ``2.5 * eps / steps``) in eval mode, then one AdamW step on
    ``CE(model(x_adv), y)`` in train mode. Logs ``loss``, ``adv_accuracy`` (on the training
    batch's adversarial examples, before the step), ``eps`` and ``lr``.

    Args:
        model: the classifier to train in place.
        pset: the perturbation set (``PerturbationSet`` or ``tabular_perturbation``).
        steps, step_size: the inner attack.
        lr, weight_decay, cosine: AdamW and an optional cosine schedule (as ``ClassifierTask``).
        class_weights: ``[C]`` non-negative per-class weights of the cross-entropy (imbalanced
            data; the inner attack is unweighted).
        eps_warmup_epochs: ramp eps linearly from ``eps / k`` to ``eps`` over the first ``k``
            epochs (0: full eps from the start).
    """

    def training_step(self, batch: tuple[Tensor, ...], ctx: StepContext) -> dict[str, float]:
        if len(batch) < 2:
            raise ValueError("adversarial training needs batches (x, y); the dataset yields a single tensor")
        x, y = batch[0], batch[1].long()
        pset, step = self._attack_set()
        with eval_mode(self.model), ctx.autocast():
            x_adv = pgd_attack(self.model, x, y, pset, self.steps, step)
        with ctx.autocast():
            logits = ctx.modules["model"](x_adv)
        loss = self._ce(logits, y)
        ctx.step(loss, "model")
        return {
            "loss": loss.item(),
            "adv_accuracy": (logits.detach().argmax(1) == y).float().mean().item(),
            "eps": pset.eps,
            "lr": self._lr(ctx),
        }


class TradesTask(_AdversarialTask):
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``.

    The inner maximisation starts at ``x + 0.001 * N(0, I)`` (projected) and takes ``steps``
    signed-gradient steps of the KL divergence between the clean and the perturbed prediction,
    in eval mode, as the reference implementation does. The update runs one forward pass on
    the concatenated ``[x; x_adv]`` batch (one pass keeps DDP to one forward per backward;
    for models with BatchNorm the batch statistics then mix clean and adversarial inputs,
    unlike the reference code's two passes). Logs ``loss``, ``ce``, ``kl``, ``accuracy``,
    ``adv_accuracy``, ``eps``, ``lr``.

    Args:
        beta: weight of the robustness term (6.0 in the paper's MNIST/CIFAR experiments).
        others: as :class:`PGDTrainingTask`.
    """

    def __init__(self, model: nn.Module, pset: PerturbationSet, beta: float = 6.0, **kwargs: Any) -> None:
        super().__init__(model, pset, **kwargs)
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def _kl_attack(self, x: Tensor, pset: PerturbationSet, step: float, ctx: StepContext) -> Tensor:
        with eval_mode(self.model), ctx.autocast(), torch.no_grad():
            p_clean = F.softmax(self.model(x).float(), dim=1)
        x_adv = pset.project(x + 0.001 * torch.randn_like(x), x)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            with eval_mode(self.model), ctx.autocast(), torch.enable_grad():
                log_p_adv = F.log_softmax(self.model(x_adv).float(), dim=1)
                kl = F.kl_div(log_p_adv, p_clean, reduction="sum")
                (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = pset.project(x_adv.detach() + pset.step(grad, step), x)
        return x_adv.detach()

    def training_step(self, batch: tuple[Tensor, ...], ctx: StepContext) -> dict[str, float]:
        if len(batch) < 2:
            raise ValueError("adversarial training needs batches (x, y); the dataset yields a single tensor")
        x, y = batch[0], batch[1].long()
        pset, step = self._attack_set()
        x_adv = self._kl_attack(x, pset, step, ctx)
        with ctx.autocast():
            logits_all = ctx.modules["model"](torch.cat([x, x_adv]))
        logits, logits_adv = logits_all.float().split(x.shape[0])
        ce = self._ce(logits, y)
        kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        loss = ce + self.beta * kl
        ctx.step(loss, "model")
        return {
            "loss": loss.item(),
            "ce": ce.item(),
            "kl": kl.item(),
            "accuracy": (logits.detach().argmax(1) == y).float().mean().item(),
            "adv_accuracy": (logits_adv.detach().argmax(1) == y).float().mean().item(),
            "eps": pset.eps,
            "lr": self._lr(ctx),
        }


def adversarial_train(
    model: nn.Module,
    train_set: Dataset,
    config: TrainConfig,
    method: Method = "pgd",
    eps: float = 0.1,
    norm: str = "linf",
    steps: int = 7,
    bounds: BoundsLike = (0.0, 1.0),
    feature_mask: Tensor | None = None,
    *,
    scale: Tensor | None = None,
    step_size: float | None = None,
    beta: float = 6.0,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    eps_warmup_epochs: int = 0,
    cosine: bool = False,
    class_weights: Tensor | None = None,
) -> TrainResult:
    """Adversarially train a user's ``model`` in place through the shared trainer.

    Args:
        model: classifier ``[N, ...] -> [N, C]`` logits.
        train_set: map-style dataset of ``(x, y)`` (e.g. ``TensorDataset``), x inside ``bounds``.
        config: :class:`TrainConfig` (epochs, batch size, device, checkpoint, ...).
        method: ``"pgd"`` (Madry et al.) or ``"trades"`` (Zhang et al., weight ``beta``).
        eps: radius of the training threat model, in units of ``scale`` (input units if None).
        norm: ``"linf"`` or ``"l2"``.
        steps: inner attack steps; ``step_size`` defaults to ``2.5 * eps / steps``.
        bounds: valid input range: two floats, or per-feature tensors ``[F]``.
        feature_mask: bool tensor broadcastable to one sample; only True coordinates move.
        scale: per-coordinate unit (see :class:`PerturbationSet`); for a tabular card use
            :func:`tabular_perturbation` to get bounds, scale and mask from the schema.
        lr, weight_decay, cosine: AdamW settings; eps_warmup_epochs: linear eps ramp;
        class_weights: ``[C]`` weights of the cross-entropy terms.

    Returns:
        the :class:`TrainResult` of :func:`fit` (history logs ``loss``, ``adv_accuracy``, ...).
    """
    pset = PerturbationSet(eps, norm, bounds=bounds, scale=scale, feature_mask=feature_mask)
    kwargs = dict(steps=steps, step_size=step_size, lr=lr, weight_decay=weight_decay,
                  eps_warmup_epochs=eps_warmup_epochs, cosine=cosine, class_weights=class_weights)
    if method == "pgd":
        task: _AdversarialTask = PGDTrainingTask(model, pset, **kwargs)
    elif method == "trades":
        task = TradesTask(model, pset, beta=beta, **kwargs)
    else:
        raise ValueError(f"unknown method {method!r}; use 'pgd' or 'trades'")
    return fit(task, train_set, config)
