"""The zoo's adversarially trained models (``cnn-digits-at``, ``fraud-mlp-at``): their training
callables and evaluations, used by :data:`auditkit.zoo.recipes.RECIPES`.

The algorithms (PGD-AT, TRADES, the perturbation sets) live in
:mod:`auditkit.defenses.adversarial_training`; this module only applies them to zoo recipes, so
that the defenses never import the zoo.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from auditkit.defenses.adversarial_training import (
    Method,
    PerturbationSet,
    PGDTrainingTask,
    TradesTask,
    tabular_perturbation,
)
from auditkit.training import TrainConfig, TrainResult, fit

EVAL_SAMPLES = 200  # test samples of the robustness evaluation written into metrics.json
EVAL_SEED = 0
# recipe name -> (wall seconds, CPU seconds of this process, epochs) of its last fit
_FIT_SECONDS: dict[str, tuple[float, float, int]] = {}


def at_recipe_trainer(
    method: Method,
    eps: float,
    steps: int,
    tabular: bool = False,
    class_weights: list[float] | None = None,
    eps_warmup_epochs: int = 0,
) -> Any:
    """A zoo ``train`` callable ``(recipe, model, data, config) -> TrainResult`` running
    adversarial training with these settings (``tabular``: :func:`tabular_perturbation` of the
    recipe's card; else an Linf ball in the card's bounds)."""

    def train(recipe: Any, model: nn.Module, data: Any, config: TrainConfig) -> TrainResult:
        card = recipe.make_card(data)
        if hasattr(model, "fit_scaler"):
            model.fit_scaler(torch.from_numpy(data.x_train))
        if tabular:
            pset = tabular_perturbation(card, eps)
        else:
            pset = PerturbationSet(eps, "linf", bounds=tuple(card.bounds or (0.0, 1.0)))  # type: ignore[arg-type]
        kwargs: dict[str, Any] = dict(steps=steps, lr=recipe.lr, weight_decay=recipe.weight_decay,
                                      eps_warmup_epochs=eps_warmup_epochs,
                                      class_weights=None if class_weights is None else torch.tensor(class_weights))
        task = PGDTrainingTask(model, pset, **kwargs) if method == "pgd" else TradesTask(model, pset, **kwargs)
        cpu = time.process_time()
        result = fit(task, TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)), config)
        _FIT_SECONDS[recipe.name] = (result.seconds, time.process_time() - cpu, config.epochs)
        return result

    return train


def _training_cost(name: str, base_name: str, device: torch.device) -> dict[str, Any]:
    """Seconds of the adversarial fit against the undefended recipe's fit, timed now on the same
    machine (its recipe's settings, the same number of epochs), so that the ratio compares like
    with like. Both wall-clock and CPU seconds of this process are given: on a shared machine
    the CPU-time ratio is the steadier one (other processes' load inflates wall time)."""
    from auditkit.zoo.models import build_architecture
    from auditkit.zoo.recipes import get_recipe

    base = get_recipe(base_name)
    data = base.load_data()
    card = base.make_card(data)
    torch.manual_seed(EVAL_SEED)
    ref = build_architecture(card.architecture or base.architecture, **card.arch_kwargs)
    cfg = TrainConfig(**{**base.config.__dict__})
    cfg.progress, cfg.checkpoint_path, cfg.resume, cfg.seed = False, None, False, EVAL_SEED
    cfg.device = str(device)
    wall, cpu, epochs = _FIT_SECONDS.get(name, (None, None, None))
    cfg.epochs = epochs or cfg.epochs
    start, start_cpu = time.perf_counter(), time.process_time()
    base.train(base, ref, data, cfg)
    base_wall, base_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {
        "seconds": None if wall is None else round(wall, 2),
        "undefended_model": base_name,
        "undefended_seconds": round(base_wall, 2),
        "ratio": None if wall is None else round(wall / base_wall, 2),
        "cpu_seconds": None if cpu is None else round(cpu, 2),
        "undefended_cpu_seconds": round(base_cpu, 2),
        "cpu_ratio": None if cpu is None else round(cpu / base_cpu, 2),
        "epochs": cfg.epochs,
        "note": f"fit of this recipe vs {base_name}'s recipe retrained right after it for as many epochs on "
                "the same machine, device and thread count; wall-clock and process CPU seconds",
    }


def _eval_index(n_test: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(EVAL_SEED)
    return np.sort(rng.choice(n_test, size=min(n, n_test), replace=False))


def evaluate_digits_at(model: nn.Module, data: Any, device: torch.device) -> dict[str, Any]:
    """Metrics of ``cnn-digits-at``: clean accuracy, training cost against ``cnn-digits``,
    robust accuracy over the card's Linf epsilons under the ``standard`` ensemble for this model
    and for the committed ``cnn-digits`` (same 200 seeded test samples), and the
    gradient-masking checks on this model."""
    from auditkit.attacks.ensemble import run_ensemble
    from auditkit.attacks.masking import masking_checks
    from auditkit.stats import mcnemar_exact
    from auditkit.zoo import get_model
    from auditkit.zoo.recipes import DIGITS_EPSILONS, evaluate_classifier

    metrics = evaluate_classifier(model, data, device)
    metrics["training_cost"] = _training_cost("cnn-digits-at", "cnn-digits", device)
    idx = _eval_index(len(data.y_test), EVAL_SAMPLES)
    x = torch.from_numpy(data.x_test[idx])
    y = torch.from_numpy(data.y_test[idx]).long()
    eps = DIGITS_EPSILONS["linf"]
    base, _ = get_model("cnn-digits")
    ens = run_ensemble(model, x, y, "linf", eps, budget="standard", bounds=(0.0, 1.0), seed=EVAL_SEED)
    ens_base = run_ensemble(base, x, y, "linf", eps, budget="standard", bounds=(0.0, 1.0), seed=EVAL_SEED)
    curve, curve_base = ens.curve(), ens_base.curve()
    metrics["robust_accuracy_linf"] = {f"{p['eps']:g}": round(p["robust_accuracy"], 4) for p in curve}
    metrics["robust_accuracy_linf_ci"] = {f"{p['eps']:g}": [round(p["ci_low"], 4), round(p["ci_high"], 4)]
                                          for p in curve}
    metrics["undefended_robust_accuracy_linf"] = {f"{p['eps']:g}": round(p["robust_accuracy"], 4)
                                                  for p in curve_base}
    metrics["undefended_robust_accuracy_linf_ci"] = {
        f"{p['eps']:g}": [round(p["ci_low"], 4), round(p["ci_high"], 4)] for p in curve_base}
    # Paired comparison on the same samples (exact McNemar): overlapping marginal CIs can hide a
    # clear paired difference.
    metrics["paired_mcnemar_p_linf"] = {
        f"{e:g}": round(mcnemar_exact(ens_base.robust_at(e), ens.robust_at(e))["p_value"], 6) for e in eps}
    metrics["robustness_eval"] = {
        "suite": "standard", "attacks": ens.attacks, "n": len(idx), "seed": EVAL_SEED,
        "samples": f"{len(idx)} test samples drawn with numpy default_rng({EVAL_SEED}), the same for both models",
        "undefended_model": "cnn-digits (committed artifact)",
    }
    masking = masking_checks(model, x, y, {"linf": ens}, (0.0, 1.0), seed=EVAL_SEED, budget="standard")
    metrics["masking_checks"] = {
        "suspected": masking["suspected"],
        "n_fail": masking["n_fail"],
        "n_warn": masking["n_warn"],
        "status": {c["name"]: c["status"] for c in masking["checks"]},
        "evidence": {c["name"]: c["evidence"] for c in masking["checks"] if c["status"] != "pass"},
    }
    return metrics


def evaluate_fraud_at(model: nn.Module, data: Any, device: torch.device) -> dict[str, Any]:
    """Metrics of ``fraud-mlp-at``: PR-AUC/ROC-AUC (and ``fraud-mlp``'s beside them), training
    cost against ``fraud-mlp``, and the evasion rate against budget under the constrained
    tabular attack, for this model and ``fraud-mlp``, on every fraud of the test split (each
    model's attacked set is the frauds it catches)."""
    from auditkit.attacks.tabular import tabular_attack
    from auditkit.zoo import get_model
    from auditkit.zoo.recipes import evaluate_fraud

    metrics = evaluate_fraud(model, data, device)
    metrics["training_cost"] = _training_cost("fraud-mlp-at", "fraud-mlp", device)
    base, card = get_model("fraud-mlp")
    base_metrics = evaluate_fraud(base, data, device)
    metrics["undefended"] = {k: base_metrics[k] for k in ("test_accuracy", "pr_auc", "roc_auc")}
    pos = card.positive_index
    idx = np.flatnonzero(data.y_test == pos)
    x = torch.from_numpy(data.x_test[idx])
    y = torch.from_numpy(data.y_test[idx]).long()
    for key, m in (("", model), ("undefended_", base)):
        result = tabular_attack(m, x, y, card, seed=EVAL_SEED)
        metrics[f"{key}evasion_rate"] = {f"{c['budget']:g}": None if c["evasion"]["n"] == 0 else
                                         round(c["evasion"]["value"], 4) for c in result["curve"]}
        metrics[f"{key}evasion_rate_ci"] = {f"{c['budget']:g}": [round(c["evasion"]["ci_low"], 4),
                                                                 round(c["evasion"]["ci_high"], 4)]
                                            for c in result["curve"]}
        metrics[f"{key}n_frauds_caught"] = result["n_attacked"]
        metrics[f"{key}median_evasion_cost"] = result["median_cost"]
    metrics["evasion_eval"] = {
        "attack": "auditkit.attacks.tabular.tabular_attack (card's feature constraints, cost in feature units)",
        "n_frauds": int(len(idx)), "seed": EVAL_SEED,
        "note": "evasion rate among the test frauds each model catches (argmax); n differs per model",
    }
    return metrics
