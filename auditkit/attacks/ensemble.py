"""The AutoAttack-style worst-case ensemble (DESIGN.md §5, §7, §8).

Attacks run in a fixed order. A fixed-eps attack sweeps the eps grid from the largest eps down
and runs at each eps only on the samples that every attack so far has left robust at that eps
and that it has not already failed on at a larger eps (nested balls: robust there, robust
here); a min-norm attack runs once on every clean-correct sample and covers the whole curve.
Each sample keeps per-attack records (success at each eps, the smallest perturbation found) and
the worst case over attacks: ``min_norm`` (the smallest adversarial perturbation any attack
found) and ``broken_by``. Every robust-accuracy figure follows from the records:

    robust at eps  <=>  clean-correct and no adversarial point of norm <= eps (+ tolerance) found

The per-sample worst case over many diverse attacks, rather than any single attack, is what
makes the number credible (Croce & Hein 2020).

A randomised model (found by ``masking.forward_determinism`` before attacking) runs under the
``EOT`` protocol of AutoAttack's "rand" version (``EOT_ATTACKS``, ``EOT_BUDGETS``): EOT gradients,
and every decision, the clean prediction included, a majority vote over several forwards. An
attack that raises fails only its batch at that eps: the cells are recorded as ``ERROR`` with
the error under the attack, and the curve points it lacks are marked incomplete. Written by hand: foolbox has no ensemble runner,
and AutoAttack's own runner neither keeps per-sample records nor takes foolbox attacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from auditkit.attacks.common import EOT, check_bounds, check_norm, describe_error, eval_mode, norm_of, predict
from auditkit.attacks.registry import (
    BUDGET_NAMES,
    get_attack,
    list_attacks,
    norm_tolerance,
)
from auditkit.metrics import broken_at  # the one counting rule (also read by the gate and dashboard)
from auditkit.results import to_jsonable
from auditkit.stats import wilson_interval

# Attack order per budget and norm. Cheap attacks first, so that the expensive ones only see the
# samples that survive them; white-box before black-box, so that a black-box success on a sample
# the white-box attacks left robust is a gradient-masking signal. Names differ per norm where an
# attack exists for one norm only: FGSM is Linf (FGM is its L2 form), APGD-DLR is used for Linf
# (as AutoAttack's "rand"/"plus" versions do), Carlini-Wagner and Boundary are L2-only.
BUDGETS: dict[str, dict[str, list[str]]] = {
    "quick": {
        "linf": ["fgsm", "pgd-linf", "fmn-linf"],
        "l2": ["fgm-l2", "pgd-l2", "fmn-l2"],
    },
    # FMN first: one minimum-norm run settles every grid eps at or above each sample's norm, so
    # the fixed-eps attacks only confirm the eps below it, starting from FMN's point (WARM_START).
    "standard": {
        "linf": ["fmn-linf", "apgd-ce-linf", "apgd-t-linf", "square-linf"],
        "l2": ["fmn-l2", "apgd-ce-l2", "apgd-t-l2", "square-l2"],
    },
    "thorough": {
        "linf": ["apgd-ce-linf", "apgd-t-linf", "apgd-dlr-linf", "fmn-linf", "square-linf", "hsj-linf"],
        "l2": ["apgd-ce-l2", "apgd-t-l2", "fmn-l2", "cw-l2", "square-l2", "hsj-l2", "boundary-l2"],
    },
}

# Randomised models (a forward pass that is not deterministic) get AutoAttack's "rand" version
# instead: APGD-CE and APGD-DLR with Expectation over Transformation and a single restart, every
# decision a majority vote (``EOT``). Foolbox's attacks do not average over the randomness (and
# FMN's internal assertions fail on a random model), so they are left out. Per budget: passes
# averaged per gradient (20 as in AutoAttack) and forwards per robust/broken decision.
EOT_ATTACKS: dict[str, list[str]] = {
    "linf": ["apgd-ce-linf", "apgd-dlr-linf"],
    "l2": ["apgd-ce-l2", "apgd-dlr-l2"],
}
EOT_BUDGETS: dict[str, EOT] = {
    "quick": EOT(samples=20, votes=20),
    "standard": EOT(samples=20, votes=20, n_iter=100),
    "thorough": EOT(samples=20, votes=50, n_iter=100),
}

# Budgets whose fixed-eps attacks start from the smallest adversarial point found so far
# (projected into the eps-ball) instead of at random, where there is one (AttackSpec.warm_start).
WARM_START: dict[str, bool] = {"quick": False, "standard": True, "thorough": False}

# A sample whose smallest adversarial point so far (from any attack at any eps, e.g. FMN's) has
# a norm within NEAR_MARGIN above eps is the one whose verdict at eps is in doubt: the budgets
# in NEAR_SETTINGS give it, where the first (short, warm-started) run of an attack leaves it
# robust, a second run from a random start with these settings (AutoAttack-standard strength),
# keyed by attack name without its norm. Far samples, which the minimum-norm attack could not
# bring within 1 + NEAR_MARGIN of eps, keep the short run. 0.25: on a 450-digit scan, the
# samples a fixed-eps attack broke below FMN's norm had FMN norms up to 1.23x that eps
# (median 1.04); at 0.1, two cnn-digits-at samples (FMN 1.18x and 1.21x eps 0.2) were missed
# that AutoAttack and the longer random-start runs break (bench/README.md). The second run is
# AutoAttack's own APGD (CE 100 iterations, T 9 targets x 100) so that a near sample meets at
# least AutoAttack's gradient attacks; APGD-T 9 x 25 missed a ResNet sample 1.3% above eps that
# only 100 iterations break. A sample that has closed less than half of its gap to the boundary
# after 25 of the 100 iterations is discarded (``discard_after``, after A3; apgd.py): every
# sample those runs broke later had closed at least 65% by then. Square keeps 1000 queries
# (AutoAttack's 5000 broke no sample after its APGD on the three image benchmark models) and
# discards after 250 the samples that closed less than 30% (square.py).
# A sample the minimum-norm attack found no adversarial point for, at any norm, is in doubt at
# every eps too: on a model whose gradients lead somewhere, FMN reaches every clean-correct
# sample (all of them on the four benchmark models), so none means gradients that lead nowhere
# (masking), where Square's longer random search is what breaks samples; the nearness of a
# point some attack then found at a grid eps says nothing about the minimal norm.
NEAR_MARGIN = 0.25
NEAR_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {},
    "standard": {"apgd-ce": {"n_iter": 100, "discard_after": 25}, "apgd-t": {"n_iter": 100, "discard_after": 25},
                 "square": {"n_queries": 1000, "discard_after": 250}},
    "thorough": {},
}
_NEAR_SEED = 7919  # offsets the second run's seed, so that it does not replay the first run's draws

FINE_POINTS = 50  # points of the fine curve, from 0 to the largest eps
GALLERY_SIZE = 6
ERROR = -2  # success code of a (sample, eps) an attack should have covered but raised on


def ensemble_attacks(budget: str, norm: str, eot: bool = False) -> list[str]:
    """The ordered attack names of ``budget`` for ``norm`` (``BUDGETS``), or with ``eot`` the
    randomised-model protocol's (``EOT_ATTACKS``)."""
    norm = check_norm(norm)
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}: use one of {', '.join(BUDGET_NAMES)}")
    return list(EOT_ATTACKS[norm] if eot else BUDGETS[budget][norm])


