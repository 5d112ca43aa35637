"""Shared pieces of the native attacks: the output record, norm-ball projection, input checks.

Written by hand because the native attacks (APGD, Square) work on plain torch tensors and must
not depend on foolbox's eagerpy wrappers; the operations are the usual per-sample Lp helpers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from typing import Any

import torch
from torch import Tensor, nn

NORMS = ("linf", "l2")


@dataclass
class AttackOutput:
    """What an attack returns for a batch of N samples.

    Attributes:
        x_adv: ``[N, ...]``, same shape, dtype and device as the input ``x``, within ``eps``
            of ``x`` (up to floating-point rounding) and inside the bounds. For successful
            samples the adversarial point; for the others the best point the attack found
            (highest loss), or ``x`` itself where the attack never ran (already misclassified).
        success: bool ``[N]``: ``model(x_adv).argmax(1) != y`` (also for targeted attacks:
            success means misclassified, whatever the class reached).
        queries: int64 ``[N]`` forward passes spent on each sample by a score-based attack,
            ``None`` for gradient attacks.
    """

    x_adv: Tensor
    success: Tensor
    queries: Tensor | None = None


def check_norm(norm: str) -> str:
    """Return ``norm`` lower-cased if it is one of ``"linf"``, ``"l2"``; else raise ValueError."""
    if not isinstance(norm, str) or norm.lower() not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: use one of {', '.join(NORMS)}")
    return norm.lower()


def norm_of(delta: Tensor, norm: str) -> Tensor:
    """Per-sample norm of a perturbation.

    Args:
        delta: ``[N, ...]`` perturbations, in input units.
        norm: ``"linf"`` or ``"l2"``.

    Returns:
        ``[N]`` norms (same dtype as ``delta``).
    """
    norm = check_norm(norm)
    flat = delta.reshape(delta.shape[0], -1)
    if flat.shape[1] == 0:
        return flat.new_zeros(flat.shape[0])
    if norm == "linf":
        return flat.abs().amax(dim=1)
    return flat.norm(p=2, dim=1)


def project(delta: Tensor, norm: str, eps: float) -> Tensor:
    """Project each sample's perturbation onto the ``norm`` ball of radius ``eps``.

    Args:
        delta: ``[N, ...]`` perturbations.
        norm: ``"linf"`` (clamp each coordinate to ``[-eps, eps]``) or ``"l2"`` (rescale the
            samples whose L2 norm exceeds ``eps`` onto the sphere).
        eps: radius, ``>= 0``, in input units.

    Returns:
        ``[N, ...]`` projected perturbations.
    """
    norm = check_norm(norm)
    check_eps(eps)
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = norm_of(delta, "l2").view(-1, *([1] * (delta.dim() - 1)))
    # min(1, eps / ||d||); the tiny floor keeps a zero perturbation at zero instead of NaN.
    factor = torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    return delta * factor


def check_eps(eps: float) -> float:
    """Return ``eps`` as a float if it is finite and ``>= 0``; else raise ValueError."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number, got {eps!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return value


def check_inputs(x: Tensor, y: Tensor, eps: float, bounds: tuple[float, float]) -> tuple[float, float, float]:
    """Validate an attack's inputs; return ``(eps, lo, hi)`` as floats.

    Raises ValueError naming the fix when ``x`` is not a floating tensor ``[N, ...]`` inside
    ``bounds``, ``y`` is not an integer tensor ``[N]``, ``eps`` is negative or ``bounds`` is
    not an increasing pair.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError("x must be a floating-point tensor of shape [N, ...] (batch first)")
    if not isinstance(y, Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError("y must be an integer tensor of class indices, shape [N]")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape [N] = [{x.shape[0]}] to match x, got {list(y.shape)}")
    if y.device != x.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
    eps_f = check_eps(eps)
    lo, hi = check_bounds(x, bounds)
    return eps_f, lo, hi


def check_bounds(x: Tensor, bounds: Any) -> tuple[float, float]:
    """``(low, high)`` as floats; raise ValueError unless ``low < high`` and ``x`` lies inside."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}") from None
    if not lo < hi:
        raise ValueError(f"bounds must satisfy low < high, got {bounds!r}")
    if x.numel() and (bool(torch.isnan(x).any()) or x.min().item() < lo or x.max().item() > hi):
        raise ValueError(
            f"x has values outside bounds {(lo, hi)} (min {x.min().item():.4g}, max {x.max().item():.4g}):"
            " preprocess the inputs into the model's domain or pass the right bounds"
        )
    return lo, hi


