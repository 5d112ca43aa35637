"""Zoo architectures, registered by name so that a card's ``architecture`` rebuilds them.

Every module here is eager and uses ``nn.ReLU`` modules (never functional ReLU, never reused)
so that layer hooks work: Grad-CAM, guided backpropagation and layer IG need them.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

ArchBuilder = Callable[..., nn.Module]
_ARCHITECTURES: dict[str, ArchBuilder] = {}


def register_architecture(name: str) -> Callable[[ArchBuilder], ArchBuilder]:
    """Register a builder under a stable lower-case, hyphenated name."""

    def deco(fn: ArchBuilder) -> ArchBuilder:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = fn
        return fn

    return deco


def list_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def build_architecture(name: str, **kwargs: object) -> nn.Module:
    """Build a registered architecture with random weights."""
    try:
        builder = _ARCHITECTURES[name]
    except KeyError:
        raise KeyError(
            f"unknown architecture {name!r}; known: {', '.join(list_architectures())}"
        ) from None
    return builder(**kwargs)


class DigitsCNN(nn.Module):
    """Small CNN for 8x8 grey digits.

    Input ``[N, 1, 8, 8]`` float in [0, 1] (normalised inside); output ``[N, num_classes]`` logits.
    ``gradcam_layer`` (the last conv) is the Grad-CAM layer.
    """

    __jit_unused_properties__ = ["gradcam_layer"]  # keeps the class scriptable

    def __init__(self, num_classes: int = 10, width: int = 32, mean: float = 0.3, std: float = 0.35):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 2x2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 4, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.features[5]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, 128]`` (used for Fréchet distances)."""
        h = self.features((x - self.mean) / self.std)
        return self.classifier[:3](h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features((x - self.mean) / self.std))


class ReviewsLSTM(nn.Module):
    """Embedding + bidirectional LSTM sentiment classifier.

    Input ``[N, L]`` int64 token ids, right-padded with ``pad_id``; output ``[N, num_classes]``
    logits. Pooling is a masked mean over non-pad positions. ``embedding`` is the layer for
    layer integrated gradients.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        num_classes: int = 2,
        embed_dim: int = 32,
        hidden: int = 64,
    ):
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward_embedded(self, emb: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits from embeddings ``[N, L, E]``; ``tokens`` ``[N, L]`` gives the padding mask."""
        out, _ = self.lstm(emb)
        mask = (tokens != self.pad_id).unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_embedded(self.embedding(tokens), tokens)


class TabularMLP(nn.Module):
    """MLP over raw tabular features; scaling and one-hot encoding happen inside.

    Input ``[N, F]`` float in the features' own units (categoricals as integer codes);
    output ``[N, num_classes]`` logits. ``log_features`` are passed through ``log1p`` before
    standardisation (heavy-tailed amounts). The scaling statistics are buffers, fitted by
    :meth:`fit_scaler` before training and saved in the state_dict.

    Encoded space (the optional tabular protocol of :mod:`auditkit.explain.methods`):
    ``encode(x)`` maps ``[N, F]`` raw features to the network's input ``[N, D]`` (standardised
    numeric columns in ``numeric`` order, then each categorical's one-hot columns in
    ``categorical`` order), ``forward_encoded(z)`` gives the logits from it, and
    ``encoded_feature_index`` (length ``D``) names the raw feature of each encoded column.
    Gradient attributions run there and are summed per feature: the one-hot has no gradient
    w.r.t. the integer code, so in raw space a categorical feature would always score 0.
    ``encoded_feature_index`` is a plain list attribute (not a buffer): the state_dict, and so
    ``model.pt``, is unchanged, and the class stays scriptable (as before, only with
    non-empty ``log_features``: TorchScript cannot type an empty list attribute).
    """

    def __init__(
        self,
        num_features: int,
        categorical: dict[str, int] | None = None,
        log_features: list[int] | None = None,
        num_classes: int = 2,
        hidden: int = 64,
    ):
        super().__init__()
        # Keys are str because cards are JSON; values are the number of categories.
        self.categorical = {int(k): int(v) for k, v in (categorical or {}).items()}
        self.numeric = [i for i in range(num_features) if i not in self.categorical]
        self.log_features = list(log_features or [])
        self.register_buffer("mean", torch.zeros(len(self.numeric)))
        self.register_buffer("std", torch.ones(len(self.numeric)))
        # Raw feature of each encoded column, in exactly the order encode() concatenates them.
        self.encoded_feature_index = list(self.numeric) + [
            i for i, n in self.categorical.items() for _ in range(n)
        ]
        width = len(self.encoded_feature_index)
        self.net = nn.Sequential(
            nn.Linear(width, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def _numeric(self, x: torch.Tensor) -> torch.Tensor:
        cols = x[:, self.numeric]
        if self.log_features:
            idx = [self.numeric.index(i) for i in self.log_features]
            cols = cols.clone()
            cols[:, idx] = torch.log1p(cols[:, idx].clamp_min(0))
        return cols

    @torch.no_grad()
    def fit_scaler(self, x: torch.Tensor) -> None:
        cols = self._numeric(x)
        self.mean.copy_(cols.mean(0))
        self.std.copy_(cols.std(0).clamp_min(1e-6))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features ``[N, F]`` → the network's input ``[N, D]`` (columns as in
        ``encoded_feature_index``)."""
        parts = [(self._numeric(x) - self.mean) / self.std]
        for i, n in self.categorical.items():
            # Codes are rounded: the one-hot has no gradient w.r.t. the code, by nature (gradient
            # attributions therefore run on the encoded columns, see the class docstring).
            code = x[:, i].round().long().clamp(0, n - 1)
            parts.append(nn.functional.one_hot(code, n).to(x.dtype))
        return torch.cat(parts, dim=1)

    def forward_encoded(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` from encoded inputs ``[N, D]`` (the output of ``encode``)."""
        return self.net(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_encoded(self.encode(x))


class DigitsGenerator(nn.Module):
    """DCGAN-style generator: latent ``[N, latent_dim]`` → images ``[N, 1, 8, 8]`` in [0, 1]."""

    def __init__(self, latent_dim: int = 32, width: int = 64):
        super().__init__()
        self.latent_dim = latent_dim
        self.project = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * 2 * 2), nn.BatchNorm1d(2 * width * 4), nn.ReLU()
        )
        self.width = width
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),  # 4x4
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),  # 8x8
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(-1, 2 * self.width, 2, 2)
        return self.deconv(h)


class DigitsDiscriminator(nn.Module):
    """DCGAN-style discriminator: images ``[N, 1, 8, 8]`` → realness logit ``[N, 1]``."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),  # 4x4
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),  # 2x2
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * 4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


class DigitsGAN(nn.Module):
    """Generator and discriminator in one artifact. ``forward(z)`` generates images."""

    def __init__(self, latent_dim: int = 32, width: int = 64):
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = DigitsGenerator(latent_dim, width)
        self.discriminator = DigitsDiscriminator(width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


register_architecture("cnn-digits")(DigitsCNN)
register_architecture("lstm-reviews")(ReviewsLSTM)
register_architecture("tabular-mlp")(TabularMLP)
register_architecture("gan-digits")(DigitsGAN)
