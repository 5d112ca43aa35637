"""The scan's ``defenses`` check: each defense named with ``--defense``, evaluated honestly.

Athalye, Carlini & Wagner (2018) showed that defenses evaluated only against attacks crafted on
the undefended model (or through obfuscated gradients) overstate their robustness. So every
defense here is reported with the *adaptive* number (an attack that knows the defense) and,
beside it, the *non-adaptive* number a naive evaluation would report:

* ``squeeze-bits``, ``median-filter``, ``defense-gan``: input purification before the scanned
  classifier (``auditkit.defenses.purification``). Non-adaptive: APGD-CE points crafted on the
  bare classifier. Adaptive: the same APGD through BPDA (+ EOT for Defense-GAN's random
  restarts), worst case with the transferred points.
* ``smoothing``: randomized smoothing with sigma 0.25 (``auditkit.defenses.smoothing``):
  certified L2 accuracy at the card's L2 radii — a guarantee, which no attack can overstate —
  beside the undefended model's empirical L2 robust accuracy (APGD-CE) at the same radii.
* ``adversarial-training=PATH``: the scanned model against the adversarially trained
  counterpart in the model file PATH, named explicitly (e.g. ``zoo/cnn-digits/model.pt`` with
  ``--defense adversarial-training=zoo/cnn-digits-at/model.pt``; a ``metrics.json`` beside PATH,
  as the zoo writes, supplies the training cost). Adaptive: the
  scan budget's attack ensemble run on the defended model itself; non-adaptive: APGD-CE points
  crafted on the undefended model, fed to the defended one. Tabular models compare evasion
  rates under the card's constrained attack the same way.

Samples: the scan's evaluation samples, capped per budget (``SAMPLE_CAP``; Defense-GAN, whose
projection runs at every attack step, ``GAN_SAMPLE_CAP``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from auditkit.checks import Check, ScanContext, register_check
from auditkit.results import Finding
from auditkit.sections import middle_positive
from auditkit.sections.defenses import GAIN_POINTS, OVERSTATEMENT_POINTS
from auditkit.stats import proportion

DEFENSES = ("squeeze-bits", "median-filter", "defense-gan", "smoothing", "adversarial-training")
PURIFICATION = ("squeeze-bits", "median-filter", "defense-gan")
SAMPLE_CAP = {"quick": 32, "standard": 100, "thorough": 200}
GAN_SAMPLE_CAP = {"quick": 16, "standard": 32, "thorough": 64}
SMOOTHING_SIGMA = 0.25
SMOOTHING_N = {"quick": 500, "standard": 1000, "thorough": 10000}
SMOOTHING_ALPHA = 0.001
DEFAULT_LINF = [0.0, 0.02, 0.05, 0.1, 0.2]
DEFAULT_L2 = [0.0, 0.25, 0.5, 1.0]


ARGUMENTS = {"adversarial-training": "PATH of the adversarially trained counterpart's model file"}


def parse_defense(spec: str) -> tuple[str, str | None]:
    """``"name"`` or ``"name=ARGUMENT"`` (``adversarial-training=PATH``) -> ``(name, argument)``."""
    name, sep, arg = spec.partition("=")
    return name.strip(), (arg.strip() or None) if sep else None


def check_defense_names(names: list[str]) -> list[str]:
    """``names`` (``name`` or ``name=ARGUMENT``) de-duplicated by name in order; ScanInputError
    listing the known defenses otherwise, or when a defense that takes no argument is given one."""
    from auditkit.errors import ScanInputError

    unknown = [n for n in names if parse_defense(n)[0] not in DEFENSES]
    if unknown:
        raise ScanInputError(
            f"unknown defense(s) {', '.join(repr(n) for n in unknown)}; known defenses: {', '.join(DEFENSES)}")
    extra = [n for n in names if parse_defense(n)[1] and parse_defense(n)[0] not in ARGUMENTS]
    if extra:
        raise ScanInputError(f"defense(s) {', '.join(repr(n) for n in extra)} take no '=' argument; only "
                             + ", ".join(f"{k}={v}" for k, v in ARGUMENTS.items()) + " does")
    first: dict[str, str] = {}
    for spec in names:
        first.setdefault(parse_defense(spec)[0], spec)
    return list(first.values())


def _argument(ctx: ScanContext, name: str) -> str | None:
    """The argument given with defense ``name`` (``--defense name=ARGUMENT``), if any."""
    return next((arg for n, arg in map(parse_defense, ctx.config.defenses or []) if n == name), None)


def _middle(values: list[float]) -> float:
    """The headline ε/radius: the grid's middle positive value (the robustness section's rule,
    :func:`auditkit.sections.middle_positive`), 0 for a grid without one."""
    return middle_positive(values) or 0.0


def _at(curve: list[dict[str, Any]], eps: float, key: str) -> float | None:
    for row in curve:
        if abs(row["eps"] - eps) < 1e-12:
            value = row[key]
            return value["value"] if isinstance(value, dict) else value
    return None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


@register_check
class Defenses(Check):
    name = "defenses"
    title = "Defenses: adaptive and non-adaptive robustness"
    tasks = ("image-classification", "tabular-classification")

    def skip_reason(self, ctx: ScanContext) -> str | None:
        names = ctx.config.defenses or []
        if names:
            check_defense_names(names)  # an unknown name is bad input whatever the task
        else:
            return f"no --defense given (known defenses: {', '.join(DEFENSES)})"
        card = ctx.model.card
        if card.task not in self.tasks:
            return "no defense applies to this task yet"
        if card.task == "image-classification" and card.bounds is None:
            return "the card gives no input bounds; attacks and purifiers need the valid input domain"
        return None

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        names = [parse_defense(n)[0] for n in check_defense_names(ctx.config.defenses or [])]
        if ctx.model.card.task == "tabular-classification":
            return self._tabular(ctx, names)
        return self._images(ctx, names)

    # ------------------------------------------------------------------ images
    def _images(self, ctx: ScanContext, names: list[str]) -> tuple[dict[str, Any], list[Finding]]:
        from auditkit.defenses.purification import transfer_attack

        card, module, budget, seed = ctx.model.card, ctx.model.module, ctx.config.budget, ctx.config.seed
        bounds = tuple(float(b) for b in card.bounds)  # type: ignore[union-attr]
        source = ctx.config.epsilons or card.epsilons
        eps = sorted({0.0, *map(float, source.get("linf") or DEFAULT_LINF)})
        radii = sorted({0.0, *map(float, source.get("l2") or DEFAULT_L2)})
        idx = ctx.eval_index[: SAMPLE_CAP[budget]]
        x = ctx.model.to_input(ctx.data.x_test[idx])
        y = torch.as_tensor(ctx.data.y_test[idx], device=ctx.model.device).long()
        n = len(idx)

        needs_transfer = any(name in PURIFICATION or name == "adversarial-training" for name in names)
        transfer = (transfer_attack(module, x, y, eps, bounds, seed, budget)  # type: ignore[arg-type]
                    if needs_transfer else None)
        with torch.no_grad():
            bare_ok = (module(x).argmax(1) == y).cpu().numpy()
        undefended: dict[str, Any] = {"clean_accuracy": proportion(int(bare_ok.sum()), n)}
        if transfer is not None:
            undefended["robust_accuracy_apgd_ce"] = [
                {"eps": e, **proportion(int((bare_ok & self._correct(module, t, y)).sum()), n)}
                for e, t in zip(eps, transfer)]
        out: dict[str, Any] = {
            "budget": budget, "norm": "linf", "epsilons": eps, "l2_radii": radii, "n_samples": n,
            "sample_index": idx.tolist(), "undefended": undefended, "defenses": {}, "comparison": [],
            "headline_eps": _middle(eps),
        }
        findings: list[Finding] = []
        for name in ctx.track(names, desc="defenses", total=len(names)):
            t0 = time.perf_counter()
            if name in PURIFICATION:
                entry = self._purification(ctx, name, x, y, eps, bounds, transfer)  # type: ignore[arg-type]
            elif name == "smoothing":
                entry = self._smoothing(ctx, x, y, radii, bounds)  # type: ignore[arg-type]
            else:
                entry = self._adversarial_training(ctx, x, y, eps, bounds, transfer)  # type: ignore[arg-type]
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            out["defenses"][name] = entry
            findings += self._findings(name, entry)
            out["comparison"].append(self._row(name, entry, out["headline_eps"]))
        return out, findings

    @staticmethod
    def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return (model(x).argmax(1) == y).cpu().numpy()

    def _purification(self, ctx: ScanContext, name: str, x: torch.Tensor, y: torch.Tensor, eps: list[float],
                      bounds: tuple[float, float], transfer: list[torch.Tensor]) -> dict[str, Any]:
        from auditkit.defenses.purification import evaluate_defense

        budget, seed = ctx.config.budget, ctx.config.seed
        if name == "defense-gan":
            reason = self._gan_unavailable(ctx)
            if reason:
                return {"kind": "purification", "status": "skipped", "reason": reason}
            k = min(len(x), GAN_SAMPLE_CAP[budget])
            x, y, transfer = x[:k], y[:k], [t[:k] for t in transfer]
        result = evaluate_defense(name, ctx.model.module, x, y, eps, bounds, seed, budget, transfer=transfer,
                                  batch_size=ctx.config.batch_size)
        result.update(kind="purification", status="ok")
        e = _middle(eps)
        a, na, u = (_at(result["curve"], e, k) for k in ("adaptive", "non_adaptive", "undefended"))
        c, c0 = result["clean_accuracy"]["value"], result["undefended_clean_accuracy"]["value"]
        gain = 100 * ((a or 0.0) - (u or 0.0))
        result["real_gain"] = gain >= GAIN_POINTS
        judgement = "no real robustness gain" if gain < GAIN_POINTS else f"a gain of {gain:.0f} points"
        if c0 - c > 0.02:
            judgement += f", at a cost of {100 * (c0 - c):.0f} points of clean accuracy"
        if name == "defense-gan" and gain >= GAIN_POINTS:
            # Identity-BPDA approximates a projection onto a generator's range poorly: the
            # adaptive figure may still be optimistic.
            judgement += " (an upper bound: identity BPDA approximates the projection poorly)"
        result["verdict"] = (
            f"{name}: {judgement} — adaptive robust accuracy {_pct(a)} vs {_pct(u)} undefended at Linf eps "
            f"{e:g} (a non-adaptive evaluation would claim {_pct(na)}); clean {_pct(c)} vs {_pct(c0)}; "
            f"{1000 * result['seconds_per_sample']:.2g} ms per sample to purify.")
        return result

    @staticmethod
    def _gan_unavailable(ctx: ScanContext) -> str | None:
        from auditkit.defenses.purification import default_generator

        found = default_generator()
        if isinstance(found, str):
            return found
        card, gen = ctx.model.card, found[2]  # the generator's card says what it draws
        if list(card.input_shape) != list(gen.input_shape) or tuple(card.bounds or ()) != tuple(gen.bounds or ()):
            return (f"Defense-GAN projects onto {gen.name}'s range ({gen.input_shape} images in {gen.bounds}); "
                    f"this model takes {card.input_shape} in {card.bounds}")
        return None

    def _smoothing(self, ctx: ScanContext, x: torch.Tensor, y: torch.Tensor, radii: list[float],
                   bounds: tuple[float, float]) -> dict[str, Any]:
        from auditkit.attacks.apgd import APGD
        from auditkit.attacks.registry import get_attack
        from auditkit.defenses.smoothing import ABSTAIN, SmoothedClassifier
        from auditkit.stats import wilson_interval

        module, budget, seed = ctx.model.module, ctx.config.budget, ctx.config.seed
        n = len(x)
        smoothed = SmoothedClassifier(module, SMOOTHING_SIGMA, n0=100, n=SMOOTHING_N[budget],
                                      alpha=SMOOTHING_ALPHA, batch_size=min(1000, SMOOTHING_N[budget]), seed=seed)
        t0 = time.perf_counter()
        classes, radius = smoothed.certify_batch(x)
        seconds = (time.perf_counter() - t0) / n
        labels = y.cpu().numpy()
        certified = []
        for r in radii:
            ok = int(((classes == labels) & (radius >= r)).sum())
            lo, hi = wilson_interval(ok, n)
            certified.append({"radius": r, "certified_accuracy": ok / n, "ci": [lo, hi], "n": n, "n_certified": ok})
        smoothed.reset(seed + 1)
        preds = np.array([smoothed.predict(x[i : i + 1]) for i in range(n)])
        # The undefended model's empirical L2 robustness at the same radii (an attack's upper bound).
        attack = APGD(norm="l2", loss="ce", seed=seed, **get_attack("apgd-ce-l2").settings(budget))
        bare_ok = self._correct(module, x, y)
        empirical = []
        for r in radii:
            ok = bare_ok if r == 0 else bare_ok & ~attack.run(module, x, y, r, bounds).success.cpu().numpy()
            empirical.append({"radius": r, **proportion(int(ok.sum()), n)})
        # No radius beyond sigma * Phi^-1(alpha^(1/n)) can be certified with n samples (pA_lower
        # is at most alpha^(1/n)); the headline radius is the middle card radius below it.
        from scipy import stats

        r_max = SMOOTHING_SIGMA * float(stats.norm.ppf(SMOOTHING_ALPHA ** (1.0 / SMOOTHING_N[budget])))
        r_mid = _middle([r for r in radii if r <= r_max]) or _middle(radii)
        cert_mid = next(c["certified_accuracy"] for c in certified if c["radius"] == r_mid)
        emp_mid = next(c["value"] for c in empirical if c["radius"] == r_mid)
        clean = proportion(int((preds == labels).sum()), n)
        abstain = float((preds == ABSTAIN).mean())
        return {
            "kind": "certification", "status": "ok",
            "summary": f"randomized smoothing (Cohen et al. 2019), sigma {SMOOTHING_SIGMA:g} in input units, "
                       f"n0 100, n {SMOOTHING_N[budget]}, alpha {SMOOTHING_ALPHA:g}; base model: the scanned one",
            "sigma": SMOOTHING_SIGMA, "n0": 100, "n": SMOOTHING_N[budget], "alpha": SMOOTHING_ALPHA,
            "max_certifiable_radius": r_max,
            "headline_radius": r_mid,
            "clean_accuracy": clean,
            "abstain_rate": abstain,
            "undefended_clean_accuracy": proportion(int(bare_ok.sum()), n),
            "certified": certified,
            "undefended_empirical_l2": empirical,
            "attacks": {"undefended_empirical_l2": f"APGD-CE L2 {get_attack('apgd-ce-l2').settings(budget)}",
                        "adaptive": "not needed: the certified radius holds against every attack "
                                    f"(with probability {1 - SMOOTHING_ALPHA:g})"},
            "seconds_per_sample": seconds,
            "records": {"certified_class": classes.tolist(), "certified_radius": radius.tolist(),
                        "predicted": preds.tolist()},
            "verdict": (
                f"smoothing: certified accuracy {_pct(cert_mid)} at L2 radius {r_mid:g} (a guarantee) vs "
                f"{_pct(emp_mid)} empirical for the undefended model; clean {_pct(clean['value'])} "
                f"({abstain:.0%} abstain) vs {_pct(float(bare_ok.mean()))}; "
                f"{1000 * seconds:.3g} ms per sample to certify."),
        }

    def _counterpart(self, ctx: ScanContext) -> tuple[Any, dict[str, Any], str] | str:
        """The adversarially trained counterpart named by ``--defense adversarial-training=PATH``
        (loaded safely, any accepted format with its card), or why there is none."""
        from pathlib import Path

        from auditkit.loading import load_model

        arg = _argument(ctx, "adversarial-training")
        if not arg:
            return ("no counterpart named: give the adversarially trained model's file with "
                    "--defense adversarial-training=PATH (e.g. adversarial-training=zoo/cnn-digits-at/model.pt "
                    "for zoo/cnn-digits/model.pt)")
        path = Path(arg)
        if not path.is_file():
            return f"the adversarially trained counterpart {path} does not exist"
        loaded = load_model(path, device=str(ctx.model.device))
        counterpart = loaded.card.name or path.stem
        if list(loaded.card.input_shape) != list(ctx.model.card.input_shape) or \
                loaded.card.class_names != ctx.model.card.class_names:
            return f"{counterpart} does not take the same inputs or classes as the scanned model"
        metrics_file = path.parent / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        return loaded.module.to(ctx.model.device).eval(), metrics, counterpart

    def _adversarial_training(self, ctx: ScanContext, x: torch.Tensor, y: torch.Tensor, eps: list[float],
                              bounds: tuple[float, float], transfer: list[torch.Tensor]) -> dict[str, Any]:
        from auditkit.attacks.ensemble import run_ensemble

        found = self._counterpart(ctx)
        if isinstance(found, str):
            return {"kind": "adversarial-training", "status": "skipped", "reason": found}
        defended, metrics, counterpart = found
        module, budget, seed, n = ctx.model.module, ctx.config.budget, ctx.config.seed, len(x)
        kw = dict(budget=budget, bounds=bounds, seed=seed, batch_size=ctx.config.batch_size)
        ens_def = run_ensemble(defended, x, y, "linf", eps, **kw)
        ens_base = run_ensemble(module, x, y, "linf", eps, **kw)
        def_ok = self._correct(defended, x, y)
        curve = []
        for k, e in enumerate(eps):
            transferred = def_ok & (self._correct(defended, transfer[k], y) if e > 0 else True)
            curve.append({
                "eps": e,
                "undefended": proportion(int(ens_base.robust_at(e).sum()), n),
                "non_adaptive": proportion(int(transferred.sum()), n),
                "adaptive": proportion(int(ens_def.robust_at(e).sum()), n),
            })
        cost = metrics.get("training_cost") or {}
        t_def, t_base = self._forward_seconds(defended, x), self._forward_seconds(module, x)
        gaps = [(100 * (r["non_adaptive"]["value"] - r["adaptive"]["value"]), r["eps"]) for r in curve]
        e = _middle(eps)
        a, u = _at(curve, e, "adaptive"), _at(curve, e, "undefended")
        clean, clean0 = proportion(int(def_ok.sum()), n), proportion(int(self._correct(module, x, y).sum()), n)
        ratio = cost.get("cpu_ratio") or cost.get("ratio")  # CPU time: steadier on a shared machine
        return {
            "kind": "adversarial-training", "status": "ok", "defense": "adversarial-training",
            "real_gain": 100 * ((a or 0.0) - (u or 0.0)) >= GAIN_POINTS,
            "counterpart": counterpart,
            "summary": f"{_argument(ctx, 'adversarial-training')} ({counterpart}), the adversarially trained "
                       "counterpart of the scanned model",
            "clean_accuracy": clean,
            "undefended_clean_accuracy": clean0,
            "curve": curve,
            "max_overstatement": {"eps": max(gaps)[1], "points": max(gaps)[0]},
            "attacks": {"undefended": f"{budget} ensemble ({', '.join(ens_base.attacks)}) on the scanned model",
                        "adaptive": f"{budget} ensemble ({', '.join(ens_def.attacks)}) on {counterpart} itself",
                        "non_adaptive": "APGD-CE points crafted on the scanned (undefended) model, fed to "
                                        f"{counterpart}"},
            "training_cost": cost,
            "training_cost_ratio": ratio,
            "seconds_per_sample": t_def,
            "undefended_seconds_per_sample": t_base,
            "verdict": (
                f"adversarial training ({counterpart}): robust accuracy {_pct(a)} vs {_pct(u)} undefended at "
                f"Linf eps {e:g} under the {budget} ensemble; clean {_pct(clean['value'])} vs "
                f"{_pct(clean0['value'])}; training cost "
                + (f"{ratio:g}x the undefended model's (CPU time, from its metrics.json)" if ratio else "not recorded")
                + "; no inference overhead."),
        }

    @staticmethod
    def _forward_seconds(model: nn.Module, x: torch.Tensor) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model(x)
        return (time.perf_counter() - start) / max(1, len(x))

    # ------------------------------------------------------------------ tabular
    def _tabular(self, ctx: ScanContext, names: list[str]) -> tuple[dict[str, Any], list[Finding]]:
        out: dict[str, Any] = {"budget": ctx.config.budget, "defenses": {}, "comparison": []}
        findings: list[Finding] = []
        for name in names:
            if name != "adversarial-training":
                out["defenses"][name] = {"kind": "purification" if name in PURIFICATION else "certification",
                                         "status": "skipped",
                                         "reason": "applies to image classifiers only; for tabular models "
                                                   "only adversarial-training is implemented"}
                continue
            t0 = time.perf_counter()
            entry = self._tabular_at(ctx)
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            out["defenses"][name] = entry
            findings += self._findings(name, entry)
            out["comparison"].append(self._row(name, entry, None))
        return out, findings

    def _tabular_at(self, ctx: ScanContext) -> dict[str, Any]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        from auditkit.attacks.tabular import tabular_attack

        found = self._counterpart(ctx)
        if isinstance(found, str):
            return {"kind": "adversarial-training", "status": "skipped", "reason": found}
        defended, metrics, counterpart = found
        card, data, module, seed = ctx.model.card, ctx.data, ctx.model.module, ctx.config.seed
        pos = card.positive_index if card.positive_index is not None else 1
        # Every positive test row: the attack itself keeps those each model catches.
        idx = np.flatnonzero(data.y_test == pos)[: 10 * SAMPLE_CAP[ctx.config.budget]]
        x = ctx.model.to_input(data.x_test[idx])
        y = torch.as_tensor(data.y_test[idx], device=ctx.model.device).long()
        res_def = tabular_attack(defended, x, y, card, target_class=None, seed=seed)
        res_base = tabular_attack(module, x, y, card, target_class=None, seed=seed)
        # Non-adaptive: the undefended model's cheapest evasions, fed to the defended model.
        caught_def = {c["index"] for c in res_def["cheapest"]}
        curve = []
        for point_d, point_b in zip(res_def["curve"], res_base["curve"]):
            b = point_d["budget"]
            transferred = [c for c in res_base["cheapest"] if c["index"] in caught_def]
            xs = [c["x_adv"] for c in transferred if c["success"] and c["cost"] <= b + 1e-9]
            evade = 0
            if xs:
                with torch.no_grad():
                    evade = int((defended(torch.tensor(xs, device=x.device)).argmax(1) != pos).sum())
            curve.append({"budget": b, "undefended": point_b["evasion"], "adaptive": point_d["evasion"],
                          "non_adaptive": proportion(evade, len(caught_def))})
        scores = {}
        yt = (data.y_test == pos).astype(int)
        for key, m in (("defended", defended), ("undefended", module)):
            with torch.no_grad():
                logits = torch.cat([m(ctx.model.to_input(data.x_test[s : s + 4096]))
                                    for s in range(0, len(data.x_test), 4096)])
            score = torch.softmax(logits.float(), 1)[:, pos].cpu().numpy()
            scores[key] = {"pr_auc": float(average_precision_score(yt, score)),
                           "roc_auc": float(roc_auc_score(yt, score))}
        cost = metrics.get("training_cost") or {}
        ratio = cost.get("cpu_ratio") or cost.get("ratio")
        gaps = [(100 * (r["adaptive"]["value"] - r["non_adaptive"]["value"]), r["budget"])
                for r in curve if r["adaptive"]["n"]]

        def rates(key: str) -> str:
            return " / ".join(_pct(r[key]["value"] if r[key]["n"] else None) for r in curve)

        budgets = " / ".join(f"{r['budget']:g}" for r in curve)

        return {
            "kind": "adversarial-training", "status": "ok", "counterpart": counterpart,
            "metric": "evasion rate among the frauds each model catches (lower is better)",
            # Real gain: at least GAIN_POINTS fewer evasions at some budget (both rates defined).
            "real_gain": any(r["adaptive"]["n"] and r["undefended"]["n"] and
                             100 * (r["undefended"]["value"] - r["adaptive"]["value"]) >= GAIN_POINTS
                             for r in curve),
            "curve": curve,
            "n_caught": {"defended": res_def["n_attacked"], "undefended": res_base["n_attacked"]},
            "attacks": {"undefended": "auditkit.attacks.tabular.tabular_attack on the scanned model",
                        "adaptive": f"auditkit.attacks.tabular.tabular_attack on {counterpart} itself",
                        "non_adaptive": f"the scanned model's cheapest evasions (cost <= budget) fed to {counterpart}"},
            "ranking": scores,
            # For evasion rates the non-adaptive evaluation overstates robustness when it
            # reports *fewer* evasions than the adaptive attack finds.
            "max_overstatement": {"budget": max(gaps)[1], "points": max(gaps)[0]} if gaps else None,
            "training_cost": metrics.get("training_cost"),
            "training_cost_ratio": ratio,
            "verdict": (
                f"adversarial training ({counterpart}): evasion rate {rates('adaptive')} vs {rates('undefended')} "
                f"undefended at cost budgets {budgets}; "
                f"PR-AUC {scores['defended']['pr_auc']:.3f} vs {scores['undefended']['pr_auc']:.3f}; training cost "
                + (f"{ratio:g}x (CPU time)" if ratio else "not recorded") + "."),
        }

    # ------------------------------------------------------------------ summary
    def _findings(self, name: str, entry: dict[str, Any]) -> list[Finding]:
        """Findings about an optional defense: subject ``defense``, never high (the defense is
        not the model, so it never decides the verdict); each with why and what to do."""
        if entry.get("status") != "ok":
            return []
        findings = []
        path = f"sections.defenses.data.defenses.{name}"
        gain = entry.get("real_gain")
        over = entry.get("max_overstatement")
        if over and over["points"] > OVERSTATEMENT_POINTS:
            where = f"eps {over['eps']:g}" if "eps" in over else f"cost budget {over['budget']:g}"
            # Medium when the adaptive attack leaves no real gain: a naive evaluation would credit
            # a defense that does not work; low when the defense helps but less than claimed.
            findings.append(Finding(
                severity="low" if gain else "medium", subject="defense",
                title=f"{name}: robustness would be overstated by a non-adaptive evaluation",
                evidence=f"at {where} the non-adaptive evaluation overstates robustness by {over['points']:.0f} "
                         f"points against the adaptive attack ({entry['attacks']['adaptive']})",
                section=self.name, evidence_path=f"{path}.max_overstatement",
                why=("Attacks crafted without knowledge of the defense miss what an adaptive attacker finds "
                     "(Athalye et al. 2018): " + ("the defense helps, but less than a naive evaluation says."
                                                  if gain else
                                                  "a naive evaluation would credit it with robustness it does not "
                                                  "have.")),
                action=(f"Quote only the adaptive figures for {name}; the non-adaptive ones are shown for contrast."
                        if gain else
                        f"Do not deploy {name} as a robustness measure. If the model must resist attacks, "
                        "adversarially train it (see the robustness findings).")))
        certified = entry.get("kind") == "certification"
        findings.append(Finding(
            severity="low", subject="defense", title=f"Defense verdict: {name}", evidence=entry["verdict"],
            section=self.name, evidence_path=f"{path}.verdict",
            why=("A certificate holds against every attack within its radius, at the price of noise at inference and "
                 "many forward passes per answer." if certified else
                 "What the defense buys under an attack that knows it, and what it costs in clean accuracy and "
                 "time."),
            action=(f"Deploy {name} only if its certified accuracy at the radius you need is worth its clean "
                    "accuracy, abstentions and cost per answer; the undefended model's empirical figure is an upper "
                    "bound, the certified one a floor." if certified else
                    f"If you deploy {name}, re-audit the deployed pipeline with --defense {name} and quote the "
                    "adaptive figure." if gain else
                    f"Not worth deploying for robustness: it gains less than {GAIN_POINTS:g} points under the "
                    "adaptive attack.")))
        return findings

    @staticmethod
    def _row(name: str, entry: dict[str, Any], eps: float | None) -> dict[str, Any]:
        """One line of the side-by-side table (headline eps for images)."""
        row: dict[str, Any] = {"defense": name, "kind": entry.get("kind"), "status": entry.get("status")}
        if entry.get("status") != "ok":
            row["reason"] = entry.get("reason")
            return row
        curve = entry.get("curve") or []
        row.update(
            clean_accuracy=(entry.get("clean_accuracy") or {}).get("value"),
            undefended_clean_accuracy=(entry.get("undefended_clean_accuracy") or {}).get("value"),
            eps=eps,
            adaptive=_at(curve, eps, "adaptive") if eps is not None and curve else None,
            non_adaptive=_at(curve, eps, "non_adaptive") if eps is not None and curve else None,
            undefended=_at(curve, eps, "undefended") if eps is not None and curve else None,
            certified_accuracy=None,
            seconds_per_sample=entry.get("seconds_per_sample"),
            training_cost_ratio=entry.get("training_cost_ratio"),
            verdict=entry.get("verdict"),
        )
        if entry.get("kind") == "certification":
            r_mid = entry["headline_radius"]
            row["radius"] = r_mid
            row["certified_accuracy"] = next(
                c["certified_accuracy"] for c in entry["certified"] if c["radius"] == r_mid)
        return row
