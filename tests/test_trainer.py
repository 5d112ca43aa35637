"""Tests of the shared training loop (auditkit/training.py), all on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from auditkit.training import (
    CheckpointError,
    ClassifierTask,
    StepContext,
    TrainConfig,
    TrainResult,
    fit,
    predict_logits,
    resolve_device,
    seed_everything,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def blobs(n: int = 96, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two well-separated Gaussian blobs in 2-D: x [n, 2] float32, y [n] int64."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.5 + (y[:, None] * 2 - 1) * torch.tensor([2.0, 2.0])
    return x, y


def mlp(seed: int = 0, dropout: float = 0.2) -> nn.Module:
    """Tiny MLP with dropout, so that the global RNG matters for determinism and resume."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=16, device="cpu", progress=False)
    base.update(kw)
    return TrainConfig(**base)


def weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(seed: int = 0, **kw) -> tuple[nn.Module, TrainResult]:
    model = mlp()
    result = fit(ClassifierTask(model, lr=1e-2), TensorDataset(*blobs()), cfg(seed=seed, **kw))
    return model, result


# ----------------------------------------------------------------------------- devices, seeds


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_resolve_device_cuda_unavailable_is_clear():
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available; use --device cpu"):
            resolve_device(name)
    with pytest.raises(ValueError, match="CUDA is not available"):
        fit(ClassifierTask(mlp()), TensorDataset(*blobs()), cfg(device="cuda"))


def test_seed_everything_repeats_all_generators():
    import random

    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    with pytest.raises(ValueError, match="seed must be an integer"):
        seed_everything(-1)


# ----------------------------------------------------------------------------- determinism


def test_cpu_runs_are_deterministic_per_seed():
    m1, r1 = train(seed=0)
    m2, r2 = train(seed=0)
    m3, _ = train(seed=1)
    assert same(weights(m1), weights(m2))
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]
    assert not same(weights(m1), weights(m3))


def test_fit_restores_global_settings_and_leaves_eval_mode():
    prev_det = torch.are_deterministic_algorithms_enabled()
    model, result = train(num_threads=2)
    assert torch.are_deterministic_algorithms_enabled() == prev_det
    assert torch.get_num_threads() == 1  # the fixture's value, restored after num_threads=2
    assert not model.training
    assert result.device == "cpu" and result.world_size == 1
    assert result.epochs_run == 2 and result.resumed_from_epoch is None
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert all({"loss", "accuracy", "lr", "seconds"} <= h.keys() for h in result.history)


# ----------------------------------------------------------------------------- classifier


def test_classifier_task_learns_separable_blobs():
    x, y = blobs(200, seed=1)
    model = mlp(dropout=0.0)
    result = fit(ClassifierTask(model, lr=2e-2), TensorDataset(x, y), cfg(epochs=10, batch_size=32))
    logits = predict_logits(model, x.numpy())
    assert (logits.argmax(1) == y.numpy()).mean() > 0.95
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_classifier_class_weights_smoothing_and_cosine():
    x, y = blobs()
    task = ClassifierTask(mlp(), lr=1e-2, class_weights=torch.tensor([1.0, 3.0]), label_smoothing=0.1, cosine=True)
    result = fit(task, TensorDataset(x, y), cfg(epochs=4))
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] == pytest.approx(1e-2)
    assert lrs[2] == pytest.approx(0.5e-2)  # 0.5 * (1 + cos(pi * 2/4))
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] > 0


def test_classifier_bad_inputs():
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassifierTask(mlp(), label_smoothing=1.0)
    with pytest.raises(ValueError, match="class_weights must be a 1-D"):
        ClassifierTask(mlp(), class_weights=torch.ones(2, 2))
    with pytest.raises(ValueError, match="lr must be positive"):
        ClassifierTask(mlp(), lr=0.0)
    task = ClassifierTask(mlp(), class_weights=torch.ones(3))
    with pytest.raises(ValueError, match="class_weights has 3 entries but the model has 2 classes"):
        fit(task, TensorDataset(*blobs()), cfg())
    with pytest.raises(ValueError, match="needs batches"):
        fit(ClassifierTask(mlp()), TensorDataset(blobs()[0]), cfg())