def eot_protocol(budget: str) -> EOT:
    """The EOT settings of ``budget`` for randomised models (``EOT_BUDGETS``)."""
    if budget not in EOT_BUDGETS:
        raise ValueError(f"unknown budget {budget!r}: use one of {', '.join(BUDGET_NAMES)}")
    return EOT_BUDGETS[budget]


@dataclass
class EnsembleResult:
    """What :func:`run_ensemble` found, per sample and per attack.

    Per-sample arrays have length N (the samples given, in order); ``success`` per attack is
    int8 ``[N, K]`` over the sorted ``epsilons`` with 1 = adversarial found within eps,
    0 = attacked and not found, -1 = not run (the sample was already broken at that eps by an
    earlier attack), -2 (``ERROR``) = the attack raised on the batch holding the sample there,
    so nothing is known. Norms are in input units, ``inf`` where nothing was found.

    ``eot`` is the EOT protocol the ensemble ran under (randomised model), else None.
    ``per_attack[name]["errors"]`` lists what each attack raised (see :func:`run_ensemble`).
    """

    norm: str
    epsilons: list[float]
    budget: str
    attacks: list[str]
    bounds: tuple[float, float]
    seed: int
    labels: np.ndarray  # int [N]
    clean_pred: np.ndarray  # int [N]
    min_norm: np.ndarray  # float [N]: 0 if misclassified clean, inf if no adversarial found
    broken_by: list[str | None]  # [N]: attack that found the smallest perturbation
    success: dict[str, np.ndarray]  # name -> int8 [N, K]
    attack_norm: dict[str, np.ndarray]  # name -> float [N]: smallest adversarial norm it found
    per_attack: dict[str, dict[str, Any]]
    gallery: list[dict[str, Any]] = field(default_factory=list)
    eot: EOT | None = None
    # The smallest adversarial point per sample (x where none), [N, ...] on the model's device:
    # what the gallery is drawn from (``make_gallery``); not part of the JSON.
    best_x: Tensor | None = field(default=None, repr=False)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every attack failure, in run order: ``{"attack", "eps" (None: min-norm run),
        "n_samples", "samples" (row indices), "error" ("Type: message")}``."""
        return [{"attack": name, **e} for name in self.attacks for e in self.per_attack[name].get("errors", [])]

    @property
    def complete(self) -> bool:
        """No attack raised anywhere (every figure is the full ensemble's)."""
        return not self.errors

    def missing_attacks(self, eps: float) -> list[str]:
        """Attacks that raised on a sample still counted robust at ``eps``: without them the
        robust accuracy at ``eps`` is only an upper bound. A fixed-eps attack covers ``eps``
        through its run at the smallest grid eps ``>= eps`` (nested balls); beyond the grid,
        any error counts."""
        robust = self.robust_at(eps)
        grid = [k for k, e in enumerate(self.epsilons) if e >= eps - 1e-12]
        out = []
        for name in self.attacks:
            err = self.success[name] == ERROR
            if not err.any():
                continue
            col = err[:, grid[0]] if grid else err.any(axis=1)
            if (col & robust).any():
                out.append(name)
        return out

    @property
    def clean_correct(self) -> np.ndarray:
        return self.clean_pred == self.labels

    @property
    def tolerance(self) -> float:
        return norm_tolerance(self.bounds)

    def robust_at(self, eps: float) -> np.ndarray:
        """bool ``[N]``: clean-correct and no adversarial point of norm <= ``eps`` found."""
        return self.clean_correct & ~broken_at(self.min_norm, eps, self.tolerance)

    def curve(self, epsilons: Iterable[float] | None = None) -> list[dict[str, Any]]:
        """Robust accuracy at each eps (default: the grid), with its Wilson 95% CI and n."""
        grid = self.epsilons if epsilons is None else [float(e) for e in epsilons]
        return [_point(e, int(self.robust_at(e).sum()), len(self.labels), self.missing_attacks(e)) for e in grid]

    def fine_curve(self, points: int = FINE_POINTS) -> list[dict[str, Any]]:
        """The curve on ``points`` evenly spaced eps from 0 to the largest eps (for plots)."""
        top = max(self.epsilons)
        return self.curve(np.linspace(0.0, top, points).tolist() if top > 0 else [0.0])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (lists, floats; None for inf/nan and for "not run").

        ``records`` is columnar, one entry per sample in every list: ``index`` (into the x
        given), ``label``, ``clean_pred``, ``clean_correct``, ``min_norm`` (None: nothing
        found), ``broken_by`` and ``per_attack[name]`` with ``success_at_eps`` (``[N][K]``:
        True / False / None where not run because already broken) and ``min_norm`` (``[N]``,
        the smallest adversarial norm that attack found), plus ``error_at_eps`` (``[N][K]``
        bool, only for an attack that raised: True where it should have run and did not).
        ``curve`` / ``fine_curve`` points: ``eps, robust_accuracy, ci_low, ci_high, n,
        n_robust, complete, missing_attacks`` (``complete`` False: an attack that raised did
        not cover a sample counted robust there, listed in ``missing_attacks``; the figure is
        then an upper bound). ``complete`` / ``errors`` / ``eot`` at the top level: whether
        every attack ran everywhere, what raised, and the EOT protocol (None: deterministic).
        """
        records = {
            "index": list(range(len(self.labels))),
            "label": self.labels,
            "clean_pred": self.clean_pred,
            "clean_correct": self.clean_correct,
            "min_norm": self.min_norm,
            "broken_by": self.broken_by,
            "per_attack": {
                name: {
                    "success_at_eps": [[None if v < 0 else bool(v) for v in row] for row in self.success[name]],
                    "min_norm": self.attack_norm[name],
                    **({"error_at_eps": (self.success[name] == ERROR).tolist()}
                       if (self.success[name] == ERROR).any() else {}),
                }
                for name in self.attacks
            },
        }
        return to_jsonable({
            "norm": self.norm,
            "epsilons": self.epsilons,
            "budget": self.budget,
            "bounds": list(self.bounds),
            "seed": self.seed,
            "attacks": self.attacks,
            "eot": self.eot.as_dict() if self.eot is not None else None,
            "complete": self.complete,
            "errors": self.errors,
            "tolerance": self.tolerance,
            "per_attack": self.per_attack,
            "records": records,
            "curve": self.curve(),
            "fine_curve": self.fine_curve(),
            "gallery": self.gallery,
        })


def _point(eps: float, robust: int, n: int, missing: list[str]) -> dict[str, Any]:
    lo, hi = wilson_interval(robust, n)
    return {"eps": float(eps), "robust_accuracy": robust / n, "ci_low": lo, "ci_high": hi, "n": n, "n_robust": robust,
            "complete": not missing, "missing_attacks": missing}


class CountingModel(nn.Module):
    """Wraps the model to count per-sample forward and backward passes (cost reporting)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def _count_backward(self, n: int) -> None:
        self.backwards += n

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        n = int(x.shape[0])
        self.forwards += n
        if out.requires_grad:
            out.register_hook(lambda _grad: self._count_backward(n))
        return out


def _check_epsilons(epsilons: Iterable[float]) -> list[float]:
    try:
        values = [float(e) for e in epsilons]
    except (TypeError, ValueError):
        raise ValueError(f"epsilons must be a list of numbers, got {epsilons!r}") from None
    if not values:
        raise ValueError("epsilons is empty: pass at least one eps, e.g. [0.0, 0.05, 0.1]")
    bad = [e for e in values if not (e >= 0 and np.isfinite(e))]
    if bad:
        raise ValueError(f"epsilons must be finite and >= 0, got {bad[0]!r}")
    return sorted(set(values))


def resolve_attacks(attacks: list[str] | None, norm: str, budget: str, eot: bool = False) -> list[str]:
    """The attack names to run: ``attacks`` if given (checked), else the budget's list (the
    EOT protocol's with ``eot``)."""
    if attacks is None:
        return ensemble_attacks(budget, norm, eot)
    if isinstance(attacks, str) or not attacks:
        raise ValueError("attacks must be a non-empty list of attack names (or None for the budget's list)")
    names = []
    for name in attacks:
        spec = get_attack(name)  # UnknownAttackError lists the registered names
        if spec.norm != norm:
            raise ValueError(
                f"attack {name!r} is an {spec.norm} attack but norm={norm!r}; "
                f"{norm} attacks: {', '.join(list_attacks(norm=norm))}"
            )
        if name not in names:
            names.append(name)
    return names


def _as_tensors(model: nn.Module, x: Any, y: Any) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x is empty or has no batch dimension (shape {list(x.shape)}): pass [N, ...] with N >= 1")
    if not x.is_floating_point():
        raise ValueError(f"x must hold floating-point inputs, got {x.dtype}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (x.shape[0],):
        raise ValueError(f"y must be integer class labels of shape [{x.shape[0]}], got {y.dtype} {list(y.shape)}")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else x.device
    return x.detach().to(device), y.to(device=device, dtype=torch.int64)


def run_ensemble(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    norm: str,
    epsilons: list[float],
    budget: str = "standard",
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    batch_size: int = 256,
    attacks: list[str] | None = None,
    track: Callable[..., Iterable[Any]] = lambda it, **kw: it,
    eot: EOT | None = None,
) -> EnsembleResult:
    """Run the worst-case ensemble on ``x`` and keep per-sample records.

    Args:
        model: classifier mapping ``[N, ...]`` inputs to logits ``[N, C]`` (an ``AuditModel``
            is accepted too: its module is used). It runs in eval mode; its modes are restored.
        x: ``[N, ...]`` float inputs inside ``bounds`` (N >= 1).
        y: ``[N]`` integer labels.
        norm: ``"linf"`` or ``"l2"``.
        epsilons: radii in input units (>= 0); sorted and de-duplicated in the result.
        budget: ``"quick"``, ``"standard"`` or ``"thorough"``: which attacks (``BUDGETS``) and
            their iteration/query settings (``AttackSpec.budgets``).
        bounds: valid input range ``(low, high)``.
        seed: seed of every attack's randomness; same inputs and seed, same records.
        batch_size: samples per attack batch (memory bound).
        attacks: explicit ordered attack names instead of the budget's list (all of ``norm``).
        track: progress wrapper ``track(iterable, desc=..., total=...)`` (tqdm-like).
        eot: for a randomised model (see ``masking.forward_determinism``), the EOT protocol
            (``eot_protocol(budget)``): the attacks default to ``EOT_ATTACKS``, EOT-capable
            ones average ``eot.samples`` passes per gradient, and every decision (clean
            prediction included) is a majority vote of ``eot.votes`` forwards. None (default):
            one forward per decision, the deterministic protocol.

    An attack that raises (foolbox internals, numerical errors, anything but a
    ``BaseException`` such as KeyboardInterrupt) fails only the batch of samples it was running
    on, at that eps: the ensemble goes on, the cells are recorded as ``ERROR`` and the error in
    ``per_attack[name]["errors"]``, and every curve point that lacks the attack on a sample it
    counts robust says so (``complete`` False, ``missing_attacks``). A missing attack never
    raises a robust-accuracy figure unflagged.

    Returns:
        EnsembleResult; ``.to_dict()`` is the JSON section (DESIGN.md §5).
    """
    module = model if isinstance(model, nn.Module) else getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise ValueError("model must be a torch nn.Module (or an AuditModel)")
    norm = check_norm(norm)
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}: use one of {', '.join(BUDGET_NAMES)}")
    if eot is not None and not isinstance(eot, EOT):
        raise ValueError(f"eot must be an auditkit.attacks.common.EOT or None, got {type(eot).__name__}")
    eps = _check_epsilons(epsilons)
    names = resolve_attacks(attacks, norm, budget, eot=eot is not None)
    x, y = _as_tensors(module, x, y)
    lo, hi = check_bounds(x, bounds)
    tol = norm_tolerance((lo, hi))
    n, k_eps = len(x), len(eps)
    votes = eot.votes if eot is not None else 1
    run_kw: dict[str, Any] = {"budget": budget, "batch_size": batch_size, "eot": eot}
    warm_start = WARM_START[budget] and eot is None
    near_settings = NEAR_SETTINGS.get(budget, {}) if eot is None else {}

    with eval_mode(module):
        counter = CountingModel(module).eval()
        clean_pred = torch.cat([
            predict(module, x[s : s + batch_size], y[s : s + batch_size], votes) for s in range(0, n, batch_size)
        ]).cpu().numpy()
        labels = y.cpu().numpy()
        correct = clean_pred == labels
        best = np.where(correct, np.inf, 0.0)
        best_by: list[str | None] = [None] * n
        best_x = x.clone()  # the smallest adversarial point per sample (for the gallery)
        # Clean-correct samples every min-norm attack so far ran on and found nothing for
        # (None: no min-norm attack has run): second runs at every eps (NEAR_MARGIN above).
        min_norm_found_nothing: np.ndarray | None = None
        success: dict[str, np.ndarray] = {}
        attack_norm: dict[str, np.ndarray] = {}
        per_attack: dict[str, dict[str, Any]] = {}

        def improve(rows: np.ndarray, norms: np.ndarray, points: Tensor, name: str) -> None:
            """Fold an attack's adversarial points (``rows`` of x) into the worst case."""
            better = norms < best[rows]
            for r, v in zip(rows[better], norms[better]):
                best[r] = v
                best_by[r] = name
            best_x[torch.as_tensor(rows[better], device=x.device)] = points[torch.as_tensor(better, device=x.device)]

        for name in track(names, desc=f"attacks ({norm})", total=len(names)):
            spec = get_attack(name)
            # Fixed-eps runs start from the smallest adversarial point so far (WARM_START); near
            # samples get a second run with these settings (NEAR_SETTINGS), or None.
            warm = warm_start and spec.warm_start and spec.kind != "min-norm"
            near_cfg = near_settings.get(name.rsplit("-", 1)[0]) if spec.kind != "min-norm" else None
            succ = np.full((n, k_eps), -1, np.int8)
            succ[~correct] = 1  # misclassified as is: every attack "succeeds" with no perturbation
            own = np.where(correct, np.inf, 0.0)
            attacked = np.zeros(n, bool)
            n_at_eps = [0] * k_eps
            n_near = [0] * k_eps
            errors: list[dict[str, Any]] = []
            queries: int | None = None
            counter.forwards = counter.backwards = 0
            start = time.perf_counter()

            def attempt(rows: np.ndarray, e: float | None,
                        near: dict[str, Any] | None = None) -> Iterable[tuple[np.ndarray, Any]]:
                """Run the attack on ``rows`` in batches (seeded by offset, as the registry
                seeds its own batches); yield ``(batch rows, output)``. A batch that raises is
                recorded in ``errors`` and skipped: its rows stay unknown to this attack.
                ``near``: the second, full-strength run's settings (random start)."""
                for s0 in range(0, rows.size, batch_size):
                    part = rows[s0 : s0 + batch_size]
                    idx = torch.as_tensor(part, device=x.device)
                    extra: dict[str, Any] = {}
                    if near is not None:
                        extra["overrides"] = near
                    elif warm and e is not None:
                        extra["x_init"] = best_x[idx]
                    try:
                        out = spec.run(counter, x[idx], y[idx], None if e is None else [e], (lo, hi),
                                       seed + s0 + (_NEAR_SEED if near is not None else 0), **run_kw, **extra)[0]
                    except Exception as exc:  # noqa: BLE001  (recorded; the curve says it is incomplete)
                        errors.append({"eps": e, "n_samples": int(part.size), "samples": part.tolist(),
                                       "error": describe_error(exc)})
                        yield part, None
                        continue
                    yield part, out

            if spec.kind == "min-norm":
                rows_all = np.flatnonzero(correct)
                raised = np.zeros(n, bool)
                for rows, out in attempt(rows_all, None):
                    if out is None:
                        raised[rows] = True
                        continue
                    idx = torch.as_tensor(rows, device=x.device)
                    ok = out.success.cpu().numpy()
                    norms = _positive(norm_of(out.x_adv - x[idx], norm).double().cpu().numpy(), tol)
                    own[rows[ok]] = norms[ok]
                    improve(rows[ok], norms[ok], out.x_adv[torch.as_tensor(ok, device=x.device)], name)
                    attacked[rows] = True
                    queries = _sum_queries(out.queries, queries)
                for k, e in enumerate(eps):
                    succ[correct, k] = broken_at(own[correct], e, tol)
                    if e > 0:  # at eps 0 nothing is attacked: the clean prediction decides
                        succ[raised, k] = ERROR
                    n_at_eps[k] = int(attacked.sum())
                nothing = correct & attacked & np.isinf(own)
                min_norm_found_nothing = nothing if min_norm_found_nothing is None else min_norm_found_nothing & nothing
            else:
                # Largest eps first. The eps-balls are nested, so a sample this attack failed on
                # at a larger eps is robust to it at every smaller one: no adversarial point in
                # the big ball means none in the small one. Each sample thus costs one failed
                # (full-length) run per attack at most; an ascending sweep would pay one failed
                # run at every grid eps below the sample's minimal perturbation. A batch that
                # raised at a larger eps is not "failed": it is attacked again at the next one.
                failed = np.zeros(n, bool)
                for k in reversed(range(k_eps)):
                    e = eps[k]
                    # This attack's points from larger eps that lie within eps too.
                    succ[correct & broken_at(own, e, tol), k] = 1
                    open_rows = correct & ~broken_at(best, e, tol)
                    succ[open_rows & failed, k] = 0
                    rows_e = np.flatnonzero(open_rows & ~failed)
                    if rows_e.size == 0:
                        continue
                    if e == 0:  # no perturbation: nothing to attack, the sample stays robust
                        succ[rows_e, k] = 0
                        continue
                    # Samples whose smallest adversarial norm so far lies just above eps, and
                    # those the min-norm attack found nothing for: the verdicts in doubt. Those
                    # the first run leaves robust get a second, full-strength run from a random
                    # start (``NEAR_SETTINGS``).
                    if near_cfg is None:
                        near = np.zeros(0, np.int64)
                    else:
                        doubt = best[rows_e] <= e * (1 + NEAR_MARGIN) + tol
                        if min_norm_found_nothing is not None:
                            doubt |= min_norm_found_nothing[rows_e]
                        near = rows_e[doubt]
                    for second in (False, True):
                        if second:
                            rows_e = near[succ[near, k] == 0]
                            n_near[k] += int(rows_e.size)
                            if rows_e.size == 0:
                                break
                        for rows, out in attempt(rows_e, e, near_cfg if second else None):
                            if out is None:
                                succ[rows, k] = ERROR
                                continue
                            idx = torch.as_tensor(rows, device=x.device)
                            ok = out.success.cpu().numpy()
                            # The point lies in the eps-ball (checked by the registry up to rounding).
                            norms = _positive(np.minimum(norm_of(out.x_adv - x[idx], norm).double().cpu().numpy(), e),
                                              tol)
                            succ[rows, k] = ok
                            failed[rows[~ok]] = True
                            failed[rows[ok]] = False
                            own[rows[ok]] = np.minimum(own[rows[ok]], norms[ok])
                            improve(rows[ok], norms[ok], out.x_adv[torch.as_tensor(ok, device=x.device)], name)
                            attacked[rows] = True
                            if not second:
                                n_at_eps[k] += int(rows.size)
                            queries = _sum_queries(out.queries, queries)
            seconds = time.perf_counter() - start
            success[name], attack_norm[name] = succ, own
            known = [bool((succ[correct, k] >= 0).all()) for k in range(k_eps)]
            per_attack[name] = {
                "kind": spec.kind,
                "family": spec.family,
                "norm": spec.norm,
                "source": spec.source,
                "settings": spec.settings(budget, eot),
                # The protocol as run, so that it is read from the results, not from the source.
                "warm_start": bool(warm),
                # The second runs' rule: near samples, and (a count; None: no min-norm attack
                # ran before) those the min-norm attack found nothing for.
                "near_run": {"margin": NEAR_MARGIN,
                             "n_min_norm_found_nothing": (None if min_norm_found_nothing is None
                                                          else int(min_norm_found_nothing.sum())),
                             "settings": dict(near_cfg)} if near_cfg is not None else None,
                # This attack's own robust accuracy where it is known (it ran on, or carried a
                # point for, every clean-correct sample at that eps), else None.
                "robust_accuracy": [
                    float((correct & (succ[:, k] == 0)).sum() / n) if known[k] else None for k in range(k_eps)
                ],
                # The ensemble's robust accuracy after this attack (AutoAttack's running figure).
                "cumulative_robust_accuracy": [
                    float((correct & ~broken_at(best, e, tol)).sum() / n) for e in eps
                ],
                "seconds": seconds,
                "n_attacked": int(attacked.sum()),
                "n_attacked_at_eps": n_at_eps,
                # Samples that got the second, full-strength run at each eps (NEAR_SETTINGS).
                "n_near_at_eps": n_near,
                "forward_passes": counter.forwards,
                "backward_passes": counter.backwards,
                "queries": queries,
                # What raised, per batch and eps (eps None: the min-norm run); empty when none.
                "errors": errors,
                "error": errors[0]["error"] if errors else None,
            }
        for name in names:
            per_attack[name]["n_smallest"] = sum(1 for b in best_by if b == name)
        gallery = make_gallery(module, x, best_x, labels, clean_pred, best, best_by, eps, tol, votes)

    return EnsembleResult(
        norm=norm, epsilons=eps, budget=budget, attacks=names, bounds=(lo, hi), seed=seed,
        labels=labels, clean_pred=clean_pred, min_norm=best, broken_by=best_by,
        success=success, attack_norm=attack_norm, per_attack=per_attack, gallery=gallery, eot=eot,
        best_x=best_x,
    )


def _positive(norms: np.ndarray, tol: float) -> np.ndarray:
    """Norms of points found on clean-correct samples, with 0 raised to ``tol``.

    A zero norm there means a later decision on the clean input itself went the other way,
    which only a randomised model does (under EOT, another majority vote of a sample whose
    votes are close to even). The clean decision is taken once and stands at eps 0, as for a
    deterministic model; at norm ``tol`` the point counts at every eps > 0 (``broken_at``)."""
    return np.where(norms > 0, norms, tol)


def _sum_queries(q: Tensor | None, total: int | None) -> int | None:
    if q is None:
        return total
    return (total or 0) + int(q.sum().item())


def make_gallery(
    model: nn.Module, x: Tensor, best_x: Tensor, labels: np.ndarray, clean_pred: np.ndarray,
    best: np.ndarray, best_by: list[str | None], eps: list[float], tol: float, votes: int = 1,
) -> list[dict[str, Any]]:
    """Up to ``GALLERY_SIZE`` clean-correct samples broken within the eps grid, distinct labels
    first (then by index): clean input, adversarial input, perturbation, rounded to 4 places."""
    correct = clean_pred == labels
    cands = [i for i in range(len(labels)) if correct[i] and broken_at(best[i : i + 1], max(eps), tol)[0]]
    chosen: list[int] = []
    seen: set[int] = set()
    for i in cands:
        if len(chosen) < GALLERY_SIZE and int(labels[i]) not in seen:
            chosen.append(i)
            seen.add(int(labels[i]))
    for i in cands:
        if len(chosen) < GALLERY_SIZE and i not in chosen:
            chosen.append(i)
    chosen.sort()
    if not chosen:
        return []
    idx = torch.as_tensor(chosen, device=x.device)
    adv_pred = predict(model, best_x[idx], torch.as_tensor(labels[chosen], device=x.device), votes).cpu().numpy()
    items = []
    for j, i in enumerate(chosen):
        e_grid = next(e for e in eps if broken_at(best[i : i + 1], e, tol)[0])
        clean, adv = x[i].cpu().numpy(), best_x[i].cpu().numpy()
        items.append({
            "index": i,
            "label": int(labels[i]),
            "clean_pred": int(clean_pred[i]),
            "adv_pred": int(adv_pred[j]),
            "eps": e_grid,
            "norm": float(best[i]),
            "attack": best_by[i],
            "shape": list(clean.shape),
            "clean": np.round(clean, 4).tolist(),
            "adversarial": np.round(adv, 4).tolist(),
            "perturbation": np.round(adv - clean, 4).tolist(),
        })
    return items
