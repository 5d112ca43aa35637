"""GAN artifact metrics: sample quality, class coverage, memorisation, and attributions of the
discriminator and of the latent space.

Pure functions: NumPy arrays or torch tensors in, plain JSON-able dicts out (floats, ints,
bools, None, lists, dicts). Images are ``[N, C, H, W]`` float in the data's bounds (the zoo's
digits: ``[N, 1, 8, 8]`` in [0, 1]). A *judge* is a trained classifier of the real data with
an ``embed(x) -> [N, D]`` feature method (the zoo's :class:`~auditkit.zoo.models.DigitsCNN`).

Thresholds used to raise flags are module constants, documented where they are used.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from captum.attr import IntegratedGradients
from scipy import linalg
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from auditkit.card import AuditCard

# Flags (see each function's docstring for why these values).
COLLAPSE_ENTROPY = 0.8  # normalised class entropy below this: mode collapse
MEMO_RATIO = 0.8  # train/test NN-distance ratio, relative to real data's, below this: suspected
MEMO_NEAR_COPY_FRACTION = 0.1  # more near-copies of training images than this: suspected
NEAR_COPY_QUANTILE = 0.05  # near-copy: closer to train than this quantile of real test→train
FID_EPS = 1e-6  # ridge added to both covariances when sqrtm of their product is ill-behaved
FID_IMAG_TOL = 1e-3  # largest tolerated imaginary part of sqrtm's diagonal, relative


class GenerativeInputError(ValueError):
    """Bad input to a GAN metric. The message says what is wrong and how to fix it."""


# ----------------------------------------------------------------------------- helpers


def _numpy(a: Any, name: str) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise GenerativeInputError(
            f"{name} must be a numeric array or tensor; got {type(a).__name__}"
        ) from None
    return arr


def _tensor(a: Any, name: str, device: torch.device | str = "cpu") -> Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, Tensor):
        raise GenerativeInputError(f"{name} must be a NumPy array or torch tensor; got {type(a).__name__}")
    if not a.is_floating_point():
        raise GenerativeInputError(f"{name} must be floating point (images); got {a.dtype}")
    if a.dim() < 2 or a.shape[0] == 0:
        raise GenerativeInputError(f"{name} must be a non-empty batch [N, ...]; got shape {list(a.shape)}")
    if not torch.isfinite(a).all():
        raise GenerativeInputError(f"{name} contains NaN or infinite values; clean the data first")
    return a.detach().to(device=device, dtype=torch.float32)


def _same_item_shape(named: dict[str, Tensor]) -> None:
    shapes = {k: list(v.shape[1:]) for k, v in named.items()}
    if len({str(s) for s in shapes.values()}) > 1:
        desc = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise GenerativeInputError(f"all image sets must have the same per-sample shape; got {desc}")


def _device(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode (BatchNorm running statistics), restoring their modes after."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, was in zip(modules, modes):
            m.train(was)


def _rounded(a: Any, digits: int = 4) -> Any:
    """Nested lists of floats rounded to ``digits`` (None where not finite)."""
    arr = np.asarray(a.detach().cpu().numpy() if isinstance(a, Tensor) else a, dtype=np.float64)
    out = np.round(arr, digits).astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def _num(v: float, digits: int = 6) -> float | None:
    """A JSON-safe float (None for NaN or infinity)."""
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


def image_map(x: Tensor) -> Any:
    """One image ``[C, H, W]`` as nested lists: ``[H][W]`` for one channel, else ``[H][W][C]``."""
    x = x.detach().cpu()
    return _rounded(x[0] if x.shape[0] == 1 else x.permute(1, 2, 0), 3)


@torch.no_grad()
def _batched(fn: Any, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([fn(x[s : s + batch_size]) for s in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def judge_probs(judge: nn.Module, x: Any, batch_size: int = 512) -> np.ndarray:
    """Softmax class probabilities ``[N, C]`` of ``judge`` on images ``x`` ``[N, ...]`` (eval mode)."""
    xt = _tensor(x, "images", _device(judge))
    with eval_mode(judge):
        logits = _batched(judge, xt, batch_size)
    if logits.dim() != 2:
        raise GenerativeInputError(f"the judge must return logits [N, C]; got {list(logits.shape)}")
    return torch.softmax(logits.float(), 1).cpu().numpy().astype(np.float64)


@torch.no_grad()
def judge_features(judge: nn.Module, x: Any, batch_size: int = 512) -> np.ndarray:
    """Judge features ``judge.embed(x)`` ``[N, D]`` as float64 NumPy (eval mode)."""
    embed = getattr(judge, "embed", None)
    if not callable(embed):
        raise GenerativeInputError(
            f"the judge ({type(judge).__name__}) has no embed(x) feature method; use a zoo "
            "classifier such as cnn-digits"
        )
    xt = _tensor(x, "images", _device(judge))
    with eval_mode(judge):
        feats = _batched(embed, xt, batch_size)
    return feats.reshape(feats.shape[0], -1).double().cpu().numpy()


# ----------------------------------------------------------------------------- quality


def frechet_distance(feats_a: Any, feats_b: Any, eps: float = FID_EPS) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``d = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})``
    (Heusel et al. 2017), with ``mu``/``S`` the sample means and covariances.

    Args:
        feats_a: ``[N, D]`` features (N >= 2), e.g. a judge's penultimate activations.
        feats_b: ``[M, D]`` features (M >= 2), same ``D``.
        eps: ridge for ill-conditioned covariances (see below).

    Returns:
        the distance, in squared feature units; >= 0 (tiny negative round-off is clipped to 0).

    Numerics (as pytorch-fid does): ``scipy.linalg.sqrtm`` of the product of two (often
    singular) covariances can be inaccurate (scipy warns that the matrix is singular), return
    non-finite values or a complex result. In any of these cases, or when the imaginary part of
    its diagonal exceeds ``1e-3`` relative to the covariances' scale, the square root is
    recomputed once with ``eps * I`` added to both covariances (and the distance is that of
    the ridged Gaussians; accepted unless non-finite or still far from real); the remaining
    tiny imaginary part (round-off) is dropped by taking the real part.

    Raises:
        GenerativeInputError: not 2-D, different ``D``, fewer than 2 rows, or non-finite values;
            or a distance that stays non-finite after the ridge.
    """
    a, b = _numpy(feats_a, "feats_a"), _numpy(feats_b, "feats_b")
    for name, f in (("feats_a", a), ("feats_b", b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise GenerativeInputError(f"{name} must be [N, D] with N >= 2 rows; got shape {list(f.shape)}")
        if not np.isfinite(f).all():
            raise GenerativeInputError(f"{name} contains NaN or infinite values")
    if a.shape[1] != b.shape[1]:
        raise GenerativeInputError(
            f"feature sizes differ: feats_a has D={a.shape[1]}, feats_b D={b.shape[1]}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))

    def trace_sqrt(x: np.ndarray, y: np.ndarray, strict: bool) -> tuple[float, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", linalg.LinAlgWarning)
            root = linalg.sqrtm(x @ y)
        singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
        if (strict and singular) or not np.isfinite(root).all():
            return float("nan"), False
        scale = max(1.0, float(np.abs(np.diag(x)).max()), float(np.abs(np.diag(y)).max()))
        if np.iscomplexobj(root) and np.abs(np.diag(root).imag).max() > FID_IMAG_TOL * scale:
            return float("nan"), False
        return float(np.trace(root.real)), True

    tr, ok = trace_sqrt(s_a, s_b, strict=True)
    if not ok:
        # The distance between the ridged Gaussians: identical inputs still give exactly 0.
        ridge = eps * np.eye(s_a.shape[0])
        s_a, s_b = s_a + ridge, s_b + ridge
        tr, ok = trace_sqrt(s_a, s_b, strict=False)
    diff = mu_a - mu_b
    d = float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * tr)
    if not ok or not math.isfinite(d):
        raise GenerativeInputError(
            "the Fréchet distance is not finite even with a ridge on the covariances; use more "
            "samples than feature dimensions or check the features for constant columns"
        )
    return max(0.0, d)


def sample_quality(
    judge: nn.Module, samples: Any, real_test: Any, real_train: Any, seed: int = 0, n_reference: int = 5
) -> dict[str, Any]:
    """FID of generated samples against real test images, with a real-vs-real reference.

    Features are ``judge.embed`` (for the zoo's CNN, the 128 penultimate activations): a FID in
    the judge's feature space, not Inception's, so values are comparable only within one judge.
    FID is biased by the number of samples, so both distances use the same counts: ``n =
    min(N, K)`` samples and ``n`` training images, each against all ``M`` test images. The
    reference says how far two real sets of those sizes are apart; with a few hundred images in
    128 dimensions one draw varies by about +-30 %, so it is the mean over ``n_reference``
    seeded draws of training images (its spread is reported too).

    Args:
        judge: classifier with ``embed(x) -> [N, D]``.
        samples: generated images ``[N, C, H, W]``; real_test ``[M, C, H, W]``; real_train
            ``[K, C, H, W]``; all in the data's bounds, N, M, K >= 2.
        seed: seeds the subset draws.
        n_reference: draws of training images averaged into the reference (>= 1).

    Returns:
        ``{"fid", "fid_real_vs_real" (mean of the draws), "fid_real_vs_real_std", "fid_ratio"
        (fid / reference, None if the reference is 0), "n_samples", "n_train_reference",
        "n_reference_draws", "n_test", "feature_dim", "features"}``.
    """
    if n_reference < 1:
        raise GenerativeInputError(f"n_reference must be >= 1; got {n_reference}")
    dev = _device(judge)
    s, te, tr = (_tensor(v, n, dev) for v, n in ((samples, "samples"), (real_test, "real_test"),
                                                  (real_train, "real_train")))
    _same_item_shape({"samples": s, "real_test": te, "real_train": tr})
    rng = np.random.default_rng(seed)
    n = min(s.shape[0], tr.shape[0])
    s_idx = np.sort(rng.choice(s.shape[0], n, replace=False))
    f_s = judge_features(judge, s[torch.from_numpy(s_idx).to(dev)])
    f_te = judge_features(judge, te)
    f_tr = judge_features(judge, tr)
    fid = frechet_distance(f_s, f_te)
    refs = [frechet_distance(f_tr[np.sort(rng.choice(tr.shape[0], n, replace=False))], f_te)
            for _ in range(n_reference)]
    ref = float(np.mean(refs))
    return {
        "fid": _num(fid),
        "fid_real_vs_real": _num(ref),
        "fid_real_vs_real_std": _num(float(np.std(refs))),
        "fid_ratio": _num(fid / ref) if ref > 0 else None,
        "n_samples": int(n),
        "n_train_reference": int(n),
        "n_reference_draws": int(n_reference),
        "n_test": int(te.shape[0]),
        "feature_dim": int(f_s.shape[1]),
        "features": f"{type(judge).__name__}.embed",
    }


def class_coverage(
    judge: nn.Module, samples: Any, n_classes: int, confidence: float = 0.9, min_share: float = 0.01
) -> dict[str, Any]:
    """Which classes a generator produces, as seen by a judge classifier.

    Args:
        judge: classifier returning logits ``[N, n_classes]``.
        samples: generated images ``[N, C, H, W]``.
        n_classes: number of classes of the real data.
        confidence: a sample is *confident* when the judge's top probability is >= this.
        min_share: a class is *covered* when at least ``max(1, ceil(min_share * n_confident))``
            confident samples fall in it (a stray sample does not cover a class).

    Returns:
        ``histogram`` (predicted-class counts over all samples), ``confident_histogram``,
        ``confident_fraction``, ``classes_covered``, ``missing_classes``, ``entropy`` (of the
        all-sample histogram, divided by ``log(n_classes)``: 1 = uniform, 0 = one class),
        ``largest_share`` (and ``largest_class``), ``mean_confidence`` and ``mode_collapse``:
        True when entropy < 0.8 or fewer than ``n_classes`` classes are covered. 0.8 is about
        what two-thirds of 10 classes in equal parts give (log 7 / log 10 = 0.85), or one class
        taking half of the samples.
    """
    if n_classes < 2:
        raise GenerativeInputError(f"n_classes must be >= 2; got {n_classes}")
    if not 0.0 < confidence <= 1.0:
        raise GenerativeInputError(f"confidence must lie in (0, 1]; got {confidence}")
    probs = judge_probs(judge, samples)
    if probs.shape[1] != n_classes:
        raise GenerativeInputError(
            f"the judge outputs {probs.shape[1]} classes but n_classes is {n_classes}; use the "
            "judge trained on the GAN's dataset"
        )
    pred, conf = probs.argmax(1), probs.max(1)
    confident = conf >= confidence
    hist = np.bincount(pred, minlength=n_classes)
    conf_hist = np.bincount(pred[confident], minlength=n_classes)
    need = max(1, math.ceil(min_share * int(confident.sum())))
    covered = conf_hist >= need
    share = hist / hist.sum()
    nz = share[share > 0]
    entropy = float(-(nz * np.log(nz)).sum() / math.log(n_classes))
    collapse = entropy < COLLAPSE_ENTROPY or int(covered.sum()) < n_classes
    return {
        "n_samples": int(len(pred)),
        "confidence_threshold": confidence,
        "histogram": hist.tolist(),
        "confident_histogram": conf_hist.tolist(),
        "confident_fraction": _num(confident.mean()),
        "mean_confidence": _num(conf.mean()),
        "classes_covered": int(covered.sum()),
        "missing_classes": [int(c) for c in np.flatnonzero(~covered)],
        "entropy": _num(entropy),
        "largest_share": _num(share.max()),
        "largest_class": int(share.argmax()),
        "mode_collapse": bool(collapse),
        "entropy_threshold": COLLAPSE_ENTROPY,
    }


# ----------------------------------------------------------------------------- memorisation


def _nearest(a: Tensor, b: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """For each row of ``a`` ``[N, P]``: L2 distance to its nearest row of ``b`` ``[K, P]`` and its index."""
    dists, idx = [], []
    for s in range(0, a.shape[0], batch_size):
        d = torch.cdist(a[s : s + batch_size], b)
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists), torch.cat(idx)


def _nearest_other(a: Tensor, batch_size: int) -> Tensor:
    """For each row of ``a`` ``[M, P]``: L2 distance to its nearest *other* row (leave-one-out)."""
    out = []
    for s in range(0, a.shape[0], batch_size):
        d = torch.cdist(a[s : s + batch_size], a)
        rows = torch.arange(d.shape[0])
        d[rows, rows + s] = float("inf")  # a row is not its own neighbour
        out.append(d.min(1).values)
    return torch.cat(out)


def memorisation(
    samples: Any, train: Any, test: Any, n_pairs: int = 4, batch_size: int = 512
) -> dict[str, Any]:
    """Are generated samples copies of training images? Nearest neighbours in pixel space.

    For each sample, the L2 distance (pixel units) to its nearest training image and to its
    nearest test image; ``ratio = median NN distance to train / median NN distance to test``.
    A generator that learned the distribution is about as close to test images as to training
    images; one that memorised is much closer to training images.

    The nearest of more candidates is closer, so ``ratio`` is below 1 even for new real images
    when train is larger than test (about 0.8 on the digits, 1347 vs 450 images). It is
    therefore compared with ``ratio_real``, the same ratio for the real test images themselves
    (nearest training image / nearest *other* test image), whose candidate pools have the same
    sizes: ``relative_ratio = ratio / ratio_real`` is about 1 for a generator of new images.

    Near-copy: a sample closer to its nearest training image than the 5th percentile of the real
    test images' distances to their nearest training image (how close a *new* real image gets
    to train by chance). Real held-out data gives about 5 % near-copies.

    Memorisation is suspected when ``relative_ratio < 0.8`` (samples systematically 20 % closer
    to train than new real images are) or more than 10 % of samples are near-copies (twice what
    real held-out data shows; this catches a minority of copies that leaves the median alone).
    Written here with ``torch.cdist``; no library has this test for images.

    Args:
        samples: generated ``[N, ...]``; train ``[K, ...]``; test ``[M, ...]`` real images
            (M >= 2), all with the same per-sample shape.
        n_pairs: how many closest sample/train pairs to return for a gallery.
        batch_size: rows per ``torch.cdist`` call (memory bound).

    Returns:
        ``median_nn_train``, ``median_nn_test``, ``ratio`` (None if the test median is 0),
        ``ratio_real``, ``relative_ratio``, ``near_copy_threshold``, ``near_copy_fraction``,
        ``closest_pairs`` (``[{"sample", "train", "distance"}]``, closest first),
        ``memorisation_suspected`` and the thresholds.
    """
    s, tr, te = (_tensor(v, n) for v, n in ((samples, "samples"), (train, "train"), (test, "test")))
    _same_item_shape({"samples": s, "train": tr, "test": te})
    if te.shape[0] < 2:
        raise GenerativeInputError("test needs at least 2 images (for the near-copy quantile)")
    s, tr, te = s.flatten(1), tr.flatten(1), te.flatten(1)

    d_train, nn_train = _nearest(s, tr, batch_size)
    d_test, _ = _nearest(s, te, batch_size)
    d_test_to_train, _ = _nearest(te, tr, batch_size)
    d_test_to_test = _nearest_other(te, batch_size)  # each test image's nearest *other* one

    med_train, med_test = float(d_train.median()), float(d_test.median())
    ratio = med_train / med_test if med_test > 0 else None
    med_real_test = float(d_test_to_test.median())
    ratio_real = float(d_test_to_train.median()) / med_real_test if med_real_test > 0 else None
    relative = ratio / ratio_real if ratio is not None and ratio_real else None
    threshold = float(torch.quantile(d_test_to_train.double(), NEAR_COPY_QUANTILE))
    near = float((d_train < threshold).double().mean())
    suspected = (relative is not None and relative < MEMO_RATIO) or near > MEMO_NEAR_COPY_FRACTION
    order = torch.argsort(d_train)[: max(0, n_pairs)].tolist()
    return {
        "n_samples": int(s.shape[0]),
        "n_train": int(tr.shape[0]),
        "n_test": int(te.shape[0]),
        "median_nn_train": _num(med_train),
        "median_nn_test": _num(med_test),
        "ratio": _num(ratio) if ratio is not None else None,
        "ratio_real": _num(ratio_real) if ratio_real is not None else None,
        "relative_ratio": _num(relative) if relative is not None else None,
        "near_copy_threshold": _num(threshold),
        "near_copy_fraction": _num(near),
        "closest_pairs": [
            {"sample": int(i), "train": int(nn_train[i]), "distance": _num(float(d_train[i]))}
            for i in order
        ],
        "memorisation_suspected": bool(suspected),
        "relative_ratio_threshold": MEMO_RATIO,
        "near_copy_fraction_threshold": MEMO_NEAR_COPY_FRACTION,
        "near_copy_quantile": NEAR_COPY_QUANTILE,
    }


# ----------------------------------------------------------------------------- discriminator


class RealnessLogits(nn.Module):
    """A discriminator ``[N, ...] -> [N, 1]`` seen as a two-class classifier ``[N, 2]``.

    Logits ``[0, d]``: class 1 ("real") has the realness logit ``d`` and class 0 a constant 0,
    so the softmax of class 1 is ``sigmoid(d)`` and attributions of target 1 are those of ``d``.
    This lets :func:`auditkit.explain.methods.attribute` (which explains a class logit) run
    unchanged on a discriminator.
    """

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: Tensor) -> Tensor:
        d = self.discriminator(x).reshape(x.shape[0], 1)
        return torch.cat([torch.zeros_like(d), d], dim=1)


def discriminator_attributions(
    gan: nn.Module,
    real: Any,
    fake: Any,
    methods: Sequence[str] = ("saliency", "ig"),
    seed: int = 0,
    bounds: tuple[float, float] = (0.0, 1.0),
    n_explain: int = 64,
    n_examples: int = 4,
) -> dict[str, Any]:
    """What the discriminator looks at when it calls an image real, on real and generated images.

    Attributions of the realness logit (through :class:`RealnessLogits`, target "real") by
    auditkit's captum-based :func:`~auditkit.explain.methods.attribute`, with an
    image-classification card built for the discriminator (``bounds`` are the data's; the IG
    baseline is the black image).

    Args:
        gan: has ``.discriminator`` mapping ``[N, C, H, W] -> [N, 1]`` logits.
        real: real (test) images ``[N, C, H, W]``; fake: generated images ``[M, C, H, W]``.
        methods: registered attribution method names.
        seed: seeds noisy methods.
        n_explain: images per group whose attributions are averaged (the first ones).
        n_examples: images per group kept as per-sample maps.

    Returns:
        ``realness`` (mean ``sigmoid(d)`` on all real and all fake images, the shares of real
        images it judges real and of fake images it judges fake (logit > 0 / <= 0), and the
        ROC-AUC of ``d`` separating them: 0.5 = the discriminator cannot tell), and per group
        ``{"real"|"fake": {"mean_abs_map": {method: [H][W]}, "examples": [{"input", "realness",
        "maps": {method: [H][W]}}]}}`` (maps summed over channels, rounded); methods that cannot
        run are listed in ``skipped`` with the reason.
    """
    from auditkit.explain.methods import METHODS, AttributionError, attribute, available_methods

    disc = getattr(gan, "discriminator", None)
    if not isinstance(disc, nn.Module):
        raise GenerativeInputError("the GAN has no .discriminator module; pass an eager GAN (zoo format)")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise GenerativeInputError(f"unknown attribution method(s) {unknown}; known: {', '.join(METHODS)}")
    dev = _device(disc)
    xr, xf = _tensor(real, "real", dev), _tensor(fake, "fake", dev)
    _same_item_shape({"real": xr, "fake": xf})
    model = RealnessLogits(disc)
    card = AuditCard(task="image-classification", input_shape=list(xr.shape[1:]), bounds=bounds,
                     class_names=["fake", "real"], name="discriminator")
    with eval_mode(model):
        d_real = _batched(lambda x: disc(x).reshape(-1), xr, 512).double().cpu().numpy()
        d_fake = _batched(lambda x: disc(x).reshape(-1), xf, 512).double().cpu().numpy()
    y = np.r_[np.ones(len(d_real)), np.zeros(len(d_fake))]
    sig = lambda d: 1.0 / (1.0 + np.exp(-d))  # noqa: E731
    out: dict[str, Any] = {
        "realness": {
            "mean_on_real": _num(sig(d_real).mean()),
            "mean_on_fake": _num(sig(d_fake).mean()),
            "auc_real_vs_fake": _num(roc_auc_score(y, np.r_[d_real, d_fake])),
            # The discriminator's own decisions (logit > 0, i.e. sigmoid > 0.5).
            "real_judged_real": _num((d_real > 0).mean()),
            "fake_judged_fake": _num((d_fake <= 0).mean()),
            "n_real": int(len(d_real)),
            "n_fake": int(len(d_fake)),
        },
    }
    reasons = available_methods(card, model, eager=not isinstance(disc, torch.jit.ScriptModule))
    run = [m for m in methods if reasons.get(m) is None]
    out["skipped"] = {m: reasons[m] for m in methods if reasons.get(m) is not None}
    for group, x, d in (("real", xr, d_real), ("fake", xf, d_fake)):
        x = x[:n_explain]
        target = torch.ones(x.shape[0], dtype=torch.int64, device=dev)
        maps: dict[str, Tensor] = {}
        for m in run:
            try:
                a = attribute(m, model, x, target, card, seed=seed)
            except AttributionError as exc:  # e.g. a model the registry did not foresee
                out["skipped"][m] = str(exc)
                continue
            maps[m] = a.sum(1).cpu().double()  # [n, H, W]
        out[group] = {
            "n_explained": int(x.shape[0]),
            "mean_abs_map": {m: _rounded(a.abs().mean(0)) for m, a in maps.items()},
            "examples": [
                {"input": image_map(x[i]), "realness": _num(sig(d[i])),
                 "maps": {m: _rounded(a[i]) for m, a in maps.items()}}
                for i in range(min(n_examples, x.shape[0]))
            ],
        }
    out["methods"] = [m for m in run if m not in out["skipped"]]
    return out


# ----------------------------------------------------------------------------- latent space


def latent_attributions(
    gan: nn.Module,
    judge: nn.Module,
    n_samples: int,
    seed: int = 0,
    top_k: int = 4,
    step: float = 2.0,
    n_random: int = 8,
    n_steps: int = 32,
    latent_dim: int | None = None,
) -> dict[str, Any]:
    """Which latent dimensions decide the class of the generated image.

    Integrated gradients (captum ``IntegratedGradients``) of the judge's logit for its predicted
    class with respect to the latent vector, through the generator: ``f(z) = judge(G(z))``,
    baseline ``z = 0``, generator and judge in eval mode (BatchNorm running statistics). The
    mean ``|attribution|`` per dimension ranks the dimensions.

    Finite-difference check of the ranking (written here; no library has it): the ``top_k``
    dimensions are shifted together by ``+step`` and by ``-step`` (in units of the N(0, 1)
    prior's std), and the fraction of the ``2 * n_samples`` shifted latents whose predicted
    class changes is compared with the same shift of ``top_k`` random other dimensions,
    averaged over ``n_random`` draws. If the attributions mean anything, the top dimensions
    change the class more often.

    Args:
        gan: has ``.generator`` mapping ``[N, latent_dim] -> [N, C, H, W]``.
        judge: classifier of the generated images, logits ``[N, n_classes]``.
        n_samples: latent vectors drawn from N(0, I) with ``seed`` (same draw as
            :func:`gan_samples` with that seed).
        latent_dim: defaults to ``gan.latent_dim``.

    Returns:
        ``mean_abs_attribution`` ``[latent_dim]``, ``mean_attribution`` (signed), ``top_dims``,
        ``flip_rate_top``, ``flip_rate_random``, ``top_changes_more`` (bool),
        ``ig_delta_mean_abs`` (captum's convergence delta, logit units) and the settings.
    """
    gen = getattr(gan, "generator", None)
    if not isinstance(gen, nn.Module):
        raise GenerativeInputError("the GAN has no .generator module; pass an eager GAN (zoo format)")
    dim = int(latent_dim or getattr(gan, "latent_dim", 0) or 0)
    if dim < 1:
        raise GenerativeInputError("latent_dim is unknown; pass latent_dim (the card's latent_dim)")
    if n_samples < 1:
        raise GenerativeInputError(f"n_samples must be >= 1; got {n_samples}")
    if not 1 <= top_k < dim:
        raise GenerativeInputError(f"top_k must lie in [1, {dim - 1}] for latent_dim {dim}; got {top_k}")
    dev = _device(gen)
    z = torch.randn(n_samples, dim, generator=torch.Generator().manual_seed(seed)).to(dev)

    def f(latent: Tensor) -> Tensor:
        return judge(gen(latent))

    @torch.no_grad()
    def predict(latent: Tensor) -> Tensor:
        return _batched(f, latent, 512).argmax(1)

    with eval_mode(gen, judge), torch.enable_grad():
        pred = predict(z)
        attr, delta = IntegratedGradients(f).attribute(
            z, baselines=torch.zeros_like(z), target=pred, n_steps=n_steps,
            internal_batch_size=512, return_convergence_delta=True,
        )
        mean_abs = attr.detach().abs().mean(0).double().cpu()
        top = torch.argsort(mean_abs, descending=True)[:top_k].tolist()

        def flip_rate(dims: list[int]) -> float:
            changed = 0
            for sign in (1.0, -1.0):
                moved = z.clone()
                moved[:, dims] += sign * step
                changed += int((predict(moved) != pred).sum())
            return changed / (2 * n_samples)

        rng = np.random.default_rng(seed)
        others = [d for d in range(dim) if d not in top]
        pool = others if len(others) >= top_k else list(range(dim))
        top_rate = flip_rate(top)
        random_rates = [flip_rate(sorted(rng.choice(pool, top_k, replace=False).tolist()))
                        for _ in range(n_random)]
    random_rate = float(np.mean(random_rates))
    return {
        "latent_dim": dim,
        "n_samples": int(n_samples),
        "method": "ig",
        "baseline": "z = 0",
        "mean_abs_attribution": _rounded(mean_abs.numpy(), 6),
        "mean_attribution": _rounded(attr.detach().mean(0).double().cpu().numpy(), 6),
        "top_dims": [int(d) for d in top],
        "top_k": int(top_k),
        "step": float(step),
        "flip_rate_top": _num(top_rate),
        "flip_rate_random": _num(random_rate),
        "flip_rate_random_draws": [_num(r) for r in random_rates],
        "top_changes_more": bool(top_rate > random_rate),
        "ig_delta_mean_abs": _num(float(delta.detach().abs().mean())),
        "predicted_histogram": np.bincount(pred.cpu().numpy()).tolist(),
    }


def gan_samples(gan: nn.Module, n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` generated images ``[n, *image_shape]`` from a seeded N(0, I) latent draw, in eval mode.

    ``gan`` has ``latent_dim`` and maps ``[n, latent_dim]`` latents to images; its train/eval mode
    is restored afterwards. The zoo's evaluation and the discriminator attack share this draw.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, int(getattr(gan, "latent_dim")), generator=g)
    was_training = gan.training
    gan.eval()
    with torch.no_grad():
        out = gan(z.to(device)).cpu()
    gan.train(was_training)
    return out
