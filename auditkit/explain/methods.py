"""Attribution methods over captum: one registry, one entry point for every classifier task.

:func:`attribute` explains the logit of a target class for a batch of inputs:

- **images** ``[N, C, H, W]`` float in ``card.bounds`` → attributions ``[N, C, H, W]``;
- **tabular** ``[N, F]`` float in raw feature units → attributions ``[N, F]``. A model may
  expose an *encoded space* (optional protocol, implemented by the zoo's ``TabularMLP``):

  - ``encode(x) -> z``: raw features ``[N, F]`` → the encoded input ``[N, D]`` its network
    reads (e.g. standardised numeric columns and one-hot categoricals);
  - ``forward_encoded(z) -> logits``, with ``forward(x) == forward_encoded(encode(x))``;
  - ``encoded_feature_index: list[int]``, length ``D``: the raw feature of each encoded column.

  The gradient methods with an ``encoded`` callable then run on ``z = encode(x)`` against the
  encoded baseline (references encoded the same way) and the ``[N, D]`` attributions are summed
  per raw feature into ``[N, F]``, as text methods run on the embeddings and sum over the
  embedding axis. Integer category codes are rounded before the one-hot, so in raw space their
  gradient is exactly 0: a categorical feature would always rank last, and IG's path would
  cross rounding jumps that break completeness. In encoded space IG's attributions still sum to
  ``f(x) - f(baseline)`` (the sum over columns is kept). Occlusion perturbs raw features.
- **text** ``[N, L]`` int64 token ids → per-token scores ``[N, L]`` float, exactly 0 at pads.
  Gradient methods run on the embedding layer (captum's ``Layer*`` variants, or captum's
  method on the embeddings for the noise-based ones) and are summed over the embedding axis.

Every algorithm is captum's; this module chooses baselines, noise scales and windows per task,
batches, seeds, and restores the model's mode. Default baselines ("absence of signal"):

- images: the black image, i.e. zeros clipped into ``card.bounds``;
- tabular: the ``baseline`` argument if given (the explanation check passes the training
  mean), else zeros clipped into each feature's ``[min, max]`` from ``card.features``;
- text: the pad token at every position (the pad token's embedding in embedding space).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    GradientShap,
    GuidedBackprop,
    IntegratedGradients,
    LayerAttribution,
    LayerDeepLift,
    LayerGradCam,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import Tensor, nn

from auditkit.card import AuditCard
from auditkit.distributed import map_units, rank_and_world
from auditkit.resources import batch_size_for

IMAGE, TEXT, TABULAR = "image-classification", "text-classification", "tabular-classification"
ALL_TASKS = (IMAGE, TEXT, TABULAR)
NT_SAMPLES = 16  # SmoothGrad noisy copies and GradientSHAP samples per input
NOISE_FRACTION = 0.1  # noise stdev as a fraction of the input's spread (Smilkov et al. 2017)
ENCODED_NOTE = (
    " Tabular models with an encoded space (encode / forward_encoded / encoded_feature_index, as "
    "the zoo's TabularMLP): computed on the encoded inputs (numeric features in the model's "
    "own units, standardised for TabularMLP; categorical features on their one-hot columns; "
    "baseline encoded too) and summed over each feature's columns, because a rounded category "
    "code has no gradient."
)


class AttributionError(ValueError):
    """Bad input to an attribution method. The message says what is wrong and how to fix it."""


QUALITY_TESTS = ("randomisation", "deletion-insertion", "infidelity")


@dataclass
class Chunk:
    """One batch of one :func:`attribute` call, as a method's callables receive it.

    ``x``: images ``[n, C, H, W]``, raw tabular features ``[n, F]`` or token ids ``[n, L]``;
    ``target``: ``[n]`` int64; ``baseline``: like ``x``; ``references``: GradientSHAP's reference
    draws ``[NT_SAMPLES, ...]`` (raw units, embedding space for text) or None; ``scale``: noise
    stdev, a scalar or ``[F]`` per tabular feature (0 for categorical codes in encoded space).
    """

    module: nn.Module
    x: Tensor
    target: Tensor
    baseline: Tensor
    references: Tensor | None
    scale: Tensor
    card: AuditCard
    n_steps: int
    return_delta: bool
    internal_batch_size: int | None = None  # rows per pass, for methods that split their expanded rows


Result = tuple[Tensor, "Tensor | None"]  # (attributions, convergence delta or None)


@dataclass(frozen=True)
class MethodSpec:
    """A registered attribution method: what it is and the callables that compute it.

    Adding a method is one spec (:func:`register_method`); nothing else switches on its name.

    - ``dense(chunk) -> (attr, delta)``: images and tabular models in raw input space,
      attributions shaped like ``chunk.x``;
    - ``encoded(chunk, enc, z, zb) -> (attr, delta)``: tabular models with an encoded space
      (module docstring): attributions ``[n, D]`` over the encoded inputs ``z`` (baseline ``zb``),
      summed per raw feature by the caller; None: the method runs in raw space there too;
    - ``text(chunk, wrapped, layer) -> (attr, delta)``: text models; with
      ``text_on_embeddings`` (default) ``wrapped`` is the model seen from its embedding
      ``layer`` and the result is ``[n, L, E]`` per embedding dimension (summed and zeroed at
      pads by the caller); without it ``wrapped``/``layer`` are None and the result is
      per-token scores ``[n, L]``;
    - ``needs_eager``: needs module or layer hooks on every task, so TorchScript and exported
      models cannot run it (on text every ``text_on_embeddings`` method needs a hook on the
      embedding layer; :func:`available_methods` reports that too);
    - ``requires(card, module)``: why the method cannot run on this model, or None;
    - ``not_applicable``: the reason shown for a task outside ``tasks`` (``{task}`` filled in);
    - ``noisy``: draws noise of scale ``chunk.scale`` (seeded); ``references``: needs
      GradientSHAP-style reference draws; ``has_delta``: returns a convergence delta;
    - ``quality``: which explanation-quality tests (:data:`QUALITY_TESTS`) evaluate it;
    - ``rows_per_sample(n_steps)``: input rows one sample expands to inside the method (IG's
      path points, SmoothGrad's noisy copies), so that :func:`attribute` sizes its chunks to the
      memory budget (:func:`auditkit.resources.batch_size_for`);
    - ``internal_batching``: the callables pass ``Chunk.internal_batch_size`` on to captum,
      which then splits the expanded rows into passes itself (IG's path points): one captum call
      per chunk of samples instead of one per few samples (captum recomputes its Gauss-Legendre
      nodes on every call, 0.1-0.4 s at 512 steps).
    """

    name: str
    title: str
    tasks: tuple[str, ...]
    needs_eager: bool
    description: str
    dense: Callable[[Chunk], Result] | None = None
    encoded: Callable[..., Result] | None = None
    text: Callable[..., Result] | None = None
    text_on_embeddings: bool = True
    requires: Callable[[AuditCard, nn.Module], "str | None"] | None = None
    not_applicable: str | None = None
    noisy: bool = False
    references: bool = False
    has_delta: bool = False
    quality: frozenset[str] = frozenset()
    rows_per_sample: Callable[[int], int] = lambda n_steps: 1
    internal_batching: bool = False


# ----------------------------------------------------------------------------- availability


def _task_word(task: str) -> str:
    return task.split("-")[0]


def _embedding_layer(module: nn.Module) -> nn.Embedding | None:
    """``module.embedding`` if it is an nn.Embedding, else the first nn.Embedding inside."""
    layer = getattr(module, "embedding", None)
    if isinstance(layer, nn.Embedding):
        return layer
    return next((m for m in module.modules() if isinstance(m, nn.Embedding)), None)


def _gradcam_layer(module: nn.Module) -> nn.Module | None:
    """``module.gradcam_layer`` if present, else the last nn.Conv2d inside."""
    try:
        layer = getattr(module, "gradcam_layer", None)
    except Exception:  # a property that fails on a foreign module: fall back to the search
        layer = None
    if isinstance(layer, nn.Module):
        return layer
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def _has_rnn(module: nn.Module) -> bool:
    return any(isinstance(m, nn.RNNBase) for m in module.modules())


def _is_eager(module: nn.Module) -> bool:
    return not isinstance(module, torch.jit.ScriptModule)


def _skip_reason(spec: MethodSpec, card: AuditCard, module: nn.Module, eager: bool) -> str | None:
    if card.task not in spec.tasks:
        if spec.not_applicable:
            return spec.not_applicable.format(task=card.task)
        kinds = " and ".join(_task_word(t) for t in spec.tasks)
        return f"{spec.title} applies to {kinds} models only, not {card.task}"
    needs_hooks = spec.needs_eager or (card.task == TEXT and spec.text_on_embeddings)
    if needs_hooks and not eager:
        what = "the embedding layer" if card.task == TEXT else "layers"
        return (
            f"{spec.title} needs hooks on {what}; layer hooks unavailable on TorchScript and "
            "exported models (scan the eager zoo model.pt, or a state_dict with --arch)"
        )
    if card.task == TEXT and needs_hooks and _embedding_layer(module) is None:
        return f"{spec.title} on text runs on the embedding layer and the model has no nn.Embedding"
    return spec.requires(card, module) if spec.requires is not None else None


def available_methods(card: AuditCard, module: nn.Module, eager: bool) -> dict[str, str | None]:
    """Which registered methods can explain this model.

    Returns ``{method name: None}`` for usable methods and ``{method name: reason}`` for the
    others, e.g. ``"Grad-CAM needs a convolutional layer ..."`` or ``"... layer hooks unavailable
    on TorchScript ..."``. ``eager`` is :attr:`AuditModel.eager` (False for TorchScript and
    ``torch.export`` programs, whose layers take no hooks).
    """
    return {name: _skip_reason(spec, card, module, eager) for name, spec in METHODS.items()}


# ----------------------------------------------------------------------------- text wrappers


class _TokenModel(nn.Module):
    """``forward(tokens, mask_tokens)``: the text model with its padding mask pinned.

    Zoo text models expose ``forward_embedded(emb, tokens)``, where ``tokens`` only gives the
    padding mask. Feeding the *input's* tokens as the mask keeps the baseline's forward pass
    (all pad ids) on the same path that layer IG integrates along, so captum's convergence
    delta measures only the integration error. Other models are called as ``model(tokens)``.
    """

    def __init__(self, model: nn.Module, layer: nn.Embedding):
        super().__init__()
        self.model = model
        self.layer = layer
        self.split = callable(getattr(model, "forward_embedded", None)) and getattr(
            model, "embedding", None
        ) is layer

    def forward(self, tokens: Tensor, mask_tokens: Tensor) -> Tensor:
        if self.split:
            return self.model.forward_embedded(self.layer(tokens), mask_tokens)
        return self.model(tokens)

    def from_embeddings(self, emb: Tensor, mask_tokens: Tensor) -> Tensor:
        """Logits from embeddings ``[N, L, E]`` (a forward hook swaps them in if needed)."""
        if self.split:
            return self.model.forward_embedded(emb, mask_tokens)
        handle = self.layer.register_forward_hook(lambda _m, _i, _o: emb)
        try:
            return self.model(mask_tokens)
        finally:
            handle.remove()


# ----------------------------------------------------------------------------- tabular encoded space


def _has_encoded_space(module: nn.Module, card: AuditCard) -> bool:
    """Whether a tabular model exposes the encoded-space protocol (module docstring)."""
    if card.task != TABULAR:
        return False
    try:
        index = getattr(module, "encoded_feature_index", None)
        return (callable(getattr(module, "encode", None))
                and callable(getattr(module, "forward_encoded", None))
                and isinstance(index, (list, tuple)) and len(index) > 0)
    except Exception:  # a property that fails on a foreign module: no protocol
        return False


class _EncodedModel(nn.Module):
    """``forward(z) = model.forward_encoded(z)``: a tabular model seen from its encoded space.

    A module (not a bare callable) so that DeepLIFT can hook the network's nonlinearities.
    """

    def __init__(self, model: nn.Module, num_features: int):
        super().__init__()
        self.model = model
        self.training = model.training  # no recursion: the model's own mode is left alone
        index = [int(i) for i in model.encoded_feature_index]  # type: ignore[union-attr]
        if any(not 0 <= i < num_features for i in index):
            raise AttributionError(
                f"the model's encoded_feature_index must hold raw feature indices in "
                f"[0, {num_features}); got {sorted(set(index))}"
            )
        self.num_features = num_features
        self.index = index

    def encode(self, x: Tensor) -> Tensor:
        """``[n, F]`` raw → ``[n, D]`` encoded, detached (the attribution space's inputs)."""
        with torch.no_grad():
            z = self.model.encode(x).to(x.dtype)  # type: ignore[operator]
        if z.dim() != 2 or z.shape[0] != x.shape[0] or z.shape[1] != len(self.index):
            raise AttributionError(
                f"the model's encode() gave {list(z.shape)}; expected [{x.shape[0]}, "
                f"{len(self.index)}] (one column per entry of encoded_feature_index)"
            )
        return z.detach()

    def forward(self, z: Tensor) -> Tensor:
        return self.model.forward_encoded(z)  # type: ignore[operator]

    def per_feature(self, a: Tensor) -> Tensor:
        """Encoded attributions ``[n, D]`` summed per raw feature into ``[n, F]``."""
        index = torch.tensor(self.index, dtype=torch.int64, device=a.device)
        out = torch.zeros(a.shape[0], self.num_features, dtype=a.dtype, device=a.device)
        return out.index_add_(1, index, a)


def _encoded(spec: MethodSpec, c: Chunk) -> Result:
    """One chunk of tabular attributions ``[n, F]`` computed in the model's encoded space.

    ``c.baseline`` and ``c.references`` come in raw units (the references are encoded by the
    method); ``c.scale`` is the raw-unit noise stdev per feature, 0 for categorical features.
    """
    enc = _EncodedModel(c.module, c.x.shape[1])
    a, delta = spec.encoded(c, enc, enc.encode(c.x), enc.encode(c.baseline))  # type: ignore[misc]
    return enc.per_feature(a), delta


# ----------------------------------------------------------------------------- attribute


def _check_inputs(
    method: str, module: nn.Module, x: Tensor, target: Tensor, card: AuditCard,
    n_steps: int, batch_size: int, return_delta: bool,
) -> MethodSpec:
    if method not in METHODS:
        raise AttributionError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    spec = METHODS[method]
    reason = _skip_reason(spec, card, module, _is_eager(module))
    if reason is not None:
        raise AttributionError(f"method {method!r} cannot run on this model: {reason}")
    if not isinstance(x, Tensor) or not isinstance(target, Tensor):
        raise AttributionError("x and target must be torch tensors (use AuditModel.to_input)")
    if card.task == TEXT:
        if x.dim() != 2 or x.dtype != torch.int64:
            raise AttributionError(
                f"text input must be int64 token ids [N, L]; got {x.dtype} {list(x.shape)}"
            )
        vocab = len(card.text.vocab)  # type: ignore[union-attr]
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab):
            raise AttributionError(f"token ids must lie in [0, {vocab}) (the card's vocabulary size)")
    else:
        if list(x.shape[1:]) != list(card.input_shape) or not x.is_floating_point():
            raise AttributionError(
                f"input must be float [N, {', '.join(map(str, card.input_shape))}] as the card "
                f"says; got {x.dtype} {list(x.shape)}"
            )
    if target.shape != (x.shape[0],) or target.dtype not in (torch.int64, torch.int32):
        raise AttributionError(
            f"target must be int64 class indices [N] = [{x.shape[0]}]; got {target.dtype} {list(target.shape)}"
        )
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= card.num_classes):
        raise AttributionError(
            f"target class indices must lie in [0, {card.num_classes}); got "
            f"{int(target.min())}..{int(target.max())}"
        )
    if n_steps < 1 or batch_size < 1:
        raise AttributionError(f"n_steps ({n_steps}) and batch_size ({batch_size}) must be >= 1")
    if return_delta and not spec.has_delta:
        with_delta = ", ".join(repr(n) for n, s in METHODS.items() if s.has_delta)
        raise AttributionError(f"return_delta=True is only defined for {with_delta} (the convergence delta)")
    return spec


