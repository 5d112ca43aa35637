"""The attack registry: every attack auditkit runs, by a stable hyphenated name.

Each :class:`AttackSpec` says what the attack is (``kind`` "fixed-eps" or "min-norm", ``norm``,
``family`` "gradient" / "score-based" / "decision-based", ``source`` "foolbox" or "auditkit")
and runs it with :meth:`AttackSpec.run`, in batches and with iteration/query settings chosen by
the budget ("quick" cheap, "standard", "thorough" with restarts and more steps; see
``AttackSpec.budgets``).

Foolbox 3.3.4 supplies FGSM/FGM, PGD, DeepFool, Carlini-Wagner, FMN, HopSkipJump and Boundary;
APGD and Square are auditkit's own (``auditkit.attacks.apgd``, ``auditkit.attacks.square``).
Foolbox's own success flags are not trusted: every returned point is clamped to the bounds and
re-checked on the model (misclassified, and for fixed-eps attacks within ``eps``). For a
randomised model (``run(..., eot=EOT(...))``) that check is a majority vote over several
forwards, and the EOT-capable attacks (APGD, APGD-T) average their gradients over many passes.

Not registered, on purpose: foolbox's PointwiseAttack (raises when given ``epsilons``) and
Brendel-Bethge (needs numba).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from auditkit.errors import BadInputError
from auditkit.attacks.common import (
    EOT,
    AttackOutput,
    check_bounds,
    check_norm,
    eval_mode,
    frozen_parameters,
    is_adversarial,
    norm_of,
)

Kind = Literal["fixed-eps", "min-norm"]
Family = Literal["gradient", "score-based", "decision-based"]
BUDGET_NAMES = ("quick", "standard", "thorough")

# A fixed-eps point counts as inside the eps-ball up to float rounding: x_adv = x + delta in
# float32 moves |x_adv - x| off |delta| by about one ulp of x, which this absorbs for inputs of
# order 1 (it is scaled by the width of the bounds for wider input ranges).
NORM_TOL = 1e-6

# (model, x, y, eps or None, (lo, hi), seed, **settings) -> (points [n, ...], queries [n] or None)
Runner = Callable[..., tuple[Tensor, Tensor | None]]


class UnknownAttackError(BadInputError):
    """An attack name that is not registered; the message lists the registered ones."""


def norm_tolerance(bounds: tuple[float, float]) -> float:
    """Absolute tolerance on perturbation norms for inputs in ``bounds`` (input units)."""
    return NORM_TOL * max(1.0, float(bounds[1]) - float(bounds[0]))


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack.

    Attributes:
        name: stable hyphenated name, e.g. ``"apgd-ce-linf"``.
        kind: ``"fixed-eps"`` (one run per eps, point within the eps-ball) or ``"min-norm"``
            (one run, the smallest adversarial point it finds, whatever its norm).
        norm: ``"linf"`` or ``"l2"``: the norm of the threat model it attacks.
        family: ``"gradient"`` (white-box), ``"score-based"`` (logits only) or
            ``"decision-based"`` (top-1 label only).
        source: ``"foolbox"`` or ``"auditkit"`` (native).
        summary: one line for tables and ``auditkit attacks``.
        budgets: settings passed to the runner per budget (steps, restarts, queries, ...).
        eot_capable: the runner takes ``eot_iter`` (Expectation over Transformation): under
            an :class:`EOT` protocol it averages ``eot_iter`` passes per gradient step.
        warm_start: the runner takes ``x_init`` (fixed-eps attacks): points to start from,
            projected into each eps-ball (see :meth:`run`).
    """

    name: str
    kind: Kind
    norm: str
    family: Family
    source: str
    summary: str
    budgets: dict[str, dict[str, Any]]
    runner: Runner = field(repr=False)
    eot_capable: bool = False
    warm_start: bool = False

    def settings(self, budget: str, eot: EOT | None = None) -> dict[str, Any]:
        """The runner settings for ``budget``; ValueError for an unknown budget.

        Under ``eot`` an EOT-capable attack gets ``eot_iter = eot.samples``, ``eot.n_iter``
        iterations (if set) and a single restart, as in AutoAttack's "rand" version (averaging
        over many passes replaces the restarts; each restart would cost ``eot.samples`` times
        more)."""
        if budget not in self.budgets:
            raise ValueError(f"unknown budget {budget!r}: use one of {', '.join(BUDGET_NAMES)}")
        settings = dict(self.budgets[budget])
        if eot is not None and self.eot_capable:
            settings.update(eot_iter=eot.samples, n_restarts=1)
            if eot.n_iter is not None and "n_iter" in settings:
                settings["n_iter"] = eot.n_iter
        return settings

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps_list: list[float] | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
        *,
        budget: str = "standard",
        batch_size: int = 256,
        eot: EOT | None = None,
        x_init: Tensor | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> list[AttackOutput]:
        """Attack ``model`` on ``x`` (``[N, ...]`` inside ``bounds``) with labels ``y`` (``[N]``).

        Fixed-eps attacks return one :class:`AttackOutput` per entry of ``eps_list`` (input
        units, same order). They run eps in increasing order and attack at a larger eps only the
        samples still robust at the smaller one: a point found within a smaller ball is carried
        over, since it lies within the larger one too; ``x_adv`` is ``x`` where nothing was
        found. Min-norm attacks ignore ``eps_list`` and
        return a single output whose ``x_adv`` is the smallest adversarial point found
        (``success`` False where none was found; ``x_adv`` is then ``x``).

        Samples misclassified without perturbation are not attacked: ``success`` True,
        ``x_adv = x``. ``success`` is recomputed on the model for every returned point, never
        taken from foolbox. The model runs in eval mode and gets its modes back afterwards.
        ``queries`` (score-based attacks) counts forward passes per sample, summed over eps.

        ``eot`` (randomised models): every success decision, on the clean inputs and on the
        returned points, is the majority vote of ``eot.votes`` forwards, and EOT-capable
        attacks average ``eot.samples`` passes per gradient (:meth:`settings`). Attacks that
        are not EOT-capable still run (one pass per step); only their decisions are voted.
        """
        x, y, lo, hi = _check_run_inputs(x, y, bounds, batch_size)
        if eot is not None and not isinstance(eot, EOT):
            raise ValueError(f"eot must be an auditkit.attacks.common.EOT or None, got {type(eot).__name__}")
        settings = {**self.settings(budget, eot), **(overrides or {})}
        votes = eot.votes if eot is not None else 1
        if self.kind == "fixed-eps":
            if eps_list is None or len(eps_list) == 0:
                raise ValueError(f"{self.name} is a fixed-eps attack: pass a non-empty eps_list")
            eps_values = [_check_eps(e) for e in eps_list]
        else:
            eps_values = []
        tol = norm_tolerance((lo, hi))
        with eval_mode(model), frozen_parameters(model):
            if self.kind == "min-norm":
                return [self._run_min_norm(model, x, y, (lo, hi), seed, settings, batch_size, votes)]
            return self._run_fixed(model, x, y, eps_values, (lo, hi), seed, settings, batch_size, tol, votes, x_init)

    def _run_min_norm(
        self, model: nn.Module, x: Tensor, y: Tensor, bounds: tuple[float, float], seed: int,
        settings: dict[str, Any], batch_size: int, votes: int = 1,
    ) -> AttackOutput:
        x_adv = x.clone()
        success = is_adversarial_batched(model, x, y, batch_size, votes)
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        todo = (~success).nonzero().squeeze(1)
        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            pts, q = self.runner(model, x[rows], y[rows], None, bounds, seed + start, **settings)
            pts = pts.detach().to(x.dtype).clamp(*bounds)
            ok = is_adversarial(model, pts, y[rows], votes)
            x_adv[rows[ok]] = pts[ok]
            success[rows] = ok
            if q is not None:
                queries[rows] += q.to(queries)
        return AttackOutput(x_adv=x_adv, success=success, queries=queries if self.family == "score-based" else None)

    def _run_fixed(
        self, model: nn.Module, x: Tensor, y: Tensor, eps_values: list[float], bounds: tuple[float, float],
        seed: int, settings: dict[str, Any], batch_size: int, tol: float, votes: int = 1,
        x_init: Tensor | None = None,
    ) -> list[AttackOutput]:
        order = sorted(range(len(eps_values)), key=lambda k: eps_values[k])
        x_adv = x.clone()
        success = is_adversarial_batched(model, x, y, batch_size, votes)
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        outputs: dict[int, AttackOutput] = {}
        for k in order:
            eps = eps_values[k]
            todo = (~success).nonzero().squeeze(1) if eps > 0 else success.new_zeros(0).long()
            for start in range(0, len(todo), batch_size):
                rows = todo[start : start + batch_size]
                warm = {} if x_init is None else {"x_init": x_init[rows]}
                pts, q = self.runner(model, x[rows], y[rows], eps, bounds, seed + start, **settings, **warm)
                pts = pts.detach().to(x.dtype).clamp(*bounds)
                inside = norm_of(pts - x[rows], self.norm) <= eps + tol
                ok = is_adversarial(model, pts, y[rows], votes) & inside
                x_adv[rows[ok]] = pts[ok]
                success[rows[ok]] = True
                if q is not None:
                    queries[rows] += q.to(queries)
            outputs[k] = AttackOutput(
                x_adv=x_adv.clone(), success=success.clone(),
                queries=queries.clone() if self.family == "score-based" else None,
            )
        return [outputs[k] for k in range(len(eps_values))]


