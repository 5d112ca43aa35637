"""The one training loop that the zoo and the defenses (adversarial training) share: CPU or CUDA,
single process or DDP.

A *task* owns the modules and says what one step does; :func:`fit` owns everything around it:
devices, seeding, data loading, mixed precision, DistributedDataParallel, checkpoints, progress
and the loss history.

>>> task = ClassifierTask(model, lr=1e-3)
>>> result = fit(task, TensorDataset(x, y), TrainConfig(epochs=5, checkpoint_path="run.ckpt"))
>>> result.history[-1]["loss"]

Launch the same script under ``torchrun --nproc_per_node=K`` to train data-parallel: ``fit``
reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` from the environment. A process group that ``fit``
creates stays up for later ``fit`` calls in the same process and is destroyed at exit.

Written by hand because the loop has to be small, dependency-free and exactly resumable
(bit-identical weights on the CPU); Lightning or Accelerate would bring a large dependency for
the few features used here.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from auditkit.errors import BadInputError

__all__ = [
    "CheckpointError",
    "ClassifierTask",
    "StepContext",
    "TrainConfig",
    "TrainResult",
    "TrainTask",
    "fit",
    "predict_logits",
    "resolve_device",
    "seed_everything",
]

CHECKPOINT_FORMAT = "auditkit-train/1"


class CheckpointError(BadInputError):
    """A training checkpoint cannot be read or does not match the run being resumed."""


@dataclass
class TrainConfig:
    """Settings of one :func:`fit` call. Everything a task does not decide itself."""

    epochs: int = 10
    batch_size: int = 64
    device: str = "auto"  # "auto" (cuda if available else cpu) | "cpu" | "cuda" | "cuda:N"
    seed: int = 0
    amp: bool = True  # autocast (bf16, or fp16 with GradScaler) on CUDA only; ignored on CPU
    channels_last: bool = False  # on CUDA: modules and 4-D floating input batches to channels_last
    checkpoint_path: str | Path | None = None  # written atomically after every epoch, rank 0 only
    resume: bool = False  # continue from checkpoint_path if it exists
    progress: bool = True  # tqdm bar per epoch (rank 0 only) with running losses
    num_threads: int | None = None  # torch.set_num_threads for the duration of fit
    drop_last: bool = False


@dataclass
class TrainResult:
    """What :func:`fit` did.

    ``history`` has one entry per epoch (all epochs, including those restored from a
    checkpoint): the mean over the epoch's steps of each value the task logged (averaged over
    ranks under DDP), plus ``epoch`` (1-based) and ``seconds`` (wall time of that epoch).
    """

    history: list[dict[str, float]]
    device: str
    world_size: int
    epochs_run: int  # epochs run in this call (0 if the checkpoint was already complete)
    resumed_from_epoch: int | None
    seconds: float


class StepContext:
    """What a task's ``training_step`` gets besides the batch.

    ``modules`` are the modules to call for forward passes: DDP-wrapped under ``torchrun``
    (so that gradients are averaged across ranks), the bare modules otherwise. ``epoch`` is
    0-based; ``rank``/``world_size`` describe the process group (0/1 without DDP).
    """

    def __init__(
        self,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        scalers: dict[str, torch.amp.GradScaler],
        device: torch.device,
        amp_dtype: torch.dtype | None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.modules = modules
        self.optimizers = optimizers
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._scalers = scalers
        self._amp_dtype = amp_dtype

    def autocast(self) -> ContextManager[Any]:
        """Mixed-precision region for forward passes; a no-op on the CPU or with ``amp=False``."""
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._amp_dtype)

    def step(self, loss: Tensor, optimizer: str, max_grad_norm: float | None = None) -> None:
        """One update of ``optimizer``: zero its grads, (scaled) backward of ``loss``, step.

        ``loss`` is a scalar tensor. With ``max_grad_norm`` the (unscaled) gradient norm of the
        optimizer's parameters is clipped to it before the step.
        """
        try:
            opt = self.optimizers[optimizer]
        except KeyError:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; configure_optimizers returned: "
                f"{', '.join(sorted(self.optimizers))}"
            ) from None
        if loss.ndim != 0:
            raise ValueError(f"loss must be a scalar tensor, got shape {tuple(loss.shape)}; reduce it with .mean()")
        scaler = self._scalers.get(optimizer)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(_params_of(opt), max_grad_norm)
            opt.step()
        else:
            scaler.scale(loss).backward()
            if max_grad_norm is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(_params_of(opt), max_grad_norm)
            scaler.step(opt)
            scaler.update()


@runtime_checkable
class TrainTask(Protocol):
    """What :func:`fit` trains.

    ``modules`` are the bare modules; ``configure_optimizers`` is called once by ``fit`` (after
    the modules are on the device) and returns optimizers over their parameters;
    ``training_step`` runs forward passes through ``ctx.modules`` inside ``ctx.autocast()``,
    calls ``ctx.step(loss, name)`` once per optimizer update and returns the scalars to log.

    Optional hook: ``on_epoch_start(epoch: int, epochs: int) -> None`` (epoch 0-based) is called
    before each epoch when the task defines it, e.g. for a learning-rate schedule that is a
    pure function of the epoch (so that it resumes exactly without extra state).
    """

    modules: dict[str, nn.Module]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def training_step(self, batch: tuple[Tensor, ...], ctx: StepContext) -> dict[str, float]: ...


# ----------------------------------------------------------------------------- devices, seeds


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA if available else CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:N"``.

    Raises :class:`~auditkit.errors.BadInputError` (a ValueError) when CUDA is asked for but
    unavailable, or the name is unknown.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise BadInputError(f"device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadInputError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
        return dev
    raise BadInputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and all CUDA devices)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise BadInputError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))  # also seeds every CUDA device


def _rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain data only (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), list(py_state), gauss_next],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss_next = state["python"]
    random.setstate((version, tuple(py_state), gauss_next))


def _params_of(opt: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


# ----------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: torch.device) -> tuple[_Dist, torch.device]:
    """Join (or create) the process group when launched by torchrun with WORLD_SIZE > 1."""
    if dist.is_available() and dist.is_initialized():
        info = _Dist(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        backend = "nccl" if device.type == "cuda" else "gloo"
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)  # before init so NCCL binds the right GPU
        dist.init_process_group(backend=backend)
        # Destroyed at exit, not at the end of fit: re-creating the default group in the same
        # process reuses its store keys, and a rank can then read a peer's stale address and
        # hang (seen with gloo). Later fit calls in this process join the group instead.
        atexit.register(_destroy_group)
        info = _Dist(dist.get_rank(), local_rank, dist.get_world_size())
    else:
        return _Dist(), device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return info, device


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _reduce_means(sums: dict[str, float], counts: dict[str, int], info: _Dist) -> dict[str, float]:
    """Mean of every logged value over the steps of all ranks."""
    if info.enabled:
        # Objects, not tensors: ranks may log different keys (e.g. one had no batch).
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, (sums, counts))
        sums, counts = {}, {}
        for s, c in gathered:
            for k in s:
                sums[k] = sums.get(k, 0.0) + s[k]
                counts[k] = counts.get(k, 0) + c[k]
    return {k: sums[k] / counts[k] for k in sorted(sums)}


# ----------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... here
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "delete it or set resume=False to start over"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an auditkit training checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            "point checkpoint_path elsewhere or set resume=False"
        )
    return ckpt


def _restore(
    ckpt: dict[str, Any],
    path: Path,
    task: TrainTask,
    optimizers: dict[str, torch.optim.Optimizer],
    scalers: dict[str, torch.amp.GradScaler],
    config: TrainConfig,
) -> None:
    for what, have, saved in (
        ("modules", task.modules, ckpt["modules"]),
        ("optimizers", optimizers, ckpt["optimizers"]),
    ):
        if set(have) != set(saved):
            raise CheckpointError(
                f"checkpoint {path} has {what} {sorted(saved)} but the task has {sorted(have)}; "
                "resume with the same task or set resume=False"
            )
    for key in ("seed", "batch_size"):
        if ckpt[key] != getattr(config, key):
            raise CheckpointError(
                f"checkpoint {path} was written with {key}={ckpt[key]} but config.{key}={getattr(config, key)}; "
                "resume with the same settings or set resume=False"
            )
    try:
        for name, module in task.modules.items():
            module.load_state_dict(ckpt["modules"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit the task's modules/optimizers ({str(exc).splitlines()[0]}); "
            "resume with the same architecture or set resume=False"
        ) from exc
    # Scaler state only carries over between runs that both use fp16 autocast.
    for name, scaler in scalers.items():
        if name in ckpt["scalers"]:
            scaler.load_state_dict(ckpt["scalers"][name])


# ----------------------------------------------------------------------------- fit


def _validate(task: TrainTask, train_set: Dataset, config: TrainConfig) -> None:
    if not isinstance(task, TrainTask):
        raise TypeError(
            f"{type(task).__name__} is not a TrainTask: it needs a `modules` dict, "
            "configure_optimizers() and training_step(batch, ctx)"
        )
    if not isinstance(task.modules, dict) or not task.modules:
        raise ValueError("task.modules must be a non-empty dict of name -> nn.Module")
    for name, module in task.modules.items():
        if not isinstance(module, nn.Module):
            raise TypeError(f"task.modules[{name!r}] is a {type(module).__name__}, not an nn.Module")
    if not isinstance(config.epochs, int) or config.epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {config.epochs!r}")
    if not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {config.batch_size!r}")
    if config.num_threads is not None and config.num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {config.num_threads!r}")
    if config.resume and config.checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
    try:
        n = len(train_set)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("train_set must be a map-style Dataset with __len__ (e.g. TensorDataset)") from None
    if n == 0:
        raise ValueError("train_set is empty; nothing to train on")
    if config.drop_last and n < config.batch_size:
        raise ValueError(
            f"drop_last=True with {n} samples < batch_size={config.batch_size} leaves no batch; lower batch_size"
        )


def _to_device(batch: Any, device: torch.device, channels_last: bool) -> tuple[Tensor, ...]:
    if isinstance(batch, Tensor):
        batch = (batch,)
    non_blocking = device.type == "cuda"
    out = []
    for t in batch:
        if isinstance(t, Tensor):
            t = t.to(device, non_blocking=non_blocking)
            if channels_last and t.ndim == 4 and t.is_floating_point():
                t = t.contiguous(memory_format=torch.channels_last)
        out.append(t)
    return tuple(out)


def _batches(loader: DataLoader, desc: str, show: bool) -> Iterator[tuple[Any, tqdm]]:
    bar = tqdm(loader, desc=desc, leave=False, disable=not show, dynamic_ncols=True)
    for batch in bar:
        yield batch, bar
    bar.close()


def fit(task: TrainTask, train_set: Dataset, config: TrainConfig) -> TrainResult:
    """Train ``task`` on ``train_set`` for ``config.epochs`` epochs.

    ``train_set`` yields tuples of tensors (e.g. ``TensorDataset(x, y)``); each batch is moved
    to the device and passed to ``task.training_step``. The task's bare modules are moved to
    the device, trained in place and left there in eval mode. On the CPU the run is
    deterministic for a given ``config.seed``, and resuming from a checkpoint reproduces the
    uninterrupted run bit for bit. Under ``torchrun`` (WORLD_SIZE > 1) training is
    data-parallel with DistributedDataParallel (gloo on CPU, NCCL on CUDA).

    Raises ValueError/TypeError on a bad task, dataset or config, and CheckpointError when
    ``resume=True`` finds a checkpoint that cannot be read or does not match.
    """
    _validate(task, train_set, config)
    t_start = time.perf_counter()
    device = resolve_device(config.device)
    info, device = _setup_distributed(device)
    prev_threads = torch.get_num_threads()
    prev_det = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        return _fit(task, train_set, config, device, info, t_start)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det[0], warn_only=prev_det[1])


def _fit(
    task: TrainTask, train_set: Dataset, config: TrainConfig, device: torch.device, info: _Dist, t_start: float
) -> TrainResult:
    # Ranks get different seeds so that dropout/noise differs between them; the data order
    # comes from the sampler, which uses config.seed on every rank.
    seed_everything(config.seed + info.rank)
    use_cuda = device.type == "cuda"
    channels_last = config.channels_last and use_cuda
    for module in task.modules.values():
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)

    optimizers = task.configure_optimizers()
    if not isinstance(optimizers, dict) or not optimizers:
        raise ValueError("configure_optimizers() must return a non-empty dict of name -> torch.optim.Optimizer")
    own = {id(p) for m in task.modules.values() for p in m.parameters()}
    for name, opt in optimizers.items():
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"configure_optimizers()[{name!r}] is a {type(opt).__name__}, not a torch.optim.Optimizer")
        if any(id(p) not in own for p in _params_of(opt)):
            raise ValueError(f"optimizer {name!r} holds parameters that are not in task.modules; build it over them")

    amp_dtype: torch.dtype | None = None
    if config.amp and use_cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # One scaler per optimizer: each is stepped and updated on its own (e.g. GAN D then G).
    scalers = {name: torch.amp.GradScaler("cuda") for name in optimizers} if amp_dtype == torch.float16 else {}

    ckpt_path = Path(config.checkpoint_path) if config.checkpoint_path is not None else None
    history: list[dict[str, float]] = []
    start_epoch = 0
    resumed_from: int | None = None
    if config.resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = _load_checkpoint(ckpt_path, device)
        _restore(ckpt, ckpt_path, task, optimizers, scalers, config)
        start_epoch = resumed_from = int(ckpt["epoch"])
        history = [dict(h) for h in ckpt["history"]]
        if info.enabled and not info.is_main:
            # The checkpoint holds rank 0's RNG streams; other ranks take a fresh, distinct one.
            seed_everything((config.seed + info.rank + 7919 * start_epoch) % 2**32)
        else:
            _set_rng_state(ckpt["rng"])

    if info.enabled:
        ctx_modules = {
            name: (
                DistributedDataParallel(m, device_ids=[device.index] if use_cuda else None)
                if any(p.requires_grad for p in m.parameters())
                else m
            )
            for name, m in task.modules.items()
        }
    else:
        ctx_modules = dict(task.modules)
    ctx = StepContext(ctx_modules, optimizers, scalers, device, amp_dtype, info.rank, info.world_size)

    generator = torch.Generator()
    sampler = (
        DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed)
        if info.enabled
        else None
    )
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        drop_last=config.drop_last,
        pin_memory=use_cuda,
    )

    on_epoch_start = getattr(task, "on_epoch_start", None)
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        # The data order is a function of (seed, epoch) only, so a resumed run sees the same batches.
        generator.manual_seed(config.seed + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        ctx.epoch = epoch
        if callable(on_epoch_start):
            on_epoch_start(epoch, config.epochs)
        for m in ctx_modules.values():
            m.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        show = config.progress and info.is_main
        for batch, bar in _batches(loader, f"epoch {epoch + 1}/{config.epochs}", show):
            logged = task.training_step(_to_device(batch, device, channels_last), ctx)
            if not isinstance(logged, dict):
                raise TypeError(f"training_step must return a dict of name -> float, got {type(logged).__name__}")
            for k, v in logged.items():
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
            if show:
                bar.set_postfix({k: f"{sums[k] / counts[k]:.4g}" for k in sums}, refresh=False)
        entry: dict[str, float] = {"epoch": epoch + 1, **_reduce_means(sums, counts, info)}
        entry["seconds"] = time.perf_counter() - t_epoch
        history.append(entry)
        if ckpt_path is not None and info.is_main:
            _save_checkpoint(
                ckpt_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": epoch + 1,
                    "seed": config.seed,
                    "batch_size": config.batch_size,
                    "modules": {name: m.state_dict() for name, m in task.modules.items()},
                    "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
                    "scalers": {name: s.state_dict() for name, s in scalers.items()},
                    "rng": _rng_state(),
                    "history": history,
                },
            )

    if info.enabled:
        dist.barrier()
    for m in task.modules.values():
        m.eval()
    return TrainResult(
        history=history,
        device=str(device),
        world_size=info.world_size,
        epochs_run=max(0, config.epochs - start_epoch),
        resumed_from_epoch=resumed_from,
        seconds=time.perf_counter() - t_start,
    )


# ----------------------------------------------------------------------------- supervised task


class ClassifierTask:
    """Supervised classification: cross-entropy on ``model(x)`` logits, AdamW.

    Batches are ``(x, y)`` with ``x`` the model input and ``y`` int64 class indices ``[N]``.
    ``class_weights`` ``[C]`` (non-negative) weight the loss per class, e.g. for imbalanced
    data; ``label_smoothing`` in [0, 1); ``cosine=True`` anneals the learning rate per epoch
    from ``lr`` towards 0 (a pure function of the epoch, so resuming stays exact);
    ``max_grad_norm`` clips the gradient norm. Logs ``loss``, ``accuracy`` and ``lr``.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        class_weights: Tensor | None = None,
        label_smoothing: float = 0.0,
        cosine: bool = False,
        max_grad_norm: float | None = None,
    ):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if class_weights.ndim != 1 or (class_weights < 0).any() or class_weights.sum() <= 0:
                raise ValueError("class_weights must be a 1-D tensor [C] of non-negative weights, not all zero")
        self.modules: dict[str, nn.Module] = {"model": model}
        self.lr = lr
        self.weight_decay = weight_decay
        self.class_weights = class_weights
        self.label_smoothing = label_smoothing
        self.cosine = cosine
        self.max_grad_norm = max_grad_norm
        self.optimizer: torch.optim.Optimizer | None = None

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizer = torch.optim.AdamW(
            self.modules["model"].parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        return {"model": self.optimizer}

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        if self.cosine and self.optimizer is not None:
            lr = 0.5 * self.lr * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def training_step(self, batch: tuple[Tensor, ...], ctx: StepContext) -> dict[str, float]:
        if len(batch) < 2:
            raise ValueError("ClassifierTask needs batches (x, y); the dataset yields a single tensor")
        x, y = batch[0], batch[1]
        with ctx.autocast():
            logits = ctx.modules["model"](x)
        if logits.ndim != 2:
            raise ValueError(f"model must return logits [N, C], got shape {tuple(logits.shape)}")
        weight = None
        if self.class_weights is not None:
            if self.class_weights.numel() != logits.shape[1]:
                raise ValueError(
                    f"class_weights has {self.class_weights.numel()} entries but the model has {logits.shape[1]} classes"
                )
            weight = self.class_weights.to(logits.device)
        # Loss in float32 even under autocast: cross-entropy in bf16/fp16 loses precision.
        loss = nn.functional.cross_entropy(
            logits.float(), y.long(), weight=weight, label_smoothing=self.label_smoothing
        )
        ctx.step(loss, "model", max_grad_norm=self.max_grad_norm)
        accuracy = (logits.detach().argmax(1) == y).float().mean()
        return {
            "loss": loss.item(),
            "accuracy": accuracy.item(),
            "lr": ctx.optimizers["model"].param_groups[0]["lr"],
        }


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: np.ndarray | Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Model outputs for ``x`` ``[N, ...]`` in eval mode, batched: float32 array ``[N, C]``.

    Floating inputs are cast to float32; integer inputs (token ids) keep their dtype. The model
    runs on ``device`` (``"auto"`` allowed) and is moved back to where it was, in the train/eval
    mode it was in.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if isinstance(x, np.ndarray):
        arr = np.ascontiguousarray(x)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)
        if not arr.flags.writeable:  # torch.from_numpy warns on read-only arrays
            arr = arr.copy()
        xt = torch.from_numpy(arr)
    else:
        xt = x
    if not isinstance(xt, Tensor):
        raise TypeError(f"x must be a numpy array or a torch tensor, got {type(x).__name__}")
    if xt.ndim == 0 or xt.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [N, ...], got shape {tuple(xt.shape)}")
    if xt.is_floating_point():
        xt = xt.float()
    dev = resolve_device(str(device))
    first = next(iter(model.parameters()), None)
    home = first.device if first is not None else None
    was_training = model.training
    model.eval()
    try:
        model.to(dev)
        outs = []
        for i in range(0, xt.shape[0], batch_size):
            out = model(xt[i : i + batch_size].to(dev))
            if not isinstance(out, Tensor):
                raise TypeError(f"model returned a {type(out).__name__}; predict_logits needs a logits tensor [N, C]")
            outs.append(out.float().cpu())
        logits = torch.cat(outs)
    finally:
        model.train(was_training)
        if home is not None and home != dev:
            model.to(home)
    if logits.ndim != 2:
        raise ValueError(f"model returned shape {tuple(logits.shape)}; predict_logits needs logits [N, C]")
    return logits.numpy()
