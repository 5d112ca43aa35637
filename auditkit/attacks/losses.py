"""Per-sample attack losses, all oriented so that *higher is more adversarial*.

DLR (Difference of Logits Ratio) is from Croce & Hein 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", Sec. 4. Written by hand: no
installed library exposes it as a plain per-sample function of logits. With sorted logits
``z_pi1 >= z_pi2 >= ...``:

    DLR(z, y)            = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)
    DLR-targeted(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)

The denominators make the loss invariant to shifting and rescaling the logits, which is what
defeats models that saturate cross-entropy by inflating their logits.

Fallbacks for few classes (the denominators need the 3rd / 4th largest logit):

* ``dlr_loss`` with 2 classes returns the plain margin ``z_other - z_y`` (no denominator). With
  two logits every shift- and scale-invariant function of them is a function of the sign of the
  margin alone (zero gradient almost everywhere), so no scaling can keep DLR's invariance *and*
  a useful gradient. APGD's steps use the gradient's sign (Linf) or direction (L2), so the
  missing scale does not change the steps.
* ``dlr_targeted_loss`` with 3 classes uses the untargeted denominator ``z_pi1 - z_pi3``; with
  2 classes the target is the only other class and it returns the margin ``z_t - z_y``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

_DENOM_FLOOR = 1e-12


def _check(logits: Tensor, y: Tensor, min_classes: int = 2) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [N, C], got {list(logits.shape)}")
    if y.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape [N] = [{logits.shape[0]}], got {list(y.shape)}")
    if logits.shape[1] < min_classes:
        raise ValueError(f"this loss needs at least {min_classes} classes, got {logits.shape[1]}")


def _true_logit(logits: Tensor, y: Tensor) -> Tensor:
    return logits.gather(1, y.view(-1, 1)).squeeze(1)


def _max_other(logits: Tensor, y: Tensor) -> Tensor:
    """``max_{i != y} z_i`` per sample: mask the true class with -inf and take the max."""
    masked = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return masked.amax(dim=1)


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of each sample.

    Args:
        logits: ``[N, C]``.
        y: ``[N]`` true labels.

    Returns:
        ``[N]`` cross-entropy in nats.
    """
    _check(logits, y)
    return F.cross_entropy(logits, y, reduction="none")


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Logit margin ``max_{i != y} z_i - z_y`` of each sample; positive means misclassified.

    Args:
        logits: ``[N, C]``.
        y: ``[N]`` true labels.

    Returns:
        ``[N]`` margins in logit units.
    """
    _check(logits, y)
    return _max_other(logits, y) - _true_logit(logits, y)


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Untargeted DLR loss of each sample (Croce & Hein 2020, eq. 5); see the module docstring.

    Args:
        logits: ``[N, C]``; ``C >= 3`` for true DLR, ``C == 2`` falls back to ``margin_loss``.
        y: ``[N]`` true labels.

    Returns:
        ``[N]`` losses (dimensionless for ``C >= 3``; logit units for the 2-class fallback).
    """
    _check(logits, y)
    if logits.shape[1] == 2:
        return margin_loss(logits, y)
    top = logits.sort(dim=1, descending=True).values
    return margin_loss(logits, y) / (top[:, 0] - top[:, 2] + _DENOM_FLOOR)


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR loss of each sample (Croce & Hein 2020, eq. 6); see the module docstring.

    Args:
        logits: ``[N, C]``; ``C >= 4`` for true targeted DLR, fewer classes use the fallbacks.
        y: ``[N]`` true labels.
        target: ``[N]`` target labels (should differ from ``y``).

    Returns:
        ``[N]`` losses; maximising them pushes ``z_target`` above ``z_y``.
    """
    _check(logits, y)
    if target.shape != y.shape:
        raise ValueError(f"target must have shape [N] = [{y.shape[0]}], got {list(target.shape)}")
    diff = _true_logit(logits, target) - _true_logit(logits, y)
    n_classes = logits.shape[1]
    if n_classes == 2:
        return diff
    top = logits.sort(dim=1, descending=True).values
    if n_classes == 3:
        return diff / (top[:, 0] - top[:, 2] + _DENOM_FLOOR)
    return diff / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DENOM_FLOOR)


def get_loss(name: str):
    """The untargeted loss function called ``name`` (``"ce"`` or ``"dlr"``)."""
    losses = {"ce": ce_loss, "dlr": dlr_loss}
    if not isinstance(name, str) or name.lower() not in losses:
        raise ValueError(f"unknown loss {name!r}: use one of {', '.join(losses)}")
    return losses[name.lower()]
