"""Attack benchmark: auditkit's attacks against a bare PyTorch PGD loop, foolbox, torchattacks
and ART, on the same zoo models and the same inputs, in one process (DESIGN.md §8).

    .venv-bench/bin/python bench/libraries.py [--models cnn-digits,fraud-mlp] [--samples 256]
        [--steps 40] [--threads 1] [--repeats 3]
        [--min-seconds 3] [--slow-samples 128] [--suites first|all] [--profile] [--json PATH]

Needs the benchmark environment ``.venv-bench`` (torchattacks and ART; see bench/README.md).

For every attack it reports seconds per sample (median of at least ``--repeats`` timed runs
after a warm-up for the cheap fixed-step attacks; one run for the suites), robust accuracy on
the inputs (correct and not fooled, out of all samples), forward and backward passes per sample
(counted by a wrapper module in the warm-up run), the time ratio against the bare loop, and
whether the attack left gradients in the model's parameters (``param.grad``: a side effect on
the audited model, and the cost of weight gradients an attack does not need).

Models:
* ``cnn-digits``: its card's bounds (0, 1), Linf eps 0.1 and 0.05 (``--eps-digits``).
* ``fraud-mlp``: raw features of mixed units have no common Linf scale, so the generic
  libraries attack the model composed with a de-normalisation ``x = lo + u * (hi - lo)``
  (the card's feature ranges) and see inputs ``u`` in [0, 1] per feature, Linf eps 0.05 in
  that unit (``--eps-fraud``). Integer and categorical features are treated as continuous and non-changeable
  features are attacked too: this is only a comparison of speed and strength between
  libraries, not auditkit's tabular threat model.

Timings vary 2-10x on a shared machine: compare the ratios, which are measured in one run.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import gc
import io
import json
import math
import os
import platform
import pstats
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditkit.attacks.ensemble import CountingModel  # the ensemble's own pass counter

# The goal for auditkit's PGD against the bare loop (seconds per sample).
PGD_OVERHEAD_GOAL = 1.10
# Cap on timing rounds for tiny cases (see --min-seconds).
MAX_ROUNDS = 30
# A returned point counts as inside the eps-ball up to float rounding of x + delta.
NORM_TOL = 1e-5


class UnitModel(nn.Module):
    """``model(lo + u * (hi - lo))``: a tabular model seen on inputs ``u`` in [0, 1]^F.

    Args:
        model: classifier on raw features ``[N, F]``.
        lo, hi: ``[F]`` feature ranges from the card (raw units).
    """

    def __init__(self, model: nn.Module, lo: Tensor, hi: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("lo", lo)
        self.register_buffer("scale", hi - lo)

    def forward(self, u: Tensor) -> Tensor:
        return self.model(self.lo + u * self.scale)


class ImageView(nn.Module):
    """``model(z.flatten(1))``: a model on rows ``[N, F]`` seen on images ``[N, 1, 1, F]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z.flatten(1))


@dataclass
class Case:
    """One model with its benchmark inputs: ``x [N, ...]`` in ``bounds``, labels ``y [N]``."""

    name: str
    model: nn.Module
    x: Tensor
    y: Tensor
    bounds: tuple[float, float]
    epsilons: list[float]
    num_classes: int
    note: str


@dataclass
class Row:
    """One attack's figures on one case at one eps."""

    model: str
    eps: float
    attack: str
    samples: int
    seconds_per_sample: float
    robust_accuracy: float
    forwards_per_sample: float | None
    backwards_per_sample: float | None
    repeats: int
    ratio_vs_bare: float | None = None
    max_norm: float | None = None
    error: str | None = None
    robust: Tensor | None = field(default=None, repr=False)  # bool [samples], for paired comparison
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "robust"}
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in d.items()}


