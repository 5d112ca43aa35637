"""Small "bring your own model" models for the tests: what a user would write, not auditkit's zoo.

Importable as ``tests.byom_models:Class`` (the --arch form) from the repository root. Each
trains in a second or two on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class SmallResNet(nn.Module):
    """A CNN with BatchNorm and one residual block: ``[N, C, H, W]`` → logits ``[N, classes]``."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.block = ResBlock(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.stem(x))
        return self.head(h.mean(dim=(2, 3)))


class MLP(nn.Module):
    """Tabular MLP on standardised inputs: ``[N, F]`` raw features → ``[N, outputs]``.

    ``outputs=1`` gives one logit per sample (binary, sigmoid), as many users train them.
    """

    def __init__(self, n_features: int = 30, outputs: int = 2, mean: list[float] | None = None,
                 std: list[float] | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean or [0.0] * n_features))
        self.register_buffer("std", torch.tensor(std or [1.0] * n_features))
        self.net = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class TextLSTM(nn.Module):
    """Token ids ``[N, L]`` → logits ``[N, classes]``: embedding, LSTM, mean over non-pad tokens."""

    def __init__(self, vocab_size: int = 50, num_classes: int = 2, dim: int = 16, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embedding(tokens))
        mask = (tokens != self.pad_id).unsqueeze(-1).float()
        return self.head((h * mask).sum(1) / mask.sum(1).clamp_min(1.0))


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int = 60, lr: float = 1e-2,
        binary_logit: bool = False) -> nn.Module:
    """Full-batch Adam on ``(x, y)``; returns the model in eval mode."""
    torch.manual_seed(0)
    xt = torch.tensor(np.asarray(x))  # a copy: arrays loaded from npz are read-only
    yt = torch.tensor(np.asarray(y))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        out = model(xt)
        if binary_logit:
            loss = nn.functional.binary_cross_entropy_with_logits(out[:, 0], yt.float())
        else:
            loss = nn.functional.cross_entropy(out, yt)
        loss.backward()
        opt.step()
    return model.eval()
