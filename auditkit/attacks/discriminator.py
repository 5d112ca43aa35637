"""How easily a GAN's discriminator is fooled: small Linf changes that flip its real/fake call.

The discriminator's realness logit ``d(x)`` (``> 0``: judged real) is wrapped as a two-class
classifier with logits ``[0, d(x)]`` (class 0 = fake, class 1 = real), so that
:class:`auditkit.attacks.apgd.APGD` (Croce & Hein 2020) attacks it unchanged: real images are
pushed towards "fake" and generated images towards "real". Its cross-entropy is then exactly the
GAN's own discriminator loss, ``softplus(-d)`` for real and ``softplus(d)`` for fake.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from auditkit.attacks.apgd import APGD
from auditkit.attacks.common import AttackOutput, check_positive_int, eval_mode
from auditkit.stats import proportion

FAKE, REAL = 0, 1


class RealFakeClassifier(nn.Module):
    """A discriminator ``[N, ...] -> [N, 1]`` realness logit as logits ``[N, 2]`` = ``[0, d]``.

    ``argmax`` is class 1 (real) exactly when ``d > 0``, the threshold used throughout.
    """

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: Tensor) -> Tensor:
        d = self.discriminator(x).reshape(x.shape[0], -1)
        if d.shape[1] != 1:
            raise ValueError(f"the discriminator must return one realness logit per image "
                             f"([N, 1]), got {list(d.shape)}")
        return torch.cat([torch.zeros_like(d), d], dim=1)


def _discriminator(gan: nn.Module) -> nn.Module:
    """``gan.discriminator`` if it has one, else ``gan`` itself (a bare discriminator)."""
    disc = getattr(gan, "discriminator", gan)
    if not isinstance(disc, nn.Module):
        raise ValueError("pass a GAN with a '.discriminator' module, or the discriminator itself")
    return disc


def attack_discriminator(
    gan: nn.Module,
    x: Tensor,
    judged: int,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    steps: int = 20,
    seed: int = 0,
) -> AttackOutput:
    """APGD (cross-entropy, Linf) against the discriminator's call on ``x``.

    Args:
        gan: GAN with ``.discriminator`` (images -> realness logit ``[N, 1]``), or the
            discriminator itself; runs in eval mode.
        x: ``[N, C, H, W]`` images inside ``bounds``.
        judged: the call the attack fights: ``REAL`` (1) pushes towards "fake", ``FAKE`` (0)
            towards "real".
        eps: Linf radius in pixel units.
        bounds: valid pixel range.
        steps: APGD iterations.
        seed: seed of APGD's random start.

    Returns:
        AttackOutput: ``x_adv [N, C, H, W]`` within ``eps`` and ``bounds``; ``success`` bool
        ``[N]``: the call is not ``judged`` at ``x_adv`` (also where it was not clean).
    """
    if judged not in (FAKE, REAL):
        raise ValueError(f"judged must be {FAKE} (fake) or {REAL} (real), got {judged!r}")
    clf = RealFakeClassifier(_discriminator(gan))
    y = torch.full((x.shape[0],), judged, dtype=torch.long, device=x.device)
    return APGD(norm="linf", loss="ce", n_iter=steps, seed=seed).run(clf, x, y, eps, bounds)


def discriminator_attack(
    gan: nn.Module,
    real: Tensor,
    fake: Tensor,
    eps_list: list[float],
    bounds: tuple[float, float] = (0.0, 1.0),
    steps: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Fraction of real images judged real and of generated images judged fake, per Linf eps.

    Args:
        gan: GAN with ``.discriminator`` (realness logit ``[N, 1]``) or the discriminator.
        real: ``[N, C, H, W]`` real images in ``bounds``.
        fake: ``[M, C, H, W]`` generated images in ``bounds``.
        eps_list: Linf radii in pixel units (0 = the clean discriminator).
        bounds: valid pixel range.
        steps: APGD iterations per eps.
        seed: seed of APGD's random starts.

    Returns:
        JSON-able dict: ``curve`` ``[{"eps", "real_judged_real": proportion, "fake_judged_fake":
        proportion}]`` (value, Wilson 95% ci_low/ci_high, n), eps ascending; ``clean_mean_logit``
        ``{"real", "fake"}``; ``threshold`` (0 on the logit); ``note``; ``params``. An image fooled
        at a smaller eps counts as fooled at every larger one (the point lies inside that ball).
    """
    if not eps_list:
        raise ValueError("eps_list is empty: give at least one Linf radius, e.g. [0, 0.01, 0.03]")
    for e in eps_list:
        if not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise ValueError(f"eps values must be finite numbers >= 0, got {e!r}")
    check_positive_int("steps", steps)
    for name, t in (("real", real), ("fake", fake)):
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() < 2:
            raise ValueError(f"{name} must be a floating-point image tensor [N, C, H, W]")
    disc = _discriminator(gan)
    real, fake = real.detach(), fake.detach()
    with torch.no_grad(), eval_mode(disc):
        clean = {"real": float(disc(real).mean()) if len(real) else None,
                 "fake": float(disc(fake).mean()) if len(fake) else None}
    fooled_real = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    fooled_fake = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
    curve = []
    for eps in sorted(float(e) for e in eps_list):
        fooled_real |= attack_discriminator(gan, real, REAL, eps, bounds, steps, seed).success
        fooled_fake |= attack_discriminator(gan, fake, FAKE, eps, bounds, steps, seed).success
        curve.append({
            "eps": eps,
            "real_judged_real": proportion(int((~fooled_real).sum()), len(real)),
            "fake_judged_fake": proportion(int((~fooled_fake).sum()), len(fake)),
        })
    return {
        "curve": curve,
        "clean_mean_logit": clean,
        "threshold": 0.0,
        "note": ("APGD-CE (Linf) on the discriminator's realness logit: real images pushed "
                 "towards 'fake', generated ones towards 'real'; judged real iff logit > 0"),
        "params": {"eps_list": sorted(float(e) for e in eps_list), "steps": steps, "seed": seed,
                   "bounds": list(bounds), "norm": "linf"},
    }