def check_labels(logits: Tensor, y: Tensor) -> None:
    """Raise ValueError if ``y`` holds class indices outside ``[0, C)`` for ``logits [N, C]``."""
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits of shape [N, C], got {list(logits.shape)}")
    if y.numel() and (y.min().item() < 0 or y.max().item() >= logits.shape[1]):
        raise ValueError(f"y holds labels outside [0, {logits.shape[1]}): the model has {logits.shape[1]} classes")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; restore every submodule's own mode afterwards.

    ``model.train(was_training)`` would not do: it would overwrite submodules that the user had
    deliberately left in a different mode (e.g. frozen BatchNorm in a training model).
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Turn off ``requires_grad`` on the model's parameters for the block, then restore each.

    Attacks need the gradient w.r.t. the input only. Libraries that call ``loss.backward()``
    (foolbox) would otherwise also compute every parameter's gradient — about half the cost
    of a step — and leave ``.grad`` tensors on the audited model.
    """
    params = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in params:
            p.requires_grad_(flag)


@dataclass(frozen=True)
class EOT:
    """Expectation over Transformation for a randomised model (AutoAttack's "rand" version).

    A model whose forward pass is random (noise added to the input, random transforms, dropout
    left on) has no single gradient and no single answer. Under EOT:

    * an EOT-capable attack (APGD, APGD-T) averages its loss, its gradient and its logits over
      ``samples`` forward/backward passes per step, and its in-attack success test is the
      majority vote of those same passes (no extra forwards);
    * every robust/broken decision on a returned point (and the clean prediction) is the
      majority vote of ``votes`` fresh forwards: a sample counts as misclassified unless its
      true class gets strictly more votes than any other class (ties count against the model,
      so noise never makes a point look robust). One lucky forward decides nothing.

    Attributes:
        samples: forward/backward passes averaged per gradient step (20 in AutoAttack).
        votes: forwards per decision.
        n_iter: iterations of the EOT attacks (100 in AutoAttack's rand version), or None: the
            budget's own. The deterministic protocol's short, warm-started runs do not carry
            over: a randomised model gets no warm start and needs the full iteration count.
    """

    samples: int = 20
    votes: int = 20
    n_iter: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("EOT samples", self.samples)
        check_positive_int("EOT votes", self.votes)
        if self.n_iter is not None:
            check_positive_int("EOT n_iter", self.n_iter)

    def as_dict(self) -> dict[str, Any]:
        return {"samples_per_gradient": self.samples, "votes_per_decision": self.votes, "n_iter": self.n_iter,
                "decision": "majority vote (true class strictly most frequent over the votes; ties count as broken)"}


def vote_counts(model: nn.Module, x: Tensor, votes: int) -> tuple[Tensor, Tensor]:
    """Predicted-class counts over ``votes`` forwards (no grad) and the mean logits.

    Returns:
        ``counts`` int64 ``[N, C]`` (each row sums to ``votes``) and mean logits ``[N, C]``.
    """
    logits_sum: Tensor | None = None
    counts: Tensor | None = None
    with torch.no_grad():
        for _ in range(votes):
            logits = model(x)
            if logits.dim() != 2:
                raise ValueError(f"the model must return logits of shape [N, C], got {list(logits.shape)}")
            hits = torch.nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1])
            counts = hits if counts is None else counts + hits
            logits_sum = logits if logits_sum is None else logits_sum + logits
    assert counts is not None and logits_sum is not None  # votes >= 1
    return counts, logits_sum / votes


def vote_fooled(counts: Tensor, y: Tensor) -> Tensor:
    """bool ``[N]``: the true class is not strictly the most voted (``counts [N, C]``)."""
    true = counts.gather(1, y.view(-1, 1)).squeeze(1)
    other = counts.scatter(1, y.view(-1, 1), -1).amax(dim=1)
    return true <= other


def vote_prediction(counts: Tensor, y: Tensor) -> Tensor:
    """The most voted class ``[N]``; a tie with the true class goes to the other class, so that
    ``vote_prediction(c, y) != y`` exactly when ``vote_fooled(c, y)``."""
    return (counts.double() - 0.5 * torch.nn.functional.one_hot(y, counts.shape[1])).argmax(dim=1)


def is_adversarial(model: nn.Module, x: Tensor, y: Tensor, votes: int = 1) -> Tensor:
    """Whether the model misclassifies each sample.

    Args:
        model: classifier mapping ``[N, ...]`` to logits ``[N, C]``.
        x: ``[N, ...]`` inputs.
        y: ``[N]`` true labels.
        votes: forwards per decision (``EOT.votes``) for a randomised model; 1 for a
            deterministic one.

    Returns:
        bool ``[N]``: ``model(x).argmax(1) != y`` from an eval-mode forward without grad; with
        ``votes > 1``, :func:`vote_fooled` over that many forwards.
    """
    with torch.no_grad(), eval_mode(model):
        if votes == 1:
            logits = model(x)
            check_labels(logits, y)
            return logits.argmax(dim=1) != y
        counts, mean_logits = vote_counts(model, x, votes)
    check_labels(mean_logits, y)
    return vote_fooled(counts, y)


def predict(model: nn.Module, x: Tensor, y: Tensor, votes: int = 1) -> Tensor:
    """Predicted classes ``[N]`` (eval mode, no grad): the argmax, or with ``votes > 1`` the
    majority vote (:func:`vote_prediction`: ties go against the label ``y``)."""
    with torch.no_grad(), eval_mode(model):
        if votes == 1:
            return model(x).argmax(dim=1)
        counts, _ = vote_counts(model, x, votes)
    return vote_prediction(counts, y)


def describe_error(exc: BaseException) -> str:
    """``"Type: first line of the message"`` for results.json; a message-less exception (a bare
    ``assert`` inside a library) says where it was raised instead (``file:line``)."""
    from auditkit.errors import one_line

    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if lines:
        return one_line(f"{type(exc).__name__}: {lines[0].strip()}", 300)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = ""
    if tb is not None:
        parts = tb.tb_frame.f_code.co_filename.replace("\\", "/").split("/")
        where = f" raised at {'/'.join(parts[-3:])}:{tb.tb_lineno}"
    return one_line(f"{type(exc).__name__}{where}", 300)


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A private random generator on ``device``, so attacks never touch the global RNG state."""
    return torch.Generator(device=device).manual_seed(int(seed))


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum``; else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_discard_after(discard_after: int | None, length_name: str, length: int) -> int | None:
    """``discard_after`` (APGD's and Square's early discarding) if it is None or an int in
    ``[1, length)``, ``length`` being the run's ``length_name`` (iterations, queries); else raise
    ValueError."""
    if discard_after is None:
        return None
    check_positive_int("discard_after", discard_after)
    if discard_after >= length:
        raise ValueError(f"discard_after must be below {length_name} ({length}), got {discard_after}")
    return discard_after