_ATTACKS: dict[str, AttackSpec] = {}


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Add ``spec`` to the registry (ValueError if the name is taken or malformed)."""
    if spec.name in _ATTACKS:
        raise ValueError(f"attack {spec.name!r} is registered twice")
    check_norm(spec.norm)
    if set(spec.budgets) != set(BUDGET_NAMES):
        raise ValueError(f"attack {spec.name!r} must give settings for budgets {', '.join(BUDGET_NAMES)}")
    _ATTACKS[spec.name] = spec
    return spec


def get_attack(name: str) -> AttackSpec:
    """The registered attack called ``name``; UnknownAttackError listing the known names."""
    if name not in _ATTACKS:
        raise UnknownAttackError(f"unknown attack {name!r}; registered attacks: {', '.join(sorted(_ATTACKS))}")
    return _ATTACKS[name]


def list_attacks(norm: str | None = None, kind: str | None = None, family: str | None = None) -> list[str]:
    """Registered attack names (sorted), optionally only those of a norm, kind or family."""
    return sorted(
        s.name for s in _ATTACKS.values()
        if (norm is None or s.norm == norm)
        and (kind is None or s.kind == kind)
        and (family is None or s.family == family)
    )


def all_attacks() -> dict[str, AttackSpec]:
    """A copy of the registry, name -> spec."""
    return dict(_ATTACKS)


# ----------------------------------------------------------------------------- helpers


def _check_eps(eps: float) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"epsilons must be numbers, got {eps!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"epsilons must be finite and >= 0, got {eps!r}")
    return value


def _check_run_inputs(
    x: Tensor, y: Tensor, bounds: tuple[float, float], batch_size: int
) -> tuple[Tensor, Tensor, float, float]:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError("x must be a floating-point tensor of shape [N, ...] (batch first)")
    if not isinstance(y, Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (len(x),):
        raise ValueError(f"y must be an integer tensor of class indices with shape [{len(x)}]")
    lo, hi = check_bounds(x, bounds)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return x.detach(), y.to(x.device), lo, hi


def is_adversarial_batched(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, votes: int = 1) -> Tensor:
    """``model(x).argmax(1) != y`` as bool ``[N]``, computed in batches without grad (the
    majority vote of ``votes`` forwards for a randomised model, see ``is_adversarial``)."""
    out = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        out[rows] = is_adversarial(model, x[rows], y[rows], votes)
    return out


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG for a foolbox call (its random starts and noise draw from it)
    and give the caller's RNG state back afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def _foolbox() -> Any:
    import foolbox  # imported lazily: it is slow to import and only some attacks need it

    return foolbox


def _fmodel(model: nn.Module, bounds: tuple[float, float], device: torch.device) -> Any:
    # The model keeps its own preprocessing; foolbox only needs the input bounds. ``device``
    # is passed so that foolbox never moves the model (it defaults to cuda when available).
    return _foolbox().PyTorchModel(model, bounds=bounds, device=device)


# ----------------------------------------------------------------------------- runners


def _fb_fixed(cls_name: str, **fixed: Any) -> Runner:
    """Runner of a foolbox fixed-eps attack; ``restarts`` > 1 re-runs it (new random start) on
    the samples it has not fooled yet. ``steps`` sets ``rel_stepsize = 2.5 / steps`` (Madry et
    al.'s 2.5 eps total travel), since foolbox's defaults can be weaker than FGSM at small eps."""

    def run(model: nn.Module, x: Tensor, y: Tensor, eps: float | None, bounds: tuple[float, float],
            seed: int, restarts: int = 1, **settings: Any) -> tuple[Tensor, None]:
        fb = _foolbox()
        if "steps" in settings:
            settings.setdefault("rel_stepsize", 2.5 / settings["steps"])
        attack = getattr(fb.attacks, cls_name)(**fixed, **settings)
        fmodel = _fmodel(model, bounds, x.device)
        x_adv = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for r in range(restarts):
            rows = (~done).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            with _seeded(seed * 1000 + r, x.device):
                _, clipped, _ = attack(fmodel, x[rows], y[rows], epsilons=eps)
            x_adv[rows] = clipped.detach()
            done[rows] = is_adversarial(model, x_adv[rows], y[rows])
        return x_adv, None

    return run


def _fb_min_norm(cls_name: str, **fixed: Any) -> Runner:
    """Runner of a foolbox minimisation attack run with ``epsilons=None`` (unbounded: the
    smallest adversarial it finds)."""

    def run(model: nn.Module, x: Tensor, y: Tensor, eps: float | None, bounds: tuple[float, float],
            seed: int, **settings: Any) -> tuple[Tensor, None]:
        fb = _foolbox()
        if "candidates" in settings:  # DeepFool: at most the number of classes
            with torch.no_grad():
                n_classes = model(x[:1]).shape[1]
            settings["candidates"] = min(settings["candidates"], n_classes)
        attack = getattr(fb.attacks, cls_name)(**fixed, **settings)
        with _seeded(seed, x.device):
            _, clipped, _ = attack(_fmodel(model, bounds, x.device), x, y, epsilons=None)
        return clipped.detach(), None

    return run


def _l2_fmn_class() -> type:
    """foolbox 3.3.4's L2FMNAttack with its projection fixed.

    Its ``project`` computes ``factor = min(1, norms / norms)`` (always 1) from the norm of
    ``x`` rather than of ``x - x0``, so the adaptive norm constraint never acts and the attack
    returns points 2-5 times larger than the minimum on a linear model. The fix is the
    projection the paper describes: scale ``x - x0`` by ``min(1, epsilon / ||x - x0||_2)``.
    """
    fb = _foolbox()
    import eagerpy as ep
    from foolbox.devutils import atleast_kd, flatten

    class L2FMNAttackFixed(fb.attacks.L2FMNAttack):
        def project(self, x: Any, x0: Any, epsilon: Any) -> Any:
            norms = ep.maximum(flatten(x - x0).norms.l2(axis=-1), 1e-12)
            factor = atleast_kd(ep.minimum(1, epsilon / norms), x.ndim)
            return x0 + (x - x0) * factor

    return L2FMNAttackFixed


def _fmn(norm: str) -> Runner:
    """Runner of FMN (Pintor et al. 2021) through foolbox, started from DeepFool's points.

    Started from ``x``, FMN's norm constraint is set from a linear estimate of the distance to
    the boundary that ignores the input bounds; on inputs with many saturated features (digits:
    pixels at 0 or 1) the clipped steps then stall short of the boundary (L2: 3 of 57 digits
    fooled, where DeepFool and APGD fool all of them). FMN's documented alternative is to
    start from adversarial points (its ``init_attack`` / ``starting_points``), binary-search
    to the boundary and shrink from there: the starting points here are DeepFool's (towards the
    ``deepfool_candidates`` top classes), and the samples DeepFool misses run from ``x`` as
    usual. Each sample gets the smaller of FMN's and DeepFool's adversarial points.
    ``max_stepsize`` is given for inputs in [0, 1] and rescaled by the width of the bounds.
    Both foolbox attacks run all their steps (no early stop): the cost is fixed per sample.
    """

    def run(model: nn.Module, x: Tensor, y: Tensor, eps: float | None, bounds: tuple[float, float],
            seed: int, steps: int = 100, max_stepsize: float = 1.0, deepfool_steps: int = 50,
            deepfool_candidates: int = 10) -> tuple[Tensor, None]:
        fb = _foolbox()
        fmodel = _fmodel(model, bounds, x.device)
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
        deepfool_cls = fb.attacks.LinfDeepFoolAttack if norm == "linf" else fb.attacks.L2DeepFoolAttack
        deepfool = deepfool_cls(steps=deepfool_steps, candidates=max(2, min(deepfool_candidates, n_classes)),
                                overshoot=0.02)
        fmn_cls = fb.attacks.LInfFMNAttack if norm == "linf" else _l2_fmn_class()
        fmn = fmn_cls(steps=steps, max_stepsize=max_stepsize * (bounds[1] - bounds[0]))
        with _seeded(seed, x.device):
            _, start, _ = deepfool(fmodel, x, y, epsilons=None)
            start = start.detach().clamp(*bounds)
            has_start = is_adversarial(model, start, y)
            x_adv = x.clone()
            for mask, kwargs in ((has_start, {"starting_points": start[has_start]}), (~has_start, {})):
                if mask.any():
                    _, clipped, _ = fmn(fmodel, x[mask], y[mask], epsilons=None, **kwargs)
                    x_adv[mask] = clipped.detach()
        fmn_ok = is_adversarial(model, x_adv.clamp(*bounds), y)
        smaller = has_start & (~fmn_ok | (norm_of(start - x, norm) < norm_of(x_adv - x, norm)))
        x_adv[smaller] = start[smaller]
        return x_adv, None

    return run


def _fb_decision(cls_name: str, **fixed: Any) -> Runner:
    """Runner of a foolbox decision-based attack (HopSkipJump, Boundary). They need adversarial
    starting points; foolbox raises if its init attack misses any sample, so the starting
    points are drawn here (blended uniform noise, as foolbox's default) and the samples without
    one are left unattacked: the caller sees them as not fooled."""

    def run(model: nn.Module, x: Tensor, y: Tensor, eps: float | None, bounds: tuple[float, float],
            seed: int, init_directions: int = 1000, **settings: Any) -> tuple[Tensor, None]:
        fb = _foolbox()
        fmodel = _fmodel(model, bounds, x.device)
        x_adv = x.clone()
        with _seeded(seed, x.device), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "failed to draw sufficient random inputs": handled
            init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(directions=init_directions, steps=100).run(
                fmodel, x, fb.criteria.Misclassification(y)
            )
            rows = is_adversarial(model, init, y).nonzero().squeeze(1)
            if rows.numel():
                attack = getattr(fb.attacks, cls_name)(**fixed, **settings)
                _, clipped, _ = attack(fmodel, x[rows], y[rows], epsilons=None, starting_points=init[rows])
                x_adv[rows] = clipped.detach()
        return x_adv, None

    return run


def _native(kind: str, norm: str, **fixed: Any) -> Runner:
    """Runner of auditkit's APGD / APGD-T / Square (fixed-eps, torch-native)."""

    def run(model: nn.Module, x: Tensor, y: Tensor, eps: float | None, bounds: tuple[float, float],
            seed: int, x_init: Tensor | None = None, **settings: Any) -> tuple[Tensor, Tensor | None]:
        from auditkit.attacks.apgd import APGD, APGDTargeted
        from auditkit.attacks.square import SquareAttack

        if kind == "apgd":
            attack: Any = APGD(norm=norm, seed=seed, **fixed, **settings)
        elif kind == "apgd-t":
            attack = APGDTargeted(norm=norm, seed=seed, **fixed, **settings)
        else:
            attack = SquareAttack(norm=norm, seed=seed, **fixed, **settings)
        out = attack.run(model, x, y, float(eps), bounds, x_init=x_init)
        return out.x_adv, out.queries

    return run


def _same(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b: dict(settings) for b in BUDGET_NAMES}


def _register_builtins() -> None:
    pgd = {"quick": {"steps": 20}, "standard": {"steps": 50}, "thorough": {"steps": 100, "restarts": 5}}
    register_attack(AttackSpec(
        "fgsm", "fixed-eps", "linf", "gradient", "foolbox", "FGSM: one signed-gradient step (Goodfellow et al. 2015)",
        _same({}), _fb_fixed("LinfFastGradientAttack", random_start=False)))
    register_attack(AttackSpec(
        "fgm-l2", "fixed-eps", "l2", "gradient", "foolbox", "FGM: one L2-normalised gradient step",
        _same({}), _fb_fixed("L2FastGradientAttack", random_start=False)))
    register_attack(AttackSpec(
        "pgd-linf", "fixed-eps", "linf", "gradient", "foolbox",
        "PGD with random start, step 2.5 eps / steps (Madry et al. 2018)",
        pgd, _fb_fixed("LinfProjectedGradientDescentAttack", random_start=True)))
    register_attack(AttackSpec(
        "pgd-l2", "fixed-eps", "l2", "gradient", "foolbox", "L2 PGD with random start, step 2.5 eps / steps",
        pgd, _fb_fixed("L2ProjectedGradientDescentAttack", random_start=True)))

    deepfool = {"quick": {"steps": 50, "candidates": 10}, "standard": {"steps": 50, "candidates": 10},
                "thorough": {"steps": 100, "candidates": 100}}
    for norm, cls in (("linf", "LinfDeepFoolAttack"), ("l2", "L2DeepFoolAttack")):
        register_attack(AttackSpec(
            f"deepfool-{norm}", "min-norm", norm, "gradient", "foolbox",
            "DeepFool: linearise the decision boundary (Moosavi-Dezfooli et al. 2016)",
            deepfool, _fb_min_norm(cls, overshoot=0.02)))

    register_attack(AttackSpec(
        "cw-l2", "min-norm", "l2", "gradient", "foolbox", "Carlini-Wagner L2 (2017), binary search on the constant",
        # Fewer binary-search steps start from a larger constant, so that the search still
        # reaches a successful one (foolbox's default 1e-3 is meant for 9 steps). Foolbox's
        # tanh-space Adam is coarse for tiny perturbations (up to ~1.2x the minimum on a linear
        # model); FMN, not CW, carries the curve.
        {"quick": {"binary_search_steps": 5, "steps": 100, "initial_const": 0.1},
         "standard": {"binary_search_steps": 6, "steps": 250, "initial_const": 0.1},
         "thorough": {"binary_search_steps": 9, "steps": 1000, "initial_const": 1e-3}},
        _fb_min_norm("L2CarliniWagnerAttack")))

    # FMN from DeepFool converges fast: 25 steps give within 1% of 100 steps' norms (median and
    # 90th percentile, cnn-digits and a ResNet; bench/README.md), and DeepFool towards the top 4
    # classes starts it as well as towards all 10, at 40% of the passes.
    fmn = {"quick": {"steps": 50}, "standard": {"steps": 25, "deepfool_candidates": 4},
           "thorough": {"steps": 300, "deepfool_steps": 100}}
    for norm in ("linf", "l2"):
        register_attack(AttackSpec(
            f"fmn-{norm}", "min-norm", norm, "gradient", "foolbox",
            "Fast Minimum-Norm attack (Pintor et al. 2021) from DeepFool's points: a whole curve in one run",
            fmn, _fmn(norm)))

    hsj = {"quick": {"steps": 10, "initial_gradient_eval_steps": 50, "max_gradient_eval_steps": 500},
           "standard": {"steps": 25, "initial_gradient_eval_steps": 100, "max_gradient_eval_steps": 2000},
           "thorough": {"steps": 64, "initial_gradient_eval_steps": 100, "max_gradient_eval_steps": 10000}}
    for norm in ("linf", "l2"):
        register_attack(AttackSpec(
            f"hsj-{norm}", "min-norm", norm, "decision-based", "foolbox",
            "HopSkipJump (Chen et al. 2020): label-only boundary walk",
            hsj, _fb_decision("HopSkipJumpAttack", constraint=norm)))
    register_attack(AttackSpec(
        "boundary-l2", "min-norm", "l2", "decision-based", "foolbox",
        "Boundary attack (Brendel et al. 2018): label-only random walk along the boundary",
        {"quick": {"steps": 200}, "standard": {"steps": 1000}, "thorough": {"steps": 5000}},
        _fb_decision("BoundaryAttack")))

    # standard: short runs, warm-started by the ensemble from the smallest adversarial point
    # found so far (FMN runs first), at each sample's boundary eps only (ensemble.py); all 9
    # APGD-T targets, since breadth over targets pays more than depth (bench/README.md).
    apgd = {"quick": {"n_iter": 20}, "standard": {"n_iter": 25}, "thorough": {"n_iter": 100, "n_restarts": 5}}
    apgd_t = {"quick": {"n_iter": 20, "n_target_classes": 3}, "standard": {"n_iter": 10, "n_target_classes": 9},
              "thorough": {"n_iter": 200, "n_target_classes": 9}}
    square = {"quick": {"n_queries": 300}, "standard": {"n_queries": 200},
              "thorough": {"n_queries": 5000, "n_restarts": 2}}
    for norm in ("linf", "l2"):
        register_attack(AttackSpec(
            f"apgd-ce-{norm}", "fixed-eps", norm, "gradient", "auditkit",
            "APGD, cross-entropy loss, step-size free (Croce & Hein 2020)", apgd, _native("apgd", norm, loss="ce"),
            eot_capable=True, warm_start=True))
        register_attack(AttackSpec(
            f"apgd-dlr-{norm}", "fixed-eps", norm, "gradient", "auditkit",
            "APGD, DLR margin loss (Croce & Hein 2020)", apgd, _native("apgd", norm, loss="dlr"), eot_capable=True,
            warm_start=True))
        register_attack(AttackSpec(
            f"apgd-t-{norm}", "fixed-eps", norm, "gradient", "auditkit",
            "APGD-T: targeted DLR towards the top other classes (Croce & Hein 2020)", apgd_t, _native("apgd-t", norm),
            eot_capable=True, warm_start=True))
        register_attack(AttackSpec(
            f"square-{norm}", "fixed-eps", norm, "score-based", "auditkit",
            "Square Attack: score-based random search (Andriushchenko et al. 2020)", square, _native("square", norm),
            warm_start=True))


_register_builtins()
