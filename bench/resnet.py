"""A "foreign" 16x16 BatchNorm ResNet for the benchmarks: a model auditkit's zoo does not know.

:func:`build_resnet16` trains a small ResNet (BatchNorm, three residual stages 16-32-64 wide)
on scikit-learn's digits upsampled to 16x16 with three tinted colour channels, seeded, in about
ten seconds on one CPU thread, and writes what a user would bring: the weights
(a state_dict, loaded with ``--arch bench.resnet:ResNet16``), a card beside them and the data
as an npz archive. Nothing is downloaded.

    from bench.resnet import build_resnet16
    spec = build_resnet16(Path("out/resnet16"))
    auditkit.scan(spec.model, spec.data, arch=spec.arch, samples=128)

or from the command line (repository root on the path: ``--arch`` imports this module)::

    .venv/bin/python bench/resnet.py out/resnet16
    .venv/bin/auditkit scan out/resnet16/model.pt --arch bench.resnet:ResNet16 \\
        --data npz:out/resnet16/digits16.npz
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ARCH = "bench.resnet:ResNet16"
TINT = (1.0, 0.7, 0.4)  # per-channel gain: three channels that are not copies of one another


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut, as in He et al. 2016."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules, so guided backprop and DeepLIFT see them
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet16(nn.Module):
    """``[N, 3, 16, 16]`` in [0, 1] → logits ``[N, num_classes]``; 16x16 → 8x8 → 4x4 stages."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(h.mean(dim=(2, 3)))


@dataclass(frozen=True)
class ResNetSpec:
    """What :func:`auditkit.scan` needs: ``scan(spec.model, spec.data, arch=spec.arch)``."""

    model: Path  # state_dict, with model.card.json beside it
    data: str  # "npz:PATH" with x_train, y_train, x_test, y_test
    arch: str = ARCH
    test_accuracy: float = float("nan")


def digits16(seed: int = 0) -> dict[str, np.ndarray]:
    """auditkit's digits split (8x8 in [0, 1]) upsampled bilinearly to 16x16, tinted to 3 channels."""
    from auditkit.data import load_data

    d = load_data("digits")
    tint = torch.tensor(TINT).reshape(1, 3, 1, 1)

    def up(x: np.ndarray) -> np.ndarray:
        x16 = F.interpolate(torch.from_numpy(x), size=(16, 16), mode="bilinear", align_corners=False)
        return (x16 * tint).clamp(0, 1).numpy().astype(np.float32)

    return {"x_train": up(d.x_train), "y_train": d.y_train.astype(np.int64),
            "x_test": up(d.x_test), "y_test": d.y_test.astype(np.int64)}


def build_resnet16(out_dir: Path, seed: int = 0, epochs: int = 8) -> ResNetSpec:
    """Train :class:`ResNet16` on :func:`digits16` and write ``out_dir/model.pt`` (state_dict),
    ``out_dir/model.card.json`` and ``out_dir/digits16.npz``. Reuses them when already there
    with the same seed and epochs. Adam, batch 64, seeded; about 92% test accuracy (8 epochs, ~10 s)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, card_path, data_path = out_dir / "model.pt", out_dir / "model.card.json", out_dir / "digits16.npz"
    meta_path = out_dir / "train.json"
    key = {"seed": seed, "epochs": epochs}
    if model_path.is_file() and card_path.is_file() and data_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in key} == key:
            return ResNetSpec(model_path, f"npz:{data_path}", test_accuracy=meta["test_accuracy"])

    data = digits16(seed)
    np.savez(data_path, **data)
    torch.manual_seed(seed)
    model = ResNet16()
    xt, yt = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(data["x_test"])).argmax(1).numpy() == data["y_test"]).mean())
    torch.save(model.state_dict(), model_path)
    card = {
        "name": "resnet16-digits",
        "task": "image-classification",
        "input_shape": [3, 16, 16],
        "input_dtype": "float32",
        "bounds": [0.0, 1.0],
        "class_names": [str(i) for i in range(10)],
        "epsilons": {"linf": [0.0, 0.02, 0.05, 0.1, 0.2], "l2": [0.0, 0.5, 1.0, 2.0, 3.0]},
        "description": "Benchmark ResNet (BatchNorm, 16-32-64) on digits upsampled to 16x16x3.",
    }
    card_path.write_text(json.dumps(card, indent=1))
    meta_path.write_text(json.dumps({**key, "test_accuracy": acc}))
    return ResNetSpec(model_path, f"npz:{data_path}", test_accuracy=acc)


if __name__ == "__main__":
    spec = build_resnet16(Path(sys.argv[1] if len(sys.argv) > 1 else "out/resnet16"))
    print(json.dumps({"model": str(spec.model), "data": spec.data, "arch": spec.arch,
                      "test_accuracy": spec.test_accuracy}))