def test_fit_bad_config_and_data():
    data = TensorDataset(*blobs())
    task = ClassifierTask(mlp())
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fit(task, data, cfg(batch_size=0))
    with pytest.raises(ValueError, match="epochs must be a non-negative integer"):
        fit(task, data, cfg(epochs=-1))
    with pytest.raises(ValueError, match="resume=True needs checkpoint_path"):
        fit(task, data, cfg(resume=True))
    with pytest.raises(ValueError, match="train_set is empty"):
        fit(task, TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), cfg())
    with pytest.raises(ValueError, match="leaves no batch"):
        fit(task, data, cfg(batch_size=1000, drop_last=True))
    with pytest.raises(TypeError, match="is not a TrainTask"):
        fit(object(), data, cfg())  # type: ignore[arg-type]


def test_optimizer_over_foreign_parameters_is_refused():
    class Foreign(ClassifierTask):
        def configure_optimizers(self):
            return {"model": torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)}

    with pytest.raises(ValueError, match="not in task.modules"):
        fit(Foreign(mlp()), TensorDataset(*blobs()), cfg())


# ----------------------------------------------------------------------------- checkpoints


def test_resume_is_bit_identical_to_uninterrupted(tmp_path: Path):
    ckpt = tmp_path / "run" / "train.ckpt"
    straight, r_straight = train(epochs=4)

    first, r_first = train(epochs=2, checkpoint_path=ckpt)
    assert r_first.epochs_run == 2 and ckpt.exists()
    assert not list(ckpt.parent.glob("*.tmp"))  # atomic write leaves no temporary file

    # A fresh model with different initial weights: everything must come from the checkpoint.
    model = mlp(seed=123)
    task = ClassifierTask(model, lr=1e-2)
    resumed = fit(task, TensorDataset(*blobs()), cfg(epochs=4, checkpoint_path=ckpt, resume=True))
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 2
    assert same(weights(model), weights(straight))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in r_straight.history]
    # Optimizer state carried over too (AdamW step count after 4 epochs of 6 batches).
    assert int(task.optimizer.state_dict()["state"][0]["step"]) == 4 * 6


def test_checkpoint_is_plain_data(tmp_path: Path):
    ckpt = tmp_path / "train.ckpt"
    train(epochs=1, checkpoint_path=ckpt)
    payload = torch.load(ckpt, weights_only=True)
    assert payload["epoch"] == 1
    assert set(payload) >= {"modules", "optimizers", "scalers", "rng", "history"}
    assert set(payload["rng"]) == {"torch", "cuda", "numpy", "python"}


def test_resume_from_complete_checkpoint_runs_zero_epochs(tmp_path: Path):
    ckpt = tmp_path / "train.ckpt"
    done, _ = train(epochs=2, checkpoint_path=ckpt)
    model = mlp(seed=7)
    result = fit(ClassifierTask(model), TensorDataset(*blobs()), cfg(epochs=2, checkpoint_path=ckpt, resume=True))
    assert result.epochs_run == 0 and result.resumed_from_epoch == 2
    assert len(result.history) == 2
    assert same(weights(model), weights(done))


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path):
    ckpt = tmp_path / "missing.ckpt"
    _, result = train(epochs=1, checkpoint_path=ckpt, resume=True)
    assert result.resumed_from_epoch is None and result.epochs_run == 1 and ckpt.exists()


def test_corrupted_or_mismatched_checkpoint_is_clear(tmp_path: Path):
    ckpt = tmp_path / "train.ckpt"
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="unreadable.*delete it or set resume=False"):
        train(checkpoint_path=ckpt, resume=True)

    torch.save({"weights": torch.zeros(2)}, ckpt)
    with pytest.raises(CheckpointError, match="not an auditkit training checkpoint"):
        train(checkpoint_path=ckpt, resume=True)

    train(epochs=1, checkpoint_path=ckpt)
    with pytest.raises(CheckpointError, match="seed=0 but config.seed=1"):
        train(seed=1, checkpoint_path=ckpt, resume=True)
    wide = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
    with pytest.raises(CheckpointError, match="does not fit the task"):
        fit(ClassifierTask(wide), TensorDataset(*blobs()), cfg(checkpoint_path=ckpt, resume=True))
    # Truncated file, as after a crash of a non-atomic writer.
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="unreadable"):
        train(checkpoint_path=ckpt, resume=True)


# ----------------------------------------------------------------------------- two optimizers