def _default_baseline(x: Tensor, card: AuditCard) -> Tensor:
    """One reference input ``[1, *input_shape]`` (see the module docstring)."""
    if card.task == TEXT:
        return torch.full_like(x[:1], card.text.pad_id)  # type: ignore[union-attr]
    if card.task == TABULAR:
        lo = torch.tensor([f.min for f in card.features], dtype=x.dtype, device=x.device)  # type: ignore[union-attr]
        hi = torch.tensor([f.max for f in card.features], dtype=x.dtype, device=x.device)  # type: ignore[union-attr]
        return torch.zeros_like(lo).clamp(lo, hi).unsqueeze(0)
    zero = torch.zeros_like(x[:1])
    return zero.clamp(*card.bounds) if card.bounds is not None else zero


def _baseline(x: Tensor, card: AuditCard, baseline: Tensor | None) -> Tensor:
    """The baseline broadcast to ``x``'s shape, dtype and device."""
    base = _default_baseline(x, card) if baseline is None else baseline
    if not isinstance(base, Tensor):
        raise AttributionError("baseline must be a torch tensor shaped like one input or like x")
    base = base.to(device=x.device, dtype=x.dtype)
    if base.dim() == x.dim() - 1:
        base = base.unsqueeze(0)
    if base.dim() != x.dim() or base.shape[1:] != x.shape[1:] or base.shape[0] not in (1, x.shape[0]):
        raise AttributionError(
            f"baseline shape {list(base.shape)} fits neither one input {list(x.shape[1:])} nor x {list(x.shape)}"
        )
    return base.expand_as(x).contiguous()