def load_cases(models: list[str], samples: int, eps_digits: list[float], eps_fraud: list[float]) -> list[Case]:
    """The benchmark inputs: the first ``samples`` digits test images; for fraud, the first
    ``samples // 2`` fraud and the first legit test rows, alternating (in the unit space)."""
    from auditkit.data import load_data
    from auditkit.zoo import get_model

    cases = []
    for name in models:
        module, card = get_model(name)
        module.eval()
        if name == "cnn-digits":
            data = load_data("digits")
            x = torch.from_numpy(data.x_test[:samples]).float()
            y = torch.from_numpy(data.y_test[:samples]).long()
            lo, hi = card.bounds
            cases.append(Case(name, module, x, y, (float(lo), float(hi)), eps_digits, card.num_classes,
                              "card bounds (0, 1), Linf in pixel units"))
        elif name == "fraud-mlp":
            data = load_data("fraud")
            pos = int(card.positive_index)
            yt = data.y_test
            fraud, legit = np.flatnonzero(yt == pos)[: samples // 2], np.flatnonzero(yt != pos)
            # Alternate fraud and legit rows, so that every prefix (the slow libraries run on
            # the first few) is balanced too.
            idx = np.empty(samples, dtype=np.int64)
            idx[0 : 2 * len(fraud) : 2], idx[1 : 2 * len(fraud) : 2] = fraud, legit[: len(fraud)]
            idx[2 * len(fraud) :] = legit[len(fraud) : samples - len(fraud)]
            lo = torch.tensor([f.min for f in card.features], dtype=torch.float32)
            hi = torch.tensor([f.max for f in card.features], dtype=torch.float32)
            x_raw = torch.from_numpy(data.x_test[idx]).float()
            u = ((x_raw - lo) / (hi - lo)).clamp(0, 1)
            cases.append(Case(name, UnitModel(module, lo, hi).eval(), u, torch.from_numpy(yt[idx]).long(),
                              (0.0, 1.0), eps_fraud, card.num_classes,
                              "model composed with x = lo + u*(hi-lo); Linf in unit feature range"))
        else:
            raise SystemExit(f"unknown model {name!r}: use cnn-digits and/or fraud-mlp")
    return cases


# ----------------------------------------------------------------------------- attacks
# Each attack is ``fn(model, x, y, eps) -> x_adv`` (or an ensemble result dict); ``model`` may
# be the counting wrapper (warm-up) or the bare module (timed runs).


def bare_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, bounds: tuple[float, float]) -> Tensor:
    """The floor: Linf PGD with random start, CE loss, ``steps`` steps of ``2.5 * eps / steps``,
    one forward and one backward pass per step, no early stopping, input gradients only."""
    lo, hi = bounds
    alpha = 2.5 * eps / steps
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(lo, hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * g.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(lo, hi)
    return x_adv


def make_attacks(case: Case, steps: int, slow_n: int) -> list[tuple[str, bool, int, Callable[..., Any]]]:
    """``(name, cheap, n_samples, fn)`` for every attack; ``cheap`` ones get repeats."""
    import foolbox as fb
    import torchattacks
    from art.attacks.evasion import AutoProjectedGradientDescent, ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    from auditkit.attacks.apgd import APGD
    from auditkit.attacks.ensemble import run_ensemble
    from auditkit.attacks.registry import get_attack

    bounds = case.bounds
    n = len(case.x)
    # The registry's pgd-linf with its step count set to ``steps`` (it then uses foolbox's
    # rel_stepsize = 2.5 / steps, the bare loop's step).
    spec = get_attack("pgd-linf")
    pgd_spec = dataclasses.replace(spec, budgets={**spec.budgets, "bench": {"steps": steps}})

    def ak_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        return pgd_spec.run(model, x, y, [eps], bounds, seed=0, budget="bench", batch_size=n)[0].x_adv

    def ak_pgd_frozen(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        # Diagnostic: the same call with the parameters' requires_grad off, so that foolbox's
        # loss.backward() computes input gradients only (what a fix in the registry would give).
        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            return ak_pgd(model, x, y, eps)
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    def ak_apgd(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        return APGD(norm="linf", loss="ce", n_iter=steps, seed=0).run(model, x, y, eps, bounds).x_adv

    def ak_standard(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> dict[str, Any]:
        res = run_ensemble(model, x, y, "linf", [0.0, eps], budget="standard", bounds=bounds, seed=0, batch_size=n)
        pa = res.per_attack
        return {"robust": torch.from_numpy(res.robust_at(eps)),
                "forwards": sum(v["forward_passes"] for v in pa.values()),
                "backwards": sum(v["backward_passes"] for v in pa.values()),
                "per_attack": {k: {"seconds": v["seconds"], "cumulative_robust_accuracy": v["cumulative_robust_accuracy"][-1]}
                               for k, v in pa.items()}}

    def foolbox_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        fmodel = fb.PyTorchModel(model, bounds=bounds, device=x.device)
        attack = fb.attacks.LinfPGD(rel_stepsize=2.5 / steps, steps=steps, random_start=True)
        _, clipped, _ = attack(fmodel, x, y, epsilons=eps)
        return clipped

    def ta_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        return torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)(x, y)

    def ta_autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        # torchattacks' Square assumes images [N, C, H, W]: tabular rows are shown to it as
        # 1 x 1 x F images through a view of the model.
        if x.dim() == 2:
            model, x = ImageView(model).eval(), x[:, None, None, :]
        aa = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=case.num_classes, seed=0)
        return aa(x, y)

    def art_classifier(model: nn.Module) -> Any:
        return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(case.x.shape[1:]),
                                 nb_classes=case.num_classes, clip_values=bounds, device_type="cpu")

    def art_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        attack = ProjectedGradientDescentPyTorch(
            art_classifier(model), norm=np.inf, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
            num_random_init=1, batch_size=n, verbose=False)
        return torch.from_numpy(attack.generate(x.numpy(), y.numpy()))

    def art_apgd(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        attack = AutoProjectedGradientDescent(
            art_classifier(model), norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps, nb_random_init=1,
            batch_size=n, loss_type="cross_entropy", verbose=False)
        return torch.from_numpy(attack.generate(x.numpy(), y.numpy()))

    return [
        ("bare-pytorch-pgd", True, n, lambda m, x, y, e: bare_pgd(m, x, y, e, steps, bounds)),
        ("auditkit pgd-linf", True, n, ak_pgd),
        ("auditkit pgd frozen-params", True, n, ak_pgd_frozen),
        ("auditkit apgd-ce", True, n, ak_apgd),
        ("foolbox LinfPGD", True, n, foolbox_pgd),
        ("torchattacks PGD", True, n, ta_pgd),
        ("art PGD", True, n, art_pgd),
        ("art APGD-CE", True, n, art_apgd),
        ("auditkit standard", False, n, ak_standard),
        ("torchattacks AutoAttack", False, min(n, slow_n), ta_autoattack),
    ]


# ----------------------------------------------------------------------------- measuring


def _seed() -> None:
    # Every library draws its random start from torch's or numpy's global RNG.
    torch.manual_seed(0)
    np.random.seed(0)


def robust_samples(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, eps: float,
                   bounds: tuple[float, float]) -> tuple[Tensor, float]:
    """bool ``[N]``: still correctly classified at ``x_adv``; and the largest Linf perturbation
    returned. A point outside the eps-ball or the bounds (beyond rounding) is not counted as a
    success: there the sample is robust if it is correct on the clean input."""
    x_adv = x_adv.detach().to(x.dtype).reshape(x.shape)
    dist = (x_adv - x).flatten(1).abs().amax(1)
    valid = (dist <= eps + NORM_TOL) & (x_adv.flatten(1).amin(1) >= bounds[0] - NORM_TOL) \
        & (x_adv.flatten(1).amax(1) <= bounds[1] + NORM_TOL)
    with torch.no_grad():
        correct = model(x_adv).argmax(1) == y
        clean_ok = model(x).argmax(1) == y
    return torch.where(valid, correct, clean_ok), float(dist.max())


def _run(fn: Callable[..., Any], model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Any, float]:
    """One seeded call; returns its output and wall seconds."""
    _seed()
    for p in model.parameters():  # runs start alike, whatever an earlier attack left behind
        p.grad = None
    gc.collect()  # so that a collection of an earlier run's garbage is not timed here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        out = fn(model, x, y, eps)
        return out, time.perf_counter() - t0


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:110]


def measure_case(case: Case, attacks: list[tuple[str, bool, int, Callable[..., Any]]], eps: float,
                 repeats: int, min_seconds: float) -> list[Row]:
    """Run every attack on ``case`` at ``eps``.

    Cheap attacks: one counted warm-up run each (passes and robust accuracy come from it), then
    at least ``repeats`` rounds (more for tiny cases, until the rounds take ``min_seconds``) in
    which every cheap attack is timed once on the bare model, in an order rotated each round,
    so that load changes on a shared machine hit all attacks alike; the median is reported.
    Suites: one counted, timed run.
    """
    rows: dict[str, Row] = {}
    times: dict[str, list[float]] = {}
    for name, cheap, n, fn in attacks:
        x, y = case.x[:n], case.y[:n]
        counter = CountingModel(case.model).eval()
        try:
            out, sec = _run(fn, counter, x, y, eps)
        except Exception as e:  # a library that cannot run this case is reported, not fatal
            rows[name] = Row(case.name, eps, name, n, float("nan"), float("nan"), None, None, 0, error=_error(e))
            print(f"  eps {eps:g} {name}: {rows[name].error}", flush=True)
            continue
        leaves_grad = any(p.grad is not None for p in case.model.parameters())
        if isinstance(out, dict):  # auditkit's ensemble reports its own figures and counts
            robust, max_norm = out["robust"], None
            fwd, bwd, extra = out["forwards"], out["backwards"], {"per_attack": out["per_attack"]}
        else:
            robust, max_norm = robust_samples(case.model, x, out, y, eps, case.bounds)
            fwd, bwd, extra = counter.forwards, counter.backwards, {}
        extra["leaves_param_grad"] = leaves_grad
        rows[name] = Row(case.name, eps, name, n, sec / n, float(robust.float().mean()), fwd / n, bwd / n,
                         1, max_norm=max_norm, robust=robust, extra=extra)
        times[name] = [] if cheap else [sec]
        if not cheap:
            print(f"  eps {eps:g} {name}: {sec / n * 1e3:.3f} ms/sample, robust acc {rows[name].robust_accuracy:.3f}",
                  flush=True)
    # Tiny cases take milliseconds a run: repeat until the timed rounds add up to min_seconds.
    cheap = [(name, n, fn) for name, is_cheap, n, fn in attacks if is_cheap and name in times]
    round_s = sum(rows[name].seconds_per_sample * n for name, n, _ in cheap)
    rounds = max(repeats, min(MAX_ROUNDS, math.ceil(min_seconds / max(round_s, 1e-9))))
    for k in range(rounds):
        for name, n, fn in cheap[k % len(cheap):] + cheap[: k % len(cheap)]:  # rotate the order
            times[name].append(_run(fn, case.model, case.x[:n], case.y[:n], eps)[1])
    for name, cheap, n, _ in attacks:
        if name in times and cheap and times[name]:
            rows[name].seconds_per_sample = statistics.median(times[name]) / n
            rows[name].repeats = len(times[name])
            print(f"  eps {eps:g} {name}: {rows[name].seconds_per_sample * 1e3:.3f} ms/sample, "
                  f"robust acc {rows[name].robust_accuracy:.3f}", flush=True)
    return [rows[name] for name, *_ in attacks]


def compare_strength(suite: Row, others: list[Row]) -> dict[str, Any]:
    """Is the suite at least as strong as the strongest other attack? Robust accuracies are
    compared on the samples both ran on (a slow library may have run on the first few only);
    ``missed_by_suite`` counts samples some other attack broke while the suite did not."""
    best: tuple[float, float, str, int] | None = None
    missed = torch.zeros_like(suite.robust)
    for r in others:
        m = min(suite.samples, r.samples)
        ra_suite, ra_other = float(suite.robust[:m].float().mean()), float(r.robust[:m].float().mean())
        missed[:m] |= suite.robust[:m] & ~r.robust[:m]
        # The strongest other: the smallest lead of the suite; on a tie, the larger sample.
        if best is None or (ra_other - ra_suite, -m) < (best[1] - best[0], -best[3]):
            best = (ra_suite, ra_other, r.attack, m)
    if best is None:
        raise ValueError("no other attack ran: nothing to compare the suite with")
    return {"model": suite.model, "eps": suite.eps, "suite": best[0], "strongest_other": best[2],
            "strongest_other_ra": best[1], "n": best[3], "at_least_as_strong": best[0] <= best[1],
            "missed_by_suite": int(missed.sum())}


def profile_auditkit_pgd(case: Case, fn: Callable[..., Any], eps: float, top: int = 15) -> str:
    """cProfile of one auditkit pgd-linf run on the bare model: the top functions by own time."""
    prof = cProfile.Profile()
    _seed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof.enable()
        fn(case.model, case.x, case.y, eps)
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def print_table(rows: list[Row]) -> None:
    head = (f"{'model':<11} {'eps':>5} {'attack':<27} {'n':>4} {'ms/sample':>10} {'x bare':>7} {'rob.acc':>7} "
            f"{'fwd/s':>7} {'bwd/s':>7} {'reps':>4} {'p.grad':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.error:
            print(f"{r.model:<11} {r.eps:>5.3g} {r.attack:<27} {r.samples:>4}  error: {r.error}")
            continue
        print(f"{r.model:<11} {r.eps:>5.3g} {r.attack:<27} {r.samples:>4} {r.seconds_per_sample * 1e3:>10.3f} "
              f"{_fmt(r.ratio_vs_bare, '.2f'):>7} {r.robust_accuracy:>7.3f} {_fmt(r.forwards_per_sample, '.1f'):>7} "
              f"{_fmt(r.backwards_per_sample, '.1f'):>7} {r.repeats:>4} "
              f"{'yes' if r.extra.get('leaves_param_grad') else 'no':>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn-digits,fraud-mlp")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--slow-samples", type=int, default=128, help="samples for torchattacks AutoAttack")
    ap.add_argument("--steps", type=int, default=40, help="iterations of every PGD/APGD")
    ap.add_argument("--eps-digits", default="0.1,0.05")
    ap.add_argument("--eps-fraud", default="0.05")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=3.0,
                    help="repeat the cheap attacks' timing rounds until they add up to this (tiny models)")
    ap.add_argument("--suites", choices=("first", "all"), default="first",
                    help="run the suites (auditkit standard, AutoAttack) at every eps or only each model's first")
    ap.add_argument("--profile", action="store_true",
                    help=f"cProfile auditkit pgd-linf when its ratio to the bare loop is above {PGD_OVERHEAD_GOAL}")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    import art
    import foolbox
    import torchattacks

    import auditkit

    started = time.perf_counter()
    env = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "machine": platform.platform(),
           "python": platform.python_version(), "torch": torch.__version__, "auditkit": auditkit.__version__,
           "foolbox": foolbox.__version__, "torchattacks": torchattacks.__version__, "art": art.__version__,
           "steps": args.steps}
    print(" ".join(f"{k}={v}" for k, v in env.items()))

    cases = load_cases(args.models.split(","), args.samples,
                       [float(e) for e in args.eps_digits.split(",")], [float(e) for e in args.eps_fraud.split(",")])
    rows: list[Row] = []
    verdicts: list[dict[str, Any]] = []
    profiles: dict[str, str] = {}
    for case in cases:
        with torch.no_grad():
            clean = float((case.model(case.x).argmax(1) == case.y).float().mean())
        print(f"\n{case.name}: {len(case.x)} samples, clean accuracy {clean:.3f}; {case.note}", flush=True)
        attacks = make_attacks(case, args.steps, args.slow_samples)
        for k, eps in enumerate(case.epsilons):
            todo = [a for a in attacks if a[1] or args.suites == "all" or k == 0]
            case_rows = measure_case(case, todo, eps, args.repeats, args.min_seconds)
            bare = case_rows[0].seconds_per_sample
            for r in case_rows:
                if not r.error:
                    r.ratio_vs_bare = r.seconds_per_sample / bare
            rows += case_rows
            suite = next((r for r in case_rows if r.attack == "auditkit standard" and not r.error), None)
            if suite is not None:
                verdicts.append(compare_strength(suite, [r for r in case_rows if r is not suite and not r.error]))
            pgd = next(r for r in case_rows if r.attack == "auditkit pgd-linf")
            if args.profile and pgd.ratio_vs_bare and pgd.ratio_vs_bare > PGD_OVERHEAD_GOAL:
                fn = next(f for nm, _, _, f in attacks if nm == "auditkit pgd-linf")
                profiles[f"{case.name} eps {eps:g}"] = profile_auditkit_pgd(case, fn, eps)

    print(f"\nthreads={env['threads']} steps={args.steps} "
          f"(PGD step 2.5*eps/steps, random start; APGD {args.steps} iterations, 1 restart)\n")
    print_table(rows)
    print("fwd/s, bwd/s: forward and backward passes per sample; x bare: time ratio to the bare loop; "
          "p.grad: the attack left gradients in the model's parameters;\n'auditkit pgd frozen-params' is a "
          "diagnostic: pgd-linf with requires_grad off on the parameters during the call\n")
    for v in verdicts:
        word = "yes" if v["at_least_as_strong"] else "NO"
        print(f"{v['model']} eps {v['eps']:g}: auditkit standard robust acc {v['suite']:.3f} vs strongest other "
              f"{v['strongest_other']} {v['strongest_other_ra']:.3f} on {v['n']} samples -> at least as strong: {word}; "
              f"samples another attack broke and the suite did not: {v['missed_by_suite']}")
    for r in rows:
        if r.attack == "auditkit pgd-linf" and r.ratio_vs_bare:
            ok = "within" if r.ratio_vs_bare <= PGD_OVERHEAD_GOAL else "ABOVE"
            print(f"{r.model} eps {r.eps:g}: auditkit pgd-linf / bare = {r.ratio_vs_bare:.2f} ({ok} goal {PGD_OVERHEAD_GOAL})")
    for key, text in profiles.items():
        print(f"\ncProfile of auditkit pgd-linf, {key} (top by own time):\n{text}")
    env["loadavg_end"] = os.getloadavg()
    env["total_s"] = time.perf_counter() - started
    print(f"total {env['total_s']:.0f}s, load average at start {env['loadavg_start']}, at end {env['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": [r.to_dict() for r in rows],
                                         "verdicts": verdicts, "profiles": profiles}, indent=1))


if __name__ == "__main__":
    main()
