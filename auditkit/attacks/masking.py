"""Gradient-masking checks: is the robustness the ensemble measured real, or an artefact of
gradients that lead nowhere?

The checks follow Carlini et al. 2019, "On Evaluating Adversarial Robustness" (Sec. 5 and the
checklist of its appendix), and the flags AutoAttack raises (Croce & Hein 2020). Written by hand:
no installed library runs them. Each check reuses the figures and per-sample records of the
ensemble the scan already ran (``EnsembleResult``) and runs extra attacks only where a check
needs them, on a seeded subset of clean-correct samples (``Settings.subset``: 32 / 64 / 128 for
the quick / standard / thorough budgets).

Checks, in the order they are reported (``MASKING_SIGNATURES`` marks those whose failure means
"gradient masking suspected"):

* ``eval-mode``: the model was loaded, or is now, in train mode (BatchNorm statistics and
  Dropout change every output).
* ``deterministic-forward``: repeated forward passes on the same input, in eval mode, give the
  same logits (:func:`forward_determinism`, which the robustness check also runs *before*
  attacking); if not, the defence is randomised and its attacks need EOT. When the ensembles
  ran under an EOT protocol (``EnsembleResult.eot``) the check warns instead of failing, and
  every extra attack and decision here uses the same protocol: EOT gradients, majority votes
  over ``eot.votes`` forwards. Randomness then cannot pass for masking: a per-sample signature
  needs a majority of forwards to agree, not one lucky draw (the unbounded FMN half of
  ``large-eps-reaches-chance`` is skipped: foolbox's FMN cannot average over the randomness).
* ``no-zero-gradients``: the input gradient of the cross-entropy is exactly zero or not finite
  for at most 1% of the samples.
* ``monotone-in-eps``: an iterative attack run *independently* at each eps (the ensemble carries
  successes up and failures down the eps grid, so its own records are monotone by construction)
  must not leave more samples robust at a larger eps.
* ``large-eps-reaches-chance``: APGD-CE at an eps that lets every input reach the centre of the
  input box (Linf: half the range; L2: half the box's diameter) brings accuracy to chance
  (1/C) or below, and an unbounded minimum-norm attack (FMN) fools almost every sample.
* ``iterative-beats-single-step``: no sample fooled by FGSM (FGM for L2) at an eps survives
  every iterative gradient attack at that eps.
* ``more-steps-restarts-change-little``: APGD-CE with 4-5x the iterations and more restarts, on
  the samples the ensemble left robust at a middle eps, lowers robust accuracy by <= 2 points.
* ``black-box-not-stronger``: no sample fooled by a black-box attack (Square, HopSkipJump,
  Boundary) at an eps survives every white-box gradient attack at that eps.
* ``random-noise-not-stronger`` (our tenth check, Carlini et al.'s "brute-force random
  search"): random points of the eps-ball (Linf: random vertices; L2: random directions on the
  sphere) must not fool samples that every white-box gradient attack left robust. It needs no
  surrogate model, which a transfer check would.
* ``ce-and-margin-agree``: APGD-CE and APGD-DLR robust accuracy at a middle eps differ by at
  most 5 points; CE far above DLR means saturated cross-entropy (over-confident logits).

Per-sample signatures (single-step or black-box or random noise beating the gradient attacks)
warn on one sample and fail on at least 2 samples that are also more than 2% of those checked.

A check that raises (an attack's internals, numerical errors) is reported as ``skipped`` with
the error as evidence and listed in the result's ``errors``; the other checks still run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditkit.attacks.apgd import APGD
from auditkit.attacks.common import EOT, check_bounds, describe_error, eval_mode, is_adversarial, norm_of
from auditkit.attacks.ensemble import EnsembleResult
from auditkit.attacks.registry import BUDGET_NAMES, get_attack, is_adversarial_batched
from auditkit.stats import mcnemar_exact, wilson_interval

Status = Literal["pass", "warn", "fail", "skipped"]

CHECK_NAMES = (
    "eval-mode",
    "deterministic-forward",
    "no-zero-gradients",
    "monotone-in-eps",
    "large-eps-reaches-chance",
    "iterative-beats-single-step",
    "more-steps-restarts-change-little",
    "black-box-not-stronger",
    "random-noise-not-stronger",
    "ce-and-margin-agree",
)
# A failure of one of these means the gradient attacks are unreliable on this model.
MASKING_SIGNATURES = frozenset({
    "monotone-in-eps",
    "large-eps-reaches-chance",
    "iterative-beats-single-step",
    "more-steps-restarts-change-little",
    "black-box-not-stronger",
    "random-noise-not-stronger",
    "no-zero-gradients",
})

SINGLE_STEP = {"linf": "fgsm", "l2": "fgm-l2"}
FEW_FRACTION = 0.02  # per-sample signatures fail above this fraction (and at >= 2 samples)
ZERO_GRAD_FRACTION = 0.01
CHANCE_MARGIN = 0.05  # large-eps accuracy may exceed 1/C by this much (or by one sample)
MORE_STEPS_WARN, MORE_STEPS_FAIL = 2.0, 5.0  # points of robust accuracy
CE_DLR_WARN, CE_DLR_FAIL = 5.0, 10.0  # points of robust accuracy
_STATUS_RANK = {"skipped": 0, "pass": 1, "warn": 2, "fail": 3}


@dataclass(frozen=True)
class Settings:
    """Extra work per budget: subset size (clean-correct samples that extra attacks run on),
    APGD-CE iteration factor and extra restarts for ``more-steps-restarts-change-little``, and
    random draws per sample for ``random-noise-not-stronger``."""

    subset: int
    iter_factor: int
    extra_restarts: int
    noise_draws: int


SETTINGS = {
    "quick": Settings(subset=32, iter_factor=4, extra_restarts=1, noise_draws=20),
    "standard": Settings(subset=64, iter_factor=5, extra_restarts=2, noise_draws=50),
    "thorough": Settings(subset=128, iter_factor=5, extra_restarts=4, noise_draws=200),
}


@dataclass
class MaskingCheck:
    """The outcome of one check.

    Attributes:
        name: one of ``CHECK_NAMES``.
        status: ``"pass"``, ``"warn"``, ``"fail"`` or ``"skipped"`` (with the reason as evidence).
        evidence: one or more sentences with the numbers behind the status.
        data: the figures, plain JSON; per-norm checks keep one entry per norm.
    """

    name: str
    status: Status
    evidence: str
    data: dict[str, Any] = field(default_factory=dict)


def masking_checks(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    ensembles: dict[str, EnsembleResult],
    bounds: tuple[float, float],
    *,
    seed: int = 0,
    budget: str = "standard",
    batch_size: int = 256,
    loaded_in_train_mode: bool = False,
    track: Callable[..., Iterable[Any]] = lambda it, **kw: it,
    determinism: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the gradient-masking checks listed in the module docstring.

    Args:
        model: classifier mapping ``[N, ...]`` inputs to logits ``[N, C]`` (an ``AuditModel`` is
            accepted: its module is used and its ``loaded_in_train_mode`` counts). The checks run
            it in eval mode and give every submodule its mode back afterwards.
        x: ``[N, ...]`` float inputs inside ``bounds``, the samples the ensembles ran on.
        y: ``[N]`` integer labels.
        ensembles: norm (``"linf"``, ``"l2"``) -> the :class:`EnsembleResult` of
            ``run_ensemble`` on ``(x, y)``; may be empty (the per-norm checks are then skipped).
        bounds: valid input range ``(low, high)``, the ensembles' bounds.
        seed: seed of the subset choice and of every extra attack.
        budget: ``"quick"``, ``"standard"`` or ``"thorough"``: settings of the extra attacks
            (``SETTINGS`` and the registry's per-budget settings).
        batch_size: samples per forward/attack batch.
        loaded_in_train_mode: the model file had the model in train mode (the loader then put
            it in eval mode, so the module alone no longer shows it).
        track: progress wrapper ``track(iterable, desc=..., total=...)`` (tqdm-like).
        determinism: the result of :func:`forward_determinism` already measured on these
            inputs (the robustness check's probe), reused by ``deterministic-forward``; None
            measures it here.

    Returns:
        ``{"checks": [asdict(MaskingCheck), ...] in CHECK_NAMES order, "suspected": bool,
        "n_fail": int, "n_warn": int, "eot": EOT.as_dict() or None, "errors": [{"check",
        "norm" (None for model-level checks), "error"}]}``; ``suspected`` is True when a check
        of ``MASKING_SIGNATURES`` fails. Figures are in points of accuracy (0-100) or sample
        counts. The extra attacks use the ensembles' EOT protocol when they ran under one.
    """
    module = model if isinstance(model, nn.Module) else getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise ValueError("model must be a torch nn.Module (or an AuditModel)")
    loaded_in_train_mode = bool(loaded_in_train_mode or getattr(model, "loaded_in_train_mode", False))
    if budget not in SETTINGS:
        raise ValueError(f"unknown budget {budget!r}: use one of {', '.join(BUDGET_NAMES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    x, y, lo, hi = _check_inputs(module, x, y, bounds)
    if not isinstance(ensembles, dict):
        raise ValueError("ensembles must be a dict mapping a norm ('linf', 'l2') to run_ensemble's result")
    for key, ens in ensembles.items():
        _check_ensemble(key, ens, y, (lo, hi))

    # The mode check must see the modes as given, before anything switches them.
    mode_check = _check_eval_mode(module, loaded_in_train_mode)
    cfg = SETTINGS[budget]
    checks: list[MaskingCheck] = [mode_check]
    eot = next((ens.eot for _, ens in sorted(ensembles.items()) if ens.eot is not None), None)
    with eval_mode(module):
        audits = {
            norm: _NormAudit(module, x, y, ens, (lo, hi), seed, budget, cfg, batch_size)
            for norm, ens in sorted(ensembles.items())
        }
        steps: list[tuple[str, Callable[[], MaskingCheck]]] = [
            ("deterministic-forward", lambda: _check_deterministic(module, x, batch_size, eot, determinism)),
            ("no-zero-gradients", lambda: _check_zero_gradients(module, x, y, batch_size)),
        ]
        for name in CHECK_NAMES[3:]:
            steps.append((name, lambda name=name: _per_norm(name, audits)))
        for name, step in track(steps, desc="masking checks", total=len(steps)):
            try:
                checks.append(step())
            except Exception as exc:  # noqa: BLE001  (reported as not run; the other checks go on)
                msg = describe_error(exc)
                checks.append(MaskingCheck(name, "skipped", f"Could not run: {msg}.", {"error": msg}))
    n_fail = sum(c.status == "fail" for c in checks)
    errors = []
    for c in checks:
        if "error" in c.data:
            errors.append({"check": c.name, "norm": None, "error": c.data["error"]})
        for norm, d in c.data.items():
            if norm in audits and isinstance(d, dict) and "error" in d:
                errors.append({"check": c.name, "norm": norm, "error": d["error"]})
    return {
        "checks": [asdict(c) for c in checks],
        "suspected": any(c.status == "fail" and c.name in MASKING_SIGNATURES for c in checks),
        "n_fail": n_fail,
        "n_warn": sum(c.status == "warn" for c in checks),
        "eot": eot.as_dict() if eot is not None else None,
        "errors": errors,
    }


# ----------------------------------------------------------------------------- input checks


def _check_inputs(module: nn.Module, x: Any, y: Any, bounds: tuple[float, float]) -> tuple[Tensor, Tensor, float, float]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.dim() < 2 or x.shape[0] == 0 or not x.is_floating_point():
        raise ValueError(f"x must be a non-empty float tensor [N, ...], got {x.dtype} {list(x.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (x.shape[0],):
        raise ValueError(f"y must be integer class labels of shape [{x.shape[0]}], got {y.dtype} {list(y.shape)}")
    lo, hi = check_bounds(x, bounds)  # the samples the ensembles ran on, in the model's domain
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else x.device
    return x.detach().to(device), y.to(device=device, dtype=torch.int64), lo, hi


def _check_ensemble(key: Any, ens: Any, y: Tensor, bounds: tuple[float, float]) -> None:
    if not isinstance(ens, EnsembleResult):
        raise ValueError(f"ensembles[{key!r}] must be the EnsembleResult of run_ensemble, got {type(ens).__name__}")
    if key != ens.norm:
        raise ValueError(f"ensembles[{key!r}] holds a {ens.norm} ensemble: key it by its norm {ens.norm!r}")
    if len(ens.labels) != len(y) or not np.array_equal(ens.labels, y.cpu().numpy()):
        raise ValueError(
            f"the {key} ensemble ran on other samples ({len(ens.labels)} labels, x has {len(y)}): "
            "pass the x and y given to run_ensemble"
        )
    if tuple(float(b) for b in ens.bounds) != bounds:
        raise ValueError(f"the {key} ensemble ran with bounds {ens.bounds}, not {bounds}: pass the same bounds")


# ----------------------------------------------------------------------------- model-level checks


def _check_eval_mode(module: nn.Module, loaded_in_train_mode: bool) -> MaskingCheck:
    """Fail when the model was loaded in train mode or any submodule is in train mode now."""
    training = [name or "<model>" for name, m in module.named_modules() if m.training]
    # Layers whose output depends on the mode, to point at the likely culprits.
    sensitive = [
        name or "<model>" for name, m in module.named_modules()
        if m.training and isinstance(m, (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd))
    ]
    data = {"loaded_in_train_mode": loaded_in_train_mode, "n_modules_in_train_mode": len(training),
            "modules_in_train_mode": training[:20], "mode_sensitive_in_train_mode": sensitive[:20]}
    if not loaded_in_train_mode and not training:
        n_modules = sum(1 for _ in module.modules())
        return MaskingCheck("eval-mode", "pass", f"All {n_modules} modules of the model are in eval mode.", data)
    parts = []
    if loaded_in_train_mode:
        parts.append("The model file holds the model in train mode.")
    if training:
        listed = ", ".join(training[:5]) + (" ..." if len(training) > 5 else "")
        parts.append(f"{len(training)} submodule(s) are in train mode now ({listed}).")
    if sensitive:
        parts.append(f"BatchNorm/Dropout layers in train mode: {', '.join(sensitive[:5])}.")
    parts.append("BatchNorm batch statistics and active Dropout distort every figure: call model.eval() "
                 "before saving or auditing (the audit itself ran in eval mode).")
    return MaskingCheck("eval-mode", "fail", " ".join(parts), data)


DETERMINISM_FORWARDS = 5  # forward passes compared (AutoAttack's check_randomized uses 5)
DETERMINISM_SAMPLES = 64  # at most this many inputs


def forward_determinism(
    model: nn.Module, x: Tensor, batch_size: int = 256, forwards: int = DETERMINISM_FORWARDS
) -> dict[str, Any]:
    """Is the forward pass deterministic? ``forwards`` eval-mode passes (no grad) on the same
    first ``min(64, batch_size, N)`` inputs of ``x [N, ...]``, each compared with the first.

    Bit-identical is the norm on a CPU; the tolerance ``1e-5 * (1 + max |logit|)`` absorbs the
    float reordering of nondeterministic kernels (GPU atomics), so only real randomness (noise,
    random transforms, dropout left on) counts.

    Returns:
        ``{"deterministic": bool, "n": int (inputs), "forwards": int, "max_abs_logit_diff":
        float | None (None: outputs of different shapes), "n_prediction_changed": int
        (inputs whose top-1 class changed in some pass), "tolerance": float}``. The model's
        modes are restored afterwards.
    """
    module = model if isinstance(model, nn.Module) else getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise ValueError("model must be a torch nn.Module (or an AuditModel)")
    if isinstance(forwards, bool) or not isinstance(forwards, int) or forwards < 2:
        raise ValueError(f"forwards must be an integer >= 2, got {forwards!r}")
    xs = x[: min(DETERMINISM_SAMPLES, batch_size, len(x))]
    with torch.no_grad(), eval_mode(module):
        outs = [module(xs).float() for _ in range(forwards)]
    a = outs[0]
    data: dict[str, Any] = {"deterministic": True, "n": len(xs), "forwards": forwards, "max_abs_logit_diff": 0.0,
                            "n_prediction_changed": 0, "tolerance": 0.0}
    if any(b.shape != a.shape for b in outs[1:]):
        data.update(deterministic=False, max_abs_logit_diff=None)
        return data
    scale = float(torch.nan_to_num(a.abs(), nan=0.0, posinf=0.0).max()) if a.numel() else 0.0
    tolerance = 1e-5 * (1.0 + scale)
    max_diff = 0.0
    changed = torch.zeros(len(xs), dtype=torch.bool, device=a.device)
    for b in outs[1:]:
        diff = (a - b).abs()
        if diff.numel():
            max_diff = max(max_diff, float(torch.nan_to_num(diff, nan=float("inf")).max()))
        if a.dim() == 2:
            changed |= a.argmax(1) != b.argmax(1)
    n_pred = int(changed.sum())
    data.update(deterministic=max_diff <= tolerance and n_pred == 0, max_abs_logit_diff=max_diff,
                n_prediction_changed=n_pred, tolerance=tolerance)
    return data


def _check_deterministic(
    module: nn.Module, x: Tensor, batch_size: int, eot: EOT | None = None, probe: dict[str, Any] | None = None
) -> MaskingCheck:
    """Repeated eval-mode forward passes on the same inputs must give the same logits
    (:func:`forward_determinism`); a randomised model evaluated under EOT only warns."""
    data = dict(probe) if probe is not None else forward_determinism(module, x, batch_size)
    n, forwards = data["n"], data["forwards"]
    if data["deterministic"]:
        return MaskingCheck("deterministic-forward", "pass",
                            f"{forwards} forward passes on {n} inputs agree (max logit difference "
                            f"{data['max_abs_logit_diff']:.3g}).", data)
    if data["max_abs_logit_diff"] is None:
        what = f"{forwards} forward passes on the same {n} inputs returned outputs of different shapes"
    else:
        what = (f"{forwards} eval-mode forward passes on the same {n} inputs differ (max logit difference "
                f"{data['max_abs_logit_diff']:.3g}, {data['n_prediction_changed']} prediction(s) changed)")
    if eot is not None:
        data["eot"] = eot.as_dict()
        return MaskingCheck(
            "deterministic-forward", "warn",
            f"{what}: the model is randomised. This was considered: the ensemble and these checks ran under "
            f"Expectation over Transformation (EOT, AutoAttack's rand version: gradients averaged over {eot.samples} "
            f"passes, every robust/broken decision a majority vote over {eot.votes} forwards), so randomness "
            "alone neither hides adversarial points from the gradient attacks nor lets one lucky forward pass "
            "for a masking signature.", data)
    return MaskingCheck(
        "deterministic-forward", "fail",
        f"{what}: the model is randomised. Gradient attacks then need Expectation over "
        "Transformation (average the gradient over many passes, APGD's eot_iter) and accuracy should be averaged "
        "over repeated passes; without EOT the robust accuracy reported is an overestimate.", data)


def _check_zero_gradients(module: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> MaskingCheck:
    """Fraction of samples whose input gradient of the CE loss is exactly zero or not finite."""
    zero = np.zeros(len(x), bool)
    bad = np.zeros(len(x), bool)
    for s in range(0, len(x), batch_size):
        xb = x[s : s + batch_size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = module(xb)
            loss = F.cross_entropy(logits.float(), y[s : s + batch_size], reduction="none")
            if loss.requires_grad:
                (g,) = torch.autograd.grad(loss.sum(), xb, allow_unused=True)
            else:  # the output does not depend differentiably on the input at all
                g = None
        if g is None:
            zero[s : s + batch_size] = True
            continue
        flat = g.flatten(1)
        finite = torch.isfinite(flat).all(1) & torch.isfinite(loss.detach())
        bad[s : s + batch_size] = (~finite).cpu().numpy()
        zero[s : s + batch_size] = (finite & (flat == 0).all(1)).cpu().numpy()
    n = len(x)
    n_zero, n_bad = int(zero.sum()), int(bad.sum())
    frac = (n_zero + n_bad) / n
    data = {"n": n, "n_zero": n_zero, "n_nonfinite": n_bad, "fraction": frac}
    text = (f"The input gradient of the cross-entropy is exactly zero for {n_zero} and not finite for {n_bad} "
            f"of {n} samples ({100 * frac:.1f}%).")
    if frac > ZERO_GRAD_FRACTION:
        return MaskingCheck("no-zero-gradients", "fail", text + " Gradient attacks cannot move these samples "
                            "(shattered or saturated gradients, e.g. input quantisation or a non-differentiable "
                            "preprocessing step): their robust accuracy means nothing. Use BPDA or the "
                            "black-box attacks.", data)
    if n_zero + n_bad:
        return MaskingCheck("no-zero-gradients", "warn", text, data)
    return MaskingCheck("no-zero-gradients", "pass", text, data)


# ----------------------------------------------------------------------------- per-norm checks


class _NormAudit:
    """One norm's ensemble, the subset extra attacks run on, and a cache of extra runs."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, ens: EnsembleResult, bounds: tuple[float, float],
                 seed: int, budget: str, cfg: Settings, batch_size: int) -> None:
        self.model, self.x, self.y, self.ens, self.bounds = model, x, y, ens, bounds
        self.seed, self.budget, self.cfg, self.batch_size = seed, budget, cfg, batch_size
        self.norm = ens.norm
        self.eot = ens.eot  # the randomised-model protocol the ensemble ran under, or None
        self.votes = ens.eot.votes if ens.eot is not None else 1
        self.correct = ens.clean_correct
        self.n = len(ens.labels)
        self.pos = [(k, e) for k, e in enumerate(ens.epsilons) if e > 0]
        rng = np.random.default_rng(seed)
        self.order = rng.permutation(np.flatnonzero(self.correct))  # seeded priority of samples
        self.subset = np.sort(self.order[: cfg.subset])
        self.apgd_ce = f"apgd-ce-{self.norm}"
        self.grad = [a for a in ens.attacks if ens.per_attack[a]["family"] == "gradient"]
        self.iterative = [a for a in self.grad if a != SINGLE_STEP[self.norm]]
        self.black = [a for a in ens.attacks if ens.per_attack[a]["family"] != "gradient"]
        self._runs: dict[tuple[str, float], dict[int, bool]] = {}
        with torch.no_grad():
            self.n_classes = int(model(x[:1]).shape[1])

    def attack(self, name: str, eps: float, rows: np.ndarray) -> np.ndarray:
        """bool ``[len(rows)]``: a registered fixed-eps attack (budget settings) fools the row at
        ``eps``. Each eps is its own run (no carry-over); results are cached per row."""
        cache = self._runs.setdefault((name, float(eps)), {})
        todo = np.array([r for r in rows if int(r) not in cache], dtype=np.int64)
        if todo.size:
            idx = torch.as_tensor(todo, device=self.x.device)
            out = get_attack(name).run(self.model, self.x[idx], self.y[idx], [eps], self.bounds, self.seed,
                                       budget=self.budget, batch_size=self.batch_size, eot=self.eot)[0]
            for r, ok in zip(todo, out.success.cpu().numpy()):
                cache[int(r)] = bool(ok)
        return np.array([cache[int(r)] for r in rows], dtype=bool)

    def records(self, names: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(broken, unknown)`` bool ``[N]`` at eps index ``k`` for the attacks ``names``:
        broken = one of them fooled the sample; unknown = clean-correct, none fooled it and one
        of them did not run on it (an attack outside ``names`` had broken it first), or
        ``names`` is empty."""
        broken = np.zeros(self.n, bool)
        skipped = np.zeros(self.n, bool)
        for a in names:
            broken |= self.ens.success[a][:, k] == 1
            skipped |= self.ens.success[a][:, k] < 0
        if not names:
            skipped[:] = True
        return broken, self.correct & ~broken & skipped

    def resolve(self, rows: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """Run APGD-CE at ``eps`` on at most ``subset`` of ``rows`` (seeded priority); return
        ``(resolved, fooled)`` bool ``[len(rows)]``."""
        rank = {int(r): i for i, r in enumerate(self.order)}
        chosen = sorted(rows.tolist(), key=lambda r: rank.get(int(r), self.n))[: self.cfg.subset]
        fooled = np.zeros(len(rows), bool)
        resolved = np.isin(rows, chosen)
        if chosen:
            fooled[resolved] = self.attack(self.apgd_ce, eps, rows[resolved])
        return resolved, fooled

    def white_box_robust(self, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(resolved, robust)`` bool ``[len(rows)]``: every white-box gradient attack of the
        ensemble (or APGD-CE, where the records do not say) left the row robust at eps ``k``."""
        broken, unknown = self.records(self.grad, k)
        robust = self.correct[rows] & ~broken[rows]
        resolved = np.ones(len(rows), bool)
        unk = unknown[rows]
        if unk.any():
            res, fooled = self.resolve(rows[unk], self.ens.epsilons[k])
            resolved[unk] = res
            robust[np.flatnonzero(unk)[fooled]] = False
        return resolved, robust

    def confirm_robust(self, rows: np.ndarray, eps: float) -> np.ndarray:
        """bool ``[len(rows)]``: rows still robust after APGD-CE at ``eps``.

        A black-box or random-noise success on a row the ensemble's gradient attacks missed is a
        masking signature only if a strong gradient attack misses it too: under the quick budget
        (FGSM, few-step PGD) the miss is usually the weak attack's, not the model's gradients.
        When APGD-CE is already in the ensemble its verdict stands and nothing is re-run.
        """
        if self.apgd_ce in self.grad or len(rows) == 0:
            return np.ones(len(rows), bool)
        return ~self.attack(self.apgd_ce, eps, rows)

    def middle(self) -> tuple[int, float] | None:
        """The grid eps > 0 where the ensemble's robust accuracy is nearest half the clean
        accuracy (the most informative point); None if the grid has no eps > 0."""
        if not self.pos:
            return None
        half = self.correct.mean() / 2
        return min(self.pos, key=lambda ke: (abs(self.ens.robust_at(ke[1]).mean() - half), ke[1]))


def _per_norm(name: str, audits: dict[str, _NormAudit]) -> MaskingCheck:
    """Run check ``name`` for every norm; combine: worst status, evidence per norm."""
    if not audits:
        return MaskingCheck(name, "skipped", "No attack ensemble was run, so there is nothing to check.", {})
    fn = _NORM_CHECKS[name]
    results = {norm: _guarded(fn, a) for norm, a in audits.items()}
    status = max((r[0] for r in results.values()), key=_STATUS_RANK.__getitem__)
    evidence = " ".join(f"[{norm}] {r[1]}" for norm, r in results.items())
    return MaskingCheck(name, status, evidence, {norm: r[2] for norm, r in results.items()})


NormResult = tuple[Status, str, dict[str, Any]]


def _guarded(fn: Callable[[_NormAudit], NormResult], a: _NormAudit) -> NormResult:
    """One norm's check; if it raises, "skipped" with the error (the other norm still runs)."""
    try:
        return fn(a)
    except Exception as exc:  # noqa: BLE001  (reported, listed in masking_checks' errors)
        msg = describe_error(exc)
        return "skipped", f"Could not run: {msg}.", {"error": msg}


def _few(count: int, n: int) -> Status:
    """Status of a per-sample signature seen on ``count`` of ``n`` samples."""
    if count >= 2 and count > FEW_FRACTION * n:
        return "fail"
    return "warn" if count else "pass"


def _check_monotone(a: _NormAudit) -> NormResult:
    if not a.pos or a.subset.size == 0:
        return "skipped", "No eps > 0 in the grid or no clean-correct sample.", {}
    name = next((n for n in a.iterative if get_attack(n).kind == "fixed-eps"), a.apgd_ce)
    rows, n = a.subset, len(a.subset)
    robust = [n] + [int((~a.attack(name, e, rows)).sum()) for _, e in a.pos]
    grid = [0.0] + [e for _, e in a.pos]
    worst = (0, 0, 0)  # (rise in samples, i, j)
    for i in range(len(robust)):
        for j in range(i + 1, len(robust)):
            if robust[j] - robust[i] > worst[0]:
                worst = (robust[j] - robust[i], i, j)
    # The ensemble's own per-attack figures, where known, must not rise either.
    ens_rises = []
    for att in a.ens.attacks:
        accs = a.ens.per_attack[att]["robust_accuracy"]
        known = [(e, v) for e, v in zip(a.ens.epsilons, accs) if v is not None]
        for (e1, v1), (e2, v2) in zip(known, known[1:]):
            if round((v2 - v1) * a.n) > 1:
                ens_rises.append({"attack": att, "eps": [e1, e2], "robust_accuracy": [v1, v2]})
    data = {"attack": name, "n": n, "epsilons": grid, "n_robust": robust, "ensemble_rises": ens_rises}
    curve = ", ".join(f"{e:g}: {100 * r / n:.1f}%" for e, r in zip(grid, robust))
    text = f"{name} run independently at each eps on {n} clean-correct samples: robust accuracy {curve}."
    rise, i, j = worst
    if rise <= 1 and not ens_rises:
        return "pass", text + " It never rises by more than 1 sample.", data
    if rise > 1:
        lo_j = wilson_interval(robust[j], n)[0]
        hi_i = wilson_interval(robust[i], n)[1]
        data["rise"] = {"eps": [grid[i], grid[j]], "samples": rise, "ci_overlap": lo_j <= hi_i}
        msg = (f" It rises by {rise} samples from eps {grid[i]:g} to {grid[j]:g}: more perturbation should "
               "never help a sample survive, so the attack's steps are not following the loss.")
        if lo_j > hi_i:
            return "fail", text + msg, data
        text += msg + " (within the Wilson 95% intervals, so it may be noise)."
    if ens_rises:
        return "fail", text + f" The ensemble's own figures rise for {', '.join(r['attack'] for r in ens_rises)}.", data
    return "warn", text, data


def _large_eps(a: _NormAudit) -> float:
    lo, hi = a.bounds
    if a.norm == "linf":
        return (hi - lo) / 2
    return (hi - lo) * math.sqrt(math.prod(a.x.shape[1:])) / 2


def _check_large_eps(a: _NormAudit) -> NormResult:
    if a.subset.size == 0:
        return "skipped", "No clean-correct sample to attack.", {}
    eps = _large_eps(a)
    rows, n = a.subset, len(a.subset)
    acc = float((~a.attack(a.apgd_ce, eps, rows)).mean())
    chance = 1.0 / a.n_classes
    limit = chance + max(CHANCE_MARGIN, 1.0 / n)
    # Unbounded minimum-norm attacks: from the ensemble's records if it ran any, else FMN here
    # (not under EOT: foolbox's FMN takes one forward per step and asserts on random outputs).
    min_norm = [m for m in a.grad if get_attack(m).kind == "min-norm"]
    if a.eot is not None and not min_norm:
        n_mn, n_missed, mn_names = 0, 0, []
    elif min_norm:
        found = np.zeros(a.n, bool)
        for m in min_norm:
            found |= np.isfinite(a.ens.attack_norm[m])
        cc = np.flatnonzero(a.correct)
        n_mn, n_missed, mn_names = len(cc), int((~found[cc]).sum()), min_norm
    else:
        idx = torch.as_tensor(rows, device=a.x.device)
        out = get_attack(f"fmn-{a.norm}").run(a.model, a.x[idx], a.y[idx], None, a.bounds, a.seed,
                                              budget=a.budget, batch_size=a.batch_size)[0]
        ok = out.success.cpu().numpy() & np.isfinite(norm_of(out.x_adv - a.x[idx], a.norm).cpu().numpy())
        n_mn, n_missed, mn_names = n, int((~ok).sum()), [f"fmn-{a.norm}"]
    mn_ok = n_missed <= max(1, FEW_FRACTION * n_mn)
    acc_ok = acc <= limit
    data = {"eps": eps, "n": n, "accuracy": acc, "chance": chance, "limit": limit, "attack": a.apgd_ce,
            "min_norm_attacks": mn_names, "min_norm_n": n_mn, "min_norm_missed": n_missed}
    text = (f"{a.apgd_ce} at eps {eps:.4g} (every input can reach the centre of the box) leaves "
            f"{100 * acc:.1f}% of {n} clean-correct samples correct (chance {100 * chance:.1f}%, limit "
            f"{100 * limit:.1f}%); ")
    if mn_names:
        text += f"{'/'.join(mn_names)} (unbounded) found no adversarial for {n_missed} of {n_mn}."
    else:
        text += ("no unbounded minimum-norm attack was run: the model is randomised and FMN cannot average "
                 "over its randomness (EOT).")
    if acc_ok and mn_ok:
        return "pass", text, data
    why = []
    if not acc_ok:
        why.append("the gradient attack cannot bring accuracy to chance even with an enormous budget")
    if not mn_ok:
        why.append("the unbounded attack does not reach the decision boundary")
    return "fail", text + " " + "; ".join(why).capitalize() + ": gradients do not lead to adversarial points.", data


def _check_single_step(a: _NormAudit) -> NormResult:
    if not a.pos:
        return "skipped", "No eps > 0 in the grid.", {}
    single = SINGLE_STEP[a.norm]
    per_eps = []
    for k, e in a.pos:
        it_broken, _ = a.records(a.iterative, k)
        rows = np.flatnonzero(a.correct & ~it_broken)  # only these can show the signature
        if single in a.ens.attacks:
            rec = a.ens.success[single][rows, k]
            fg = rec == 1
            unk = rec < 0
            if unk.any():
                fg[unk] = a.attack(single, e, rows[unk])
        else:
            fg = a.attack(single, e, rows)
        cand = rows[fg]
        # Iterative records of the candidates: all 0 -> survived them; otherwise run APGD-CE.
        _, unknown = a.records(a.iterative, k)
        unk = unknown[cand]
        survived = ~unk
        resolved = np.ones(len(cand), bool)
        if unk.any():
            res, fooled = a.resolve(cand[unk], e)
            resolved[unk] = res
            survived[np.flatnonzero(unk)] = res & ~fooled
        count = int(survived.sum())
        n = int(a.correct.sum()) - int((~resolved).sum())
        per_eps.append({"eps": e, "n": n, "n_single_step_only": count, "n_unresolved": int((~resolved).sum()),
                        "samples": cand[survived].tolist()[:20]})
    worst = max(per_eps, key=lambda d: (d["n_single_step_only"] / max(d["n"], 1), d["eps"]))
    status = _few(worst["n_single_step_only"], worst["n"])
    data = {"single_step": single, "iterative": a.iterative or [a.apgd_ce], "per_eps": per_eps}
    text = (f"Samples fooled by {single} but by no iterative gradient attack: "
            + ", ".join(f"{d['n_single_step_only']}/{d['n']} at eps {d['eps']:g}" for d in per_eps) + ".")
    if status != "pass":
        text += (" A single gradient step finding what many steps miss means the iterative attacks are "
                 "stuck (masked or noisy gradients, too small a step).")
    return status, text, data


def _check_more_steps(a: _NormAudit) -> NormResult:
    mid = a.middle()
    if mid is None or a.subset.size == 0:
        return "skipped", "No eps > 0 in the grid or no clean-correct sample.", {}
    k, e = mid
    rows, n = a.subset, len(a.subset)
    robust_rows = rows[a.ens.robust_at(e)[rows]]
    base = get_attack(a.apgd_ce).settings(a.budget, a.eot)
    n_iter = base.get("n_iter", 100) * a.cfg.iter_factor
    # Under EOT a restart costs eot.samples times more and AutoAttack's rand version uses none:
    # the stronger run there is the longer one.
    restarts = 1 if a.eot is not None else base.get("n_restarts", 1) + a.cfg.extra_restarts
    fooled = np.zeros(len(robust_rows), bool)
    if robust_rows.size:
        attack = APGD(norm=a.norm, loss="ce", n_iter=n_iter, n_restarts=restarts, seed=a.seed + 1,
                      eot_iter=base.get("eot_iter", 1))
        for s in range(0, len(robust_rows), a.batch_size):
            idx = torch.as_tensor(robust_rows[s : s + a.batch_size], device=a.x.device)
            out = attack.run(a.model, a.x[idx], a.y[idx], e, a.bounds)
            ok = out.success
            if a.eot is not None:  # decided as the ensemble decides: a majority of eot.votes forwards
                ok = ok & is_adversarial(a.model, out.x_adv, a.y[idx], a.votes)
            fooled[s : s + a.batch_size] = ok.cpu().numpy()
    before = 100 * len(robust_rows) / n
    after = 100 * (len(robust_rows) - int(fooled.sum())) / n
    drop = before - after
    data = {"eps": e, "n": n, "n_iter": n_iter, "n_restarts": restarts, "robust_accuracy_reported": before,
            "robust_accuracy_stronger": after, "drop_points": drop, "n_newly_fooled": int(fooled.sum())}
    text = (f"At eps {e:g}, APGD-CE with {n_iter} iterations and {restarts} restarts lowers the ensemble's robust "
            f"accuracy on {n} clean-correct samples from {before:.1f}% to {after:.1f}% ({drop:.1f} points).")
    if drop > MORE_STEPS_FAIL and a.eot is not None and int(fooled.sum()) < 2:
        # One sample of a randomised model may flip on its votes alone (a per-sample signature
        # needs 2 samples elsewhere too): not enough to suspect masking.
        return "warn", text + (" The model is randomised (EOT) and a single sample may flip on the random votes "
                               "alone, so this is not counted as a failure; a longer attack may still help."), data
    if drop > MORE_STEPS_FAIL:
        return "fail", text + " The reported figure had not converged: raise the attack budget.", data
    if drop > MORE_STEPS_WARN:
        return "warn", text + " The reported figure is close to, but not at, convergence.", data
    return "pass", text, data


def _check_black_box(a: _NormAudit) -> NormResult:
    if not a.pos:
        return "skipped", "No eps > 0 in the grid.", {}
    own_run = not a.black
    names = a.black or [f"square-{a.norm}"]
    per_eps = []
    for k, e in a.pos:
        if own_run:
            # No black-box attack in the ensemble: run Square on the subset's white-box survivors.
            resolved, robust = a.white_box_robust(k, a.subset)
            rows = a.subset[resolved & robust]
            bb = np.zeros(a.n, bool)
            bb[rows] = a.attack(names[0], e, rows)
            n_base = len(a.subset)
        else:
            bb, _ = a.records(a.black, k)
            n_base = int(a.correct.sum())
        cand = np.flatnonzero(bb & a.correct)
        resolved, robust = a.white_box_robust(k, cand)
        robust[resolved & robust] = a.confirm_robust(cand[resolved & robust], e)
        count = int((resolved & robust).sum())
        n = n_base - int((~resolved).sum())
        per_eps.append({"eps": e, "n": n, "n_black_box_only": count, "n_black_box": int(len(cand)),
                        "n_unresolved": int((~resolved).sum()), "samples": cand[resolved & robust].tolist()[:20]})
    worst = max(per_eps, key=lambda d: (d["n_black_box_only"] / max(d["n"], 1), d["eps"]))
    status = _few(worst["n_black_box_only"], worst["n"])
    data = {"black_box": names, "white_box": list(dict.fromkeys([*a.grad, a.apgd_ce])), "ran_here": own_run,
            "per_eps": per_eps}
    text = (f"Samples fooled by {'/'.join(names)} but by no white-box gradient attack: "
            + ", ".join(f"{d['n_black_box_only']}/{d['n']} at eps {d['eps']:g}" for d in per_eps) + ".")
    if status == "fail":
        text += (" Black-box attacks never see gradients: beating the white-box attacks is the signature of "
                 "gradient masking, and the white-box figures overestimate robustness.")
    return status, text, data


def _check_random_noise(a: _NormAudit) -> NormResult:
    if not a.pos or a.subset.size == 0:
        return "skipped", "No eps > 0 in the grid or no clean-correct sample.", {}
    draws = a.cfg.noise_draws
    gen = torch.Generator(device=a.x.device).manual_seed(int(a.seed) + 7)
    per_eps = []
    for k, e in a.pos:
        resolved, robust = a.white_box_robust(k, a.subset)
        rows = a.subset[resolved & robust]
        hit = _noise_fools(a, rows, e, draws, gen)
        hit[hit] = a.confirm_robust(rows[hit], e)
        count = int(hit.sum())
        n = int(resolved.sum())
        per_eps.append({"eps": e, "n": n, "n_white_box_robust": len(rows), "n_noise_only": count,
                        "samples": rows[hit].tolist()[:20]})
    worst = max(per_eps, key=lambda d: (d["n_noise_only"] / max(d["n"], 1), d["eps"]))
    status = _few(worst["n_noise_only"], worst["n"])
    kind = "random vertices of the Linf ball" if a.norm == "linf" else "random points on the L2 sphere"
    data = {"draws": draws, "per_eps": per_eps}
    text = (f"{draws} {kind} per sample fool samples that every white-box gradient attack left robust: "
            + ", ".join(f"{d['n_noise_only']}/{d['n']} at eps {d['eps']:g}" for d in per_eps) + ".")
    if status == "fail":
        text += " Random search beating gradient attacks means the gradients point nowhere useful."
    return status, text, data


def _noise_fools(a: _NormAudit, rows: np.ndarray, eps: float, draws: int, gen: torch.Generator) -> np.ndarray:
    """bool ``[len(rows)]``: one of ``draws`` random perturbations of norm ``eps`` (clipped to
    the bounds) misclassifies the row."""
    hit = np.zeros(len(rows), bool)
    if rows.size == 0:
        return hit
    x = a.x[torch.as_tensor(rows, device=a.x.device)]
    y = a.y[torch.as_tensor(rows, device=a.x.device)]
    for _ in range(draws):
        if a.norm == "linf":
            delta = (torch.randint(0, 2, x.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1) * eps
        else:
            g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            delta = g * (eps / g.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, *([1] * (x.dim() - 1)))
        xn = (x + delta).clamp(*a.bounds)
        hit |= is_adversarial_batched(a.model, xn, y, a.batch_size, a.votes).cpu().numpy()
    return hit


def _check_ce_dlr(a: _NormAudit) -> NormResult:
    mid = a.middle()
    if mid is None or a.subset.size == 0:
        return "skipped", "No eps > 0 in the grid or no clean-correct sample.", {}
    _, e = mid
    rows, n = a.subset, len(a.subset)
    ce_fooled = a.attack(a.apgd_ce, e, rows)
    dlr_name = f"apgd-dlr-{a.norm}"
    dlr_fooled = a.attack(dlr_name, e, rows)
    ce, dlr = 100 * float((~ce_fooled).mean()), 100 * float((~dlr_fooled).mean())
    diff = ce - dlr
    data = {"eps": e, "n": n, "robust_accuracy_ce": ce, "robust_accuracy_dlr": dlr, "difference_points": diff}
    text = (f"At eps {e:g} on {n} clean-correct samples, {a.apgd_ce} leaves {ce:.1f}% robust and {dlr_name} "
            f"{dlr:.1f}% ({diff:+.1f} points).")
    if a.eot is not None and abs(diff) > CE_DLR_WARN:
        # A randomised model's votes are coin flips for samples near its boundary, so two
        # independent attacks disagree on some by chance: count only a significant difference.
        test = mcnemar_exact(~ce_fooled, ~dlr_fooled)
        data["mcnemar_p"] = test["p_value"]
        if test["p_value"] >= 0.05:
            return "pass", text + (f" The model is randomised (EOT): the difference is within what its random votes "
                                   f"produce (exact McNemar test on the per-sample outcomes, p = {test['p_value']:.2g})."), data
    if diff > CE_DLR_FAIL:
        return "fail", text + (" The cross-entropy attack is much weaker than the margin attack: CE saturates "
                               "on over-confident logits, so CE-only evaluations overestimate robustness."), data
    if abs(diff) > CE_DLR_WARN:
        return "warn", text + " The two losses disagree; trust the lower figure (the ensemble's worst case).", data
    return "pass", text, data


_NORM_CHECKS: dict[str, Callable[[_NormAudit], NormResult]] = {
    "monotone-in-eps": _check_monotone,
    "large-eps-reaches-chance": _check_large_eps,
    "iterative-beats-single-step": _check_single_step,
    "more-steps-restarts-change-little": _check_more_steps,
    "black-box-not-stronger": _check_black_box,
    "random-noise-not-stronger": _check_random_noise,
    "ce-and-margin-agree": _check_ce_dlr,
}