def _noise_scale(x: Tensor, card: AuditCard, module: nn.Module) -> Tensor:
    """Noise stdev for SmoothGrad and GradientSHAP: a scalar, or ``[F]`` per tabular feature."""
    if card.task == TABULAR:
        spread = torch.tensor([f.max - f.min for f in card.features], dtype=x.dtype, device=x.device)  # type: ignore[union-attr]
        # The std of a uniform variable on [min, max]; a constant feature has no spread: unit scale.
        std = torch.where(spread > 0, spread / math.sqrt(12.0), torch.ones_like(spread))
        return NOISE_FRACTION * std
    if card.task == TEXT:
        weight = _embedding_layer(module).weight.detach()  # type: ignore[union-attr]
        return NOISE_FRACTION * (weight.max() - weight.min()).to(torch.float32)
    if card.bounds is not None:
        lo, hi = card.bounds
    else:  # no declared bounds: the batch's own range
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 1.0)
    return torch.tensor(NOISE_FRACTION * max(hi - lo, 1e-6), device=x.device)


def _references(center: Tensor, scale: Tensor, card: AuditCard, seed: int) -> Tensor:
    """GradientSHAP's reference distribution ``[NT_SAMPLES, ...]``: center plus seeded noise."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((NT_SAMPLES, *center.shape), generator=gen).to(center)
    refs = center + noise * scale
    if card.task == TABULAR:
        lo = torch.tensor([f.min for f in card.features]).to(center)  # type: ignore[union-attr]
        hi = torch.tensor([f.max for f in card.features]).to(center)  # type: ignore[union-attr]
        refs = refs.clamp(lo, hi)
    elif card.task == IMAGE and card.bounds is not None:
        refs = refs.clamp(*card.bounds)
    return refs


def _occlusion_window(x: Tensor) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Sliding window and strides ``(C, side, side)``: 2x2 with stride 1 on 8x8 inputs."""
    c, h, w = x.shape[1:]
    side = max(1, round(min(h, w) / 4))
    step = max(1, side // 2)
    return (c, side, side), (c, step, step)


@contextlib.contextmanager
def _attribution_mode(module: nn.Module, x: Tensor) -> Iterator[None]:
    """Eval mode (restored after), gradients on, and cuDNN off for RNNs on CUDA.

    captum's FAQ: backward through cuDNN RNNs needs train mode; without cuDNN it works in eval
    mode, so dropout stays off. A no-op on CPU.
    """
    was_training = module.training
    rnn_on_cuda = x.is_cuda and _has_rnn(module)
    module.eval()
    try:
        with torch.enable_grad(), (
            torch.backends.cudnn.flags(enabled=False) if rnn_on_cuda else contextlib.nullcontext()
        ), warnings.catch_warnings():
            # captum announces its temporary hooks and its requires_grad switch on every call;
            # nothing to act on (the switch is undone before it returns).
            for message in ("Setting forward, backward hooks", "Setting backward hooks",
                            "Input Tensor .* did not already require gradients"):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        module.train(was_training)


@contextlib.contextmanager
def _private_rng(x: Tensor) -> Iterator[None]:
    """Seeding inside leaves torch's and NumPy's global random state as it was."""
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            yield
    finally:
        np.random.set_state(state)


def _dense(spec: MethodSpec, c: Chunk) -> Result:
    """One chunk of image or tabular attributions, same shape as ``c.x``."""
    return spec.dense(c)  # type: ignore[misc]


def _text(spec: MethodSpec, c: Chunk) -> Result:
    """One chunk of per-token scores ``[n, L]``, 0 at pad positions."""
    text = c.card.text
    assert text is not None  # validated by the card
    pad = c.x == text.pad_id
    if not spec.text_on_embeddings:
        scores, delta = spec.text(c, None, None)  # type: ignore[misc]
        return scores.float().masked_fill(pad, 0.0), delta
    layer = _embedding_layer(c.module)
    per_dim, delta = spec.text(c, _TokenModel(c.module, layer), layer)  # type: ignore[arg-type, misc]
    return per_dim.sum(-1).masked_fill(pad, 0.0), delta


# ----------------------------------------------------------------------------- the methods
# Each method's callables, then its spec. ``ig`` shows all three spaces: raw (dense), a tabular
# model's encoded space, and text embeddings.


def _ig_dense(c: Chunk) -> Result:
    out = IntegratedGradients(c.module).attribute(
        c.x, baselines=c.baseline, target=c.target, n_steps=c.n_steps, return_convergence_delta=c.return_delta,
        internal_batch_size=c.internal_batch_size,
    )
    return (out[0], out[1]) if c.return_delta else (out, None)


def _ig_encoded(c: Chunk, enc: _EncodedModel, z: Tensor, zb: Tensor) -> Result:
    out = IntegratedGradients(enc).attribute(
        z, baselines=zb, target=c.target, n_steps=c.n_steps, return_convergence_delta=c.return_delta,
        internal_batch_size=c.internal_batch_size,
    )
    # The per-feature sum keeps sum(attr), so captum's delta is the raw model's delta too.
    return (out[0], out[1]) if c.return_delta else (out, None)


def _ig_text(c: Chunk, wrapped: _TokenModel, layer: nn.Embedding) -> Result:
    out = LayerIntegratedGradients(wrapped, layer).attribute(
        c.x, baselines=c.baseline, target=c.target, additional_forward_args=(c.x,), n_steps=c.n_steps,
        return_convergence_delta=c.return_delta, internal_batch_size=c.internal_batch_size,
    )
    return (out[0], out[1]) if c.return_delta else (out, None)


def _saliency_text(c: Chunk, wrapped: _TokenModel, layer: nn.Embedding) -> Result:
    grads = LayerGradientXActivation(wrapped, layer, multiply_by_inputs=False).attribute(
        c.x, target=c.target, additional_forward_args=(c.x,)
    )
    return grads.abs(), None


def _smoothgrad_dense(c: Chunk) -> Result:
    if c.card.task == TABULAR:
        # captum's stdevs is one number per input tensor; per-feature noise comes from running
        # in units of each feature's scale, z = x / s: noise 1 in z is noise s in x, and
        # |df/dx| = |df/dz| / s exactly.
        scale, module = c.scale, c.module
        scaled = lambda z: module(z * scale)  # noqa: E731
        grads = NoiseTunnel(Saliency(scaled)).attribute(
            c.x / scale, nt_type="smoothgrad", nt_samples=NT_SAMPLES, stdevs=1.0, target=c.target
        )
        return grads / scale, None
    return NoiseTunnel(Saliency(c.module)).attribute(
        c.x, nt_type="smoothgrad", nt_samples=NT_SAMPLES, stdevs=float(c.scale), target=c.target
    ), None


def _smoothgrad_encoded(c: Chunk, enc: _EncodedModel, z: Tensor, zb: Tensor) -> Result:
    # Noise goes into the raw features, before encoding (not into z): every noisy sample is
    # then a valid input of the network (one-hot columns stay one-hot instead of becoming
    # fractional mixtures of categories), the noise is the documented per-feature raw scale
    # (the same neighbourhood as for models without the protocol), and no encoded-space
    # scale has to be invented. Categorical codes get no noise (scale 0): codes are
    # nominal, the neighbouring code is no nearer than any other, and the gradient already
    # covers every category's one-hot column. Same estimator as captum's NoiseTunnel
    # smoothgrad (mean of |gradient| over NT_SAMPLES noisy copies), batched in one call.
    n = c.x.shape[0]
    noise = torch.randn((NT_SAMPLES, *c.x.shape), dtype=c.x.dtype, device=c.x.device) * c.scale
    zn = enc.encode((c.x.unsqueeze(0) + noise).reshape(NT_SAMPLES * n, -1))
    grads = Saliency(enc).attribute(zn, target=c.target.repeat(NT_SAMPLES), abs=True)
    return grads.reshape(NT_SAMPLES, n, -1).mean(0), None


def _smoothgrad_text(c: Chunk, wrapped: _TokenModel, layer: nn.Embedding) -> Result:
    # Noise must go into the embeddings (captum's NoiseTunnel would add it to the token ids).
    emb = layer(c.x).detach()
    return NoiseTunnel(Saliency(wrapped.from_embeddings)).attribute(
        emb, nt_type="smoothgrad", nt_samples=NT_SAMPLES, stdevs=float(c.scale),
        target=c.target, additional_forward_args=(c.x,),
    ), None


def _gradcam_dense(c: Chunk) -> Result:
    x = c.x
    cam = LayerGradCam(c.module, _gradcam_layer(c.module)).attribute(x, target=c.target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    return cam.expand(-1, x.shape[1], -1, -1), None


def _gradcam_requires(card: AuditCard, module: nn.Module) -> str | None:
    if _gradcam_layer(module) is None:
        return "Grad-CAM needs a convolutional layer (nn.Conv2d) and the model has none"
    return None


def _occlusion_dense(c: Chunk) -> Result:
    if c.card.task == TABULAR:
        return FeatureAblation(c.module).attribute(
            c.x, baselines=c.baseline, target=c.target, perturbations_per_eval=min(c.x.shape[1], 16)
        ), None
    window, strides = _occlusion_window(c.x)
    return Occlusion(c.module).attribute(
        c.x, sliding_window_shapes=window, strides=strides, baselines=c.baseline, target=c.target,
        perturbations_per_eval=16,
    ), None


def _occlusion_text(c: Chunk, _wrapped: None, _layer: None) -> Result:
    # Forward passes only: each non-pad token in turn becomes unk; pads are "replaced" by
    # pad, which changes nothing, so their score is exactly 0.
    text, tokens = c.card.text, c.x
    pad = tokens == text.pad_id  # type: ignore[union-attr]
    replaced = torch.where(pad, tokens, torch.full_like(tokens, text.unk_id))  # type: ignore[union-attr]
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    return FeatureAblation(c.module).attribute(
        tokens, baselines=replaced, target=c.target, feature_mask=positions,
        perturbations_per_eval=min(tokens.shape[1], 16),
    ), None


def _deeplift_requires(card: AuditCard, module: nn.Module) -> str | None:
    if _has_rnn(module):
        return (
            "DeepLIFT is unavailable on recurrent models: captum's DeepLift cannot reach the "
            "sigmoid/tanh gates inside nn.LSTM/GRU/RNN, so its result would not be DeepLIFT "
            "(use ig)"
        )
    return None


def _gradient_shap_text(c: Chunk, wrapped: _TokenModel, layer: nn.Embedding) -> Result:
    # Noise must go into the embeddings (captum's LayerGradientShap would add it to the token
    # ids), so captum's method runs on the embeddings.
    emb = layer(c.x).detach()
    return GradientShap(wrapped.from_embeddings).attribute(
        emb, baselines=c.references, n_samples=NT_SAMPLES, stdevs=0.0, target=c.target,
        additional_forward_args=(c.x,),
    ), None


_ALL_QUALITY = frozenset(QUALITY_TESTS)

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec(
            "saliency", "Saliency", ALL_TASKS, False,
            "Absolute gradient of the target logit w.r.t. the input (Simonyan et al. 2014; "
            "captum Saliency, abs=True). The sign is lost: it says how sensitive the logit is, "
            "not in which direction. Text: |gradient| w.r.t. the token embeddings, summed over "
            "the embedding dimension." + ENCODED_NOTE,
            dense=lambda c: (Saliency(c.module).attribute(c.x, target=c.target, abs=True), None),
            encoded=lambda c, enc, z, zb: (Saliency(enc).attribute(z, target=c.target, abs=True), None),
            text=_saliency_text, quality=_ALL_QUALITY,
        ),
        MethodSpec(
            "ig", "Integrated gradients", ALL_TASKS, False,
            "Gradients integrated along the straight path from a baseline to the input "
            "(Sundararajan et al. 2017; captum IntegratedGradients, Gauss-Legendre steps). "
            "Attributions sum to f(x) - f(baseline) up to captum's convergence delta. Baseline: "
            "black image; tabular training mean (else zeros clipped to each feature's range); "
            "text: layer IG on the embeddings with the pad token's embedding as baseline." + ENCODED_NOTE,
            dense=_ig_dense, encoded=_ig_encoded, text=_ig_text, has_delta=True, quality=_ALL_QUALITY,
            rows_per_sample=lambda n_steps: n_steps, internal_batching=True,
        ),
        MethodSpec(
            "smoothgrad", "SmoothGrad", ALL_TASKS, False,
            f"Saliency averaged over {NT_SAMPLES} noisy copies of the input (Smilkov et al. 2017; "
            f"captum NoiseTunnel over Saliency). Noise stdev: {NOISE_FRACTION} x the bounds range "
            f"(images), {NOISE_FRACTION} x each feature's std estimated from its range as "
            f"(max-min)/sqrt(12) (tabular), {NOISE_FRACTION} x the range of the embedding weights "
            "(text, noise added to the embeddings). Seeded." + ENCODED_NOTE + " There the noise is "
            "added to the raw features before encoding; categorical codes get none.",
            dense=_smoothgrad_dense, encoded=_smoothgrad_encoded, text=_smoothgrad_text, noisy=True,
            quality=frozenset({"randomisation"}), rows_per_sample=lambda n_steps: NT_SAMPLES,
        ),
        MethodSpec(
            "gradcam", "Grad-CAM", (IMAGE,), True,
            "Class activation map of the last convolutional layer weighted by its pooled "
            "gradients, ReLU'd (Selvaraju et al. 2017; captum LayerGradCam on the model's "
            "`gradcam_layer`, else its last nn.Conv2d), upsampled bilinearly to the input size "
            "and repeated over channels. Coarse: one value per layer cell.",
            dense=_gradcam_dense, requires=_gradcam_requires,
            not_applicable="Grad-CAM needs a convolutional layer over image inputs; not applicable to {task}",
            quality=frozenset({"randomisation", "deletion-insertion"}),
        ),
        MethodSpec(
            "occlusion", "Occlusion", ALL_TASKS, False,
            "Drop in the target logit when part of the input is replaced by the baseline "
            "(Zeiler & Fergus 2014). Images: captum Occlusion with a square window of side "
            "max(1, round(min(H, W) / 4)) (2x2 on 8x8) and stride half the side (1 on 8x8), "
            "baseline the black image; tabular: captum FeatureAblation, one feature at a time "
            "set to its baseline value; text: one token at a time replaced by the unk token. "
            "Needs only forward passes.",
            dense=_occlusion_dense, text=_occlusion_text, text_on_embeddings=False,
            quality=frozenset({"deletion-insertion"}), rows_per_sample=lambda n_steps: 16,
        ),
        MethodSpec(
            "deeplift", "DeepLIFT", ALL_TASKS, True,
            "Rescale-rule DeepLIFT against the baseline (Shrikumar et al. 2017; captum DeepLift, "
            "LayerDeepLift on the embeddings for text). Needs nonlinearities as modules; "
            "unavailable on recurrent models because captum cannot reach the gates inside "
            "nn.LSTM / nn.GRU / nn.RNN." + ENCODED_NOTE,
            dense=lambda c: (DeepLift(c.module).attribute(c.x, baselines=c.baseline, target=c.target), None),
            encoded=lambda c, enc, z, zb: (DeepLift(enc).attribute(z, baselines=zb, target=c.target), None),
            text=lambda c, wrapped, layer: (LayerDeepLift(wrapped, layer).attribute(
                c.x, baselines=c.baseline, target=c.target, additional_forward_args=(c.x,)), None),
            requires=_deeplift_requires, rows_per_sample=lambda n_steps: 2,  # input and baseline in one pass
        ),
        MethodSpec(
            "gradient-shap", "GradientSHAP", ALL_TASKS, False,
            f"Expected gradients x (input - reference) over {NT_SAMPLES} references drawn from "
            f"the baseline plus Gaussian noise ({NOISE_FRACTION} x the input's spread, as for "
            "SmoothGrad) at random points on the path (Lundberg & Lee 2017; captum GradientShap). "
            "A per-sample baseline is averaged into one reference. Seeded." + ENCODED_NOTE + " There "
            "the references are drawn in raw units (no noise on categorical codes), then encoded.",
            dense=lambda c: (GradientShap(c.module).attribute(
                c.x, baselines=c.references, n_samples=NT_SAMPLES, stdevs=0.0, target=c.target), None),
            encoded=lambda c, enc, z, zb: (GradientShap(enc).attribute(
                z, baselines=enc.encode(c.references), n_samples=NT_SAMPLES, stdevs=0.0, target=c.target), None),
            text=_gradient_shap_text, noisy=True, references=True, rows_per_sample=lambda n_steps: NT_SAMPLES,
        ),
        MethodSpec(
            "guided-backprop", "Guided backpropagation", (IMAGE,), True,
            "Gradient with negative gradients zeroed at every ReLU on the way back (Springenberg "
            "et al. 2015; captum GuidedBackprop). Only nn.ReLU modules are guided: a model using "
            "functional relu still runs but gets the plain gradient there. Known to be "
            "insensitive to the model's weights (Adebayo et al. 2018).",
            dense=lambda c: (GuidedBackprop(c.module).attribute(c.x, target=c.target), None),
            quality=frozenset({"randomisation"}),
        ),
    ]
}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add an attribution method to :data:`METHODS` (every consumer lists it from there).

    Names are stable, lower-case and hyphenated; registering a name twice is an error. A spec
    needs a callable for each kind of task it lists (``dense`` for images and tabular data,
    ``text`` for text)."""
    if spec.name in METHODS:
        raise ValueError(f"attribution method {spec.name!r} is registered twice")
    missing = [t for t in spec.tasks if (spec.text if t == TEXT else spec.dense) is None]
    if missing:
        raise ValueError(f"method {spec.name!r} lists {', '.join(missing)} but has no callable for it")
    METHODS[spec.name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove method ``name`` (tests that register one clean up with it)."""
    METHODS.pop(name, None)


