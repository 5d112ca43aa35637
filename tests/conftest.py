"""Shared fixtures: the committed zoo artifacts, a helper to run the real CLI in a subprocess and a
model wrapper that counts forward passes."""

from __future__ import annotations

import os
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"
ARTIFACTS = REPO / "test-artifacts"

torch.set_num_threads(1)

# Baseline caches go to a per-session folder (inherited by CLI subprocesses), never the user's.
os.environ.setdefault("AUDITKIT_CACHE_DIR", tempfile.mkdtemp(prefix="auditkit-test-cache-"))


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m auditkit.cli ARGS`` in a subprocess, as a user would."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "auditkit.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or REPO,
    )


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep files worth looking at after a run (screenshots, reports)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def zoo_model_path(name: str) -> Path:
    path = ZOO / name / "model.pt"
    if not path.exists():
        pytest.fail(f"committed zoo artifact {path} is missing; run `make zoo`")
    return path


class Counting(nn.Module):
    """Wraps a model and records the batch size of every forward pass (``batches``)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batches.append(x.shape[0])
        return self.inner(x)