class TinyGAN:
    """Generator 2→2 and discriminator 2→1 with one optimizer each, stepped D then G."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.modules = {
            "generator": nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)),
            "discriminator": nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {name: torch.optim.Adam(m.parameters(), lr=1e-2) for name, m in self.modules.items()}

    def training_step(self, batch: tuple[Tensor, ...], ctx: StepContext) -> dict[str, float]:
        real = batch[0]
        gen, disc = ctx.modules["generator"], ctx.modules["discriminator"]
        bce = nn.functional.binary_cross_entropy_with_logits
        with ctx.autocast():
            fake = gen(torch.randn(real.shape[0], 2, device=ctx.device))
            d_real, d_fake = disc(real), disc(fake.detach())
            d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        ctx.step(d_loss, "discriminator")
        with ctx.autocast():
            d_gen = disc(fake)
            g_loss = bce(d_gen, torch.ones_like(d_gen))
        ctx.step(g_loss, "generator", max_grad_norm=1.0)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def test_two_optimizer_gan_task():
    gan = TinyGAN()
    before = {name: weights(m) for name, m in gan.modules.items()}
    real = torch.randn(64, 2) * 0.3 + torch.tensor([3.0, -1.0])
    result = fit(gan, TensorDataset(real), cfg(epochs=3))
    for h in result.history:
        assert np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"])
    for name, m in gan.modules.items():
        assert not same(weights(m), before[name]), f"{name} did not change"


def test_step_unknown_optimizer_and_bad_loss():
    class Wrong(TinyGAN):
        def training_step(self, batch, ctx):
            loss = ctx.modules["generator"](batch[0]).pow(2).mean()
            ctx.step(loss, "gen")
            return {}

    with pytest.raises(ValueError, match="unknown optimizer 'gen'.*discriminator, generator"):
        fit(Wrong(), TensorDataset(torch.randn(8, 2)), cfg())

    class NonScalar(TinyGAN):
        def training_step(self, batch, ctx):
            ctx.step(ctx.modules["generator"](batch[0]), "generator")
            return {}

    with pytest.raises(ValueError, match="scalar tensor"):
        fit(NonScalar(), TensorDataset(torch.randn(8, 2)), cfg())


# ----------------------------------------------------------------------------- predict_logits


def test_predict_logits_batches_and_restores_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 4))
    model.train()
    x = np.random.default_rng(0).normal(size=(10, 3))  # float64 on purpose
    calls: list[int] = []
    model.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    running_mean = model[1].running_mean.clone()

    out = predict_logits(model, x, batch_size=3)
    assert out.dtype == np.float32 and out.shape == (10, 4)
    assert calls == [3, 3, 3, 1]
    assert model.training  # restored
    assert torch.equal(model[1].running_mean, running_mean)  # eval mode: BN stats untouched
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # An eval model stays in eval; tensors are accepted too.
    np.testing.assert_allclose(predict_logits(model, torch.from_numpy(x), batch_size=512), out, rtol=1e-5, atol=1e-6)
    assert not model.training


def test_predict_logits_bad_inputs():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predict_logits(model, np.zeros((4, 3)), batch_size=0)
    with pytest.raises(ValueError, match="non-empty batch"):
        predict_logits(model, np.zeros((0, 3)))
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        predict_logits(model, [[0.0, 0.0, 0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"needs logits \[N, C\]"):
        predict_logits(nn.Flatten(0), np.zeros((4, 3)))


# ----------------------------------------------------------------------------- DDP


def test_ddp_two_processes_gloo(tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO / "tests" / "ddp_worker.py"), str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    # The ranks started from different weights; DDP made them agree and keep agreeing.
    assert same(r0["weights"], r1["weights"])
    # 64 samples split by DistributedSampler: 32 per rank per epoch, 2 epochs.
    assert r0["samples"] == r1["samples"] == 2 * 32
    assert r0["world_size"] == r1["world_size"] == 2
    # Logged losses are all-reduced, so every rank reports the same history; and it learned.
    assert [h["loss"] for h in r0["history"]] == [h["loss"] for h in r1["history"]]
    assert r0["history"][1]["loss"] < r0["history"][0]["loss"]
    # Rank 0 wrote the checkpoint; it matches the final weights.
    ckpt = torch.load(tmp_path / "clf.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2 and same(ckpt["modules"]["model"], r0["weights"])
    # The GAN (BatchNorm discriminator called twice per backward) trains under DDP as well.
    for name in ("generator", "discriminator"):
        assert same(r0["gan_weights"][name], r1["gan_weights"][name])
    assert np.isfinite(r0["gan_history"][0]["d_loss"])
    assert r0["group_alive"]