def attribute(
    method: str,
    module: nn.Module,
    x: Tensor,
    target: Tensor,
    card: AuditCard,
    *,
    n_steps: int = 32,
    baseline: Tensor | None = None,
    seed: int = 0,
    batch_size: int = 64,
    return_delta: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attributions of the ``target`` logit to the input, by a registered method.

    Args:
        method: a key of :data:`METHODS` (``"ig"``, ``"saliency"``, ...).
        module: the classifier; put in eval mode for the call and restored afterwards.
        x: images ``[N, C, H, W]`` float, tabular ``[N, F]`` float (raw units), or text
            ``[N, L]`` int64 token ids; shaped as ``card.input_shape`` says.
        target: ``[N]`` int64 class indices whose logit is explained.
        card: the model's card (task, bounds, feature ranges, vocabulary).
        n_steps: integration steps of ``ig``.
        baseline: reference input, one ``[*input_shape]`` or one per sample ``[N, ...]``
            (token ids for text); defaults are in the module docstring.
        seed: seeds the noise of ``smoothgrad`` and ``gradient-shap`` (the chunk starting at
            sample ``s`` uses ``seed + s``); the global RNG is untouched.
        batch_size: the most samples per captum call. Fewer when the method's expanded rows
            (``MethodSpec.rows_per_sample``: IG's ``n_steps`` path points, SmoothGrad's noisy
            copies) would exceed the memory budget (:func:`auditkit.resources.batch_size_for`:
            measured per model and input shape, not per machine, so the chunks, and with them
            the noisy methods' draws, are the same wherever the call runs); IG keeps the chunk
            and has captum split its path points into passes that fit.
        return_delta: ``ig`` only: also return captum's convergence delta ``[N]``,
            ``sum(attr) - (f(x) - f(baseline))`` in logit units.

    Returns:
        attributions, same shape as ``x`` for images and tabular data, ``[N, L]`` float per-token
        scores (summed over the embedding dimension, exactly 0 at pads) for text; detached, on
        ``x``'s device. Tabular models with an encoded space get the gradient methods computed
        there and summed per raw feature (module docstring); ``delta`` is then still
        ``sum(attr) - (f(x) - f(baseline))``. With ``return_delta``: ``(attributions, delta)``.

    Raises:
        AttributionError: unknown method, method not applicable to the model (see
            :func:`available_methods`), malformed input, or target out of range.
    """
    spec = _check_inputs(method, module, x, target, card, n_steps, batch_size, return_delta)
    target = target.to(device=x.device, dtype=torch.int64)
    base = _baseline(x, card, baseline)
    noisy = spec.noisy
    scale = _noise_scale(x, card, module) if noisy else torch.ones(())
    run = _text if card.task == TEXT else _dense
    if spec.encoded is not None and _has_encoded_space(module, card):
        run = _encoded
        if noisy:  # raw-unit noise, none on categorical codes (see _smoothgrad_encoded)
            categorical = torch.tensor(
                [f.kind == "categorical" for f in card.features], device=x.device  # type: ignore[union-attr]
            )
            scale = scale.masked_fill(categorical, 0.0)

    n = x.shape[0]
    rows = max(1, spec.rows_per_sample(n_steps))
    chunk_size, internal = batch_size, None
    if n:
        fit_rows = batch_size_for(module, x, rows_per_sample=1)  # input rows one pass may hold
        if spec.internal_batching:  # captum splits the chunk's rows into passes of fit_rows
            chunk_size = max(1, min(batch_size, fit_rows))
            internal = fit_rows if chunk_size * rows > fit_rows else None
        else:
            chunk_size = max(1, min(batch_size, fit_rows // rows))
    sharded = rank_and_world()[1] > 1

    with _attribution_mode(module, x), _private_rng(x):
        ref = _reference_center(spec, module, base, card)
        refs = _references(ref, scale, card, seed) if ref is not None else ref

        def one_chunk(_k: int, chunk: slice) -> Result:
            # captum draws noise from torch's RNG and GradientShap's path points from NumPy's.
            torch.manual_seed(seed + chunk.start)
            np.random.seed((seed + chunk.start) % 2**32)
            a, d = run(spec, Chunk(module, x[chunk], target[chunk], base[chunk], refs, scale, card,
                                   n_steps, return_delta, internal))
            a = a.detach().float()
            d = None if d is None else d.detach().float().reshape(-1)
            if sharded:  # exchanged between ranks (map_units pickles): CPU tensors
                a, d = a.cpu(), None if d is None else d.cpu()
            return a, d

        # Chunk by chunk: only one chunk's expanded rows and autograd graph are alive at a time
        # (and under torch.distributed, chunks are shared out between the ranks).
        parts = map_units(one_chunk, n, chunk_size)
    out = torch.cat([a for a, _ in parts]).to(x.device) if parts else _empty(x, card)
    if return_delta:
        deltas = [d for _, d in parts if d is not None]
        return out, (torch.cat(deltas).to(x.device) if deltas else torch.zeros(0, device=x.device))
    return out


def _reference_center(spec: MethodSpec, module: nn.Module, base: Tensor, card: AuditCard) -> Tensor | None:
    """GradientSHAP's one reference (mean baseline), in embedding space for text."""
    if not spec.references:
        return None
    if card.task == TEXT:
        with torch.no_grad():
            return _embedding_layer(module)(base).mean(0)  # type: ignore[misc]
    return base.mean(0)


def _empty(x: Tensor, card: AuditCard) -> Tensor:
    return torch.zeros(x.shape, dtype=torch.float32, device=x.device)


# ----------------------------------------------------------------------------- summaries


def global_importance(attributions: Tensor, feature_names: list[str]) -> list[dict[str, Any]]:
    """Global feature importance of tabular attributions.

    Args:
        attributions: ``[N, F]`` per-sample attributions (logit units).
        feature_names: the ``F`` feature names, in column order.

    Returns:
        one dict per feature, sorted by ``mean_abs`` descending:
        ``{"feature": name, "mean_abs": mean |attr|, "mean_signed": mean attr, "rank": 1..F}``.
    """
    if attributions.dim() != 2 or attributions.shape[1] != len(feature_names):
        raise AttributionError(
            f"attributions must be [N, F] with F = {len(feature_names)} feature names; got "
            f"{list(attributions.shape)}"
        )
    if attributions.shape[0] == 0:
        raise AttributionError("global_importance needs at least one sample's attributions")
    a = attributions.detach().double().cpu()
    mean_abs, mean_signed = a.abs().mean(0).tolist(), a.mean(0).tolist()
    order = sorted(range(len(feature_names)), key=lambda i: -mean_abs[i])
    return [
        {"feature": feature_names[i], "mean_abs": _num(mean_abs[i]), "mean_signed": _num(mean_signed[i]),
         "rank": rank}
        for rank, i in enumerate(order, start=1)
    ]


def _num(v: float, digits: int = 6) -> float | None:
    """A JSON-safe rounded float (None for NaN or infinity, which JSON cannot hold)."""
    return round(float(v), digits) if math.isfinite(v) else None


def _rounded(a: np.ndarray, digits: int = 4) -> Any:
    """Nested lists of floats rounded to ``digits`` (None where not finite)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.round(a, digits).astype(object)
    out[~np.isfinite(a)] = None
    return out.tolist()


def gallery(
    attributions: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    pred: Tensor,
    indices: list[int],
    card: AuditCard,
    max_items: int = 8,
) -> list[dict[str, Any]]:
    """A bounded per-sample gallery of attributions, as plain JSON-ready data.

    Args:
        attributions: ``{method: attributions}``, each as returned by :func:`attribute` for ``x``.
        x: the explained inputs ``[N, ...]``; y: true labels ``[N]``; pred: predictions ``[N]``.
        indices: positions in ``x`` to show; the first ``max_items`` are used.
        card: gives class names, feature names and the vocabulary.

    Returns:
        one dict per sample: ``{"index", "label", "label_name", "prediction", "prediction_name",
        "input", "attributions": {method: ...}}``, values rounded to 4 decimals. Per task:

        - images: ``input`` the pixels, ``[H][W]`` for one channel else ``[H][W][C]``;
          each attribution ``[H][W]`` summed over channels;
        - text: ``input`` the tokens (decoded via the vocabulary, pads dropped); each
          attribution the list of per-token scores aligned with those tokens;
        - tabular: ``input`` ``{feature: value}``; each attribution ``{feature: score}``.
    """
    n = x.shape[0]
    if y.shape != (n,) or pred.shape != (n,):
        raise AttributionError(f"y and pred must be [N] = [{n}]; got {list(y.shape)} and {list(pred.shape)}")
    for name, a in attributions.items():
        want = list(x.shape[:2]) if card.task == TEXT else list(x.shape)
        if list(a.shape) != want:
            raise AttributionError(f"attributions of {name!r} are {list(a.shape)}; expected {want} (as x)")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise AttributionError(f"gallery indices {bad[:5]} are outside [0, {n})")
    names = card.class_names
    xs = x.detach().cpu()
    attrs = {k: v.detach().cpu().double() for k, v in attributions.items()}

    def class_name(c: int) -> str | None:
        return names[c] if 0 <= c < len(names) else None

    items = []
    for i in list(indices)[: max(0, max_items)]:
        label, p = int(y[i]), int(pred[i])
        item: dict[str, Any] = {
            "index": int(i), "label": label, "label_name": class_name(label),
            "prediction": p, "prediction_name": class_name(p),
        }
        if card.task == TEXT:
            vocab = card.text.vocab  # type: ignore[union-attr]
            keep = (xs[i] != card.text.pad_id).numpy()  # type: ignore[union-attr]
            item["input"] = [vocab[int(t)] for t in xs[i][keep]]
            item["attributions"] = {k: _rounded(a[i].numpy()[keep]) for k, a in attrs.items()}
        elif card.task == TABULAR:
            feats = [f.name for f in card.features]  # type: ignore[union-attr]
            item["input"] = dict(zip(feats, _rounded(xs[i].numpy())))
            item["attributions"] = {k: dict(zip(feats, _rounded(a[i].numpy()))) for k, a in attrs.items()}
        else:
            img = xs[i].numpy()
            item["input"] = _rounded(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
            item["attributions"] = {k: _rounded(a[i].sum(0).numpy()) for k, a in attrs.items()}
        items.append(item)
    return items
