"""Worker for tests/test_trainer.py::test_ddp_two_processes_gloo.

Run as ``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUTDIR``.
Each rank trains (1) a tiny linear classifier and (2) a tiny GAN whose discriminator has
BatchNorm and is called twice per backward, both through ``fit`` on the CPU with gloo, and
writes ``OUTDIR/rank{r}.pt`` with its final weights, the samples it stepped on and the history.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from auditkit.training import ClassifierTask, StepContext, TrainConfig, fit


class CountingClassifier(ClassifierTask):
    """ClassifierTask that records how many samples this rank stepped on."""

    def __init__(self, model: nn.Module, **kwargs: float):
        super().__init__(model, **kwargs)
        self.samples = 0

    def training_step(self, batch: tuple[Tensor, ...], ctx: StepContext) -> dict[str, float]:
        self.samples += int(batch[0].shape[0])
        return super().training_step(batch, ctx)


class TinyGAN:
    def __init__(self) -> None:
        self.generator = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
        self.modules = {"generator": self.generator, "discriminator": self.discriminator}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=1e-2),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=1e-2),
        }

    def training_step(self, batch: tuple[Tensor, ...], ctx: StepContext) -> dict[str, float]:
        real = batch[0]
        gen, disc = ctx.modules["generator"], ctx.modules["discriminator"]
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = gen(torch.randn(real.shape[0], 2))
        d_real, d_fake = disc(real), disc(fake.detach())
        d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        ctx.step(d_loss, "discriminator")
        d_gen = disc(fake)
        g_loss = bce(d_gen, torch.ones_like(d_gen))
        ctx.step(g_loss, "generator")
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    # Different initial weights per rank: DDP must broadcast rank 0's so that the ranks agree.
    torch.manual_seed(100 + rank)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = nn.Linear(4, 2)
    task = CountingClassifier(model, lr=0.1)
    config = TrainConfig(epochs=2, batch_size=8, seed=3, progress=False, checkpoint_path=out / "clf.ckpt")
    result = fit(task, TensorDataset(x, y), config)

    gan = TinyGAN()
    gan_result = fit(gan, TensorDataset(torch.randn(32, 2, generator=g) + 2.0), TrainConfig(epochs=1, batch_size=8, progress=False))
    torch.save(
        {
            "weights": {k: v.clone() for k, v in model.state_dict().items()},
            "gan_weights": {
                name: {k: v.detach().clone() for k, v in m.named_parameters()} for name, m in gan.modules.items()
            },
            "samples": task.samples,
            "history": result.history,
            "gan_history": gan_result.history,
            "world_size": result.world_size,
            # fit created the group and keeps it for the second fit; it is destroyed at exit.
            "group_alive": torch.distributed.is_initialized(),
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
