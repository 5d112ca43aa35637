"""A randomised test model: the zoo's digits CNN behind Gaussian input noise at inference.

Random input noise at test time is a common (weak) defence: every forward pass draws fresh noise,
in eval mode too, so a single pass gives a noisy gradient and a noisy answer. auditkit must find
the forward non-deterministic before attacking and evaluate it with EOT (AutoAttack's "rand"
version). Importable as ``--arch tests.randomised_models:NoisyCNN`` with the weights of
``zoo/cnn-digits/model.pt`` (same parameter names as ``DigitsCNN``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from auditkit.zoo.models import DigitsCNN

SIGMA = 0.2  # noise std in input units (pixels in [0, 1])


class NoisyCNN(DigitsCNN):
    """``DigitsCNN`` that adds ``N(0, sigma^2)`` noise to its input on every forward pass.

    Input ``[N, 1, 8, 8]`` in [0, 1]; output ``[N, num_classes]`` logits. The noise is drawn
    from torch's global generator, so ``torch.manual_seed`` makes a run reproducible.
    """

    def __init__(self, num_classes: int = 10, sigma: float = SIGMA, **kwargs: object) -> None:
        super().__init__(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x + self.sigma * torch.randn_like(x))
