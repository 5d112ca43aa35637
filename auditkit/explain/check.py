"""The scan's two explanation checks: ``attributions`` (what the model looks at) and
``explanation-quality`` (whether those explanations deserve trust), DESIGN.md §7."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditkit.checks import Check, ScanContext, register_check
from auditkit.distributed import map_units, unit_size
from auditkit.explain.methods import METHODS, attribute, available_methods, gallery, global_importance
from auditkit.explain.quality import (
    deletion_insertion,
    ig_completeness,
    infidelity_sensitivity,
    randomisation_test,
    tabular_ground_truth,
    token_ground_truth,
)
from auditkit.results import Finding
from auditkit.sections.explanation_quality import (
    BEATS_RANDOM_RULE,
    HIT_AT_1_MIN,
    PRECISION_AT_K_MIN,
    RHO_ABS_LABEL,
    RHO_SIGNED_LABEL,
    DeletionInsertion,
)

CLASSIFIERS = ("image-classification", "text-classification", "tabular-classification")
EXPLAIN_SAMPLES = {"quick": 32, "standard": 64, "thorough": 128}
RANDOMISATION_SAMPLES = {"quick": 8, "standard": 16, "thorough": 32}
GALLERY_ITEMS = 8


def explain_inputs(ctx: ScanContext) -> dict[str, Any]:
    """The samples the two explanation checks and the baselines' importance agreement explain,
    their targets and the tabular baseline (computed once per scan, in ``ctx.cache``).

    Targets are the predicted classes, except for tabular models with a positive class, where
    the positive class's logit is explained on a sample enriched with positives (half of it,
    when there are enough): on 1.5% fraud, explaining random rows would say little about fraud.
    """
    if "explain_inputs" in ctx.cache:
        return ctx.cache["explain_inputs"]
    card, data = ctx.model.card, ctx.data
    n = min(EXPLAIN_SAMPLES[ctx.config.budget], ctx.config.samples, len(data.y_test))
    rng = ctx.rng("explain")
    pos = card.positive_index
    if card.task == "tabular-classification" and pos is not None:
        positives = np.flatnonzero(data.y_test == pos)
        negatives = np.flatnonzero(data.y_test != pos)
        k = min(len(positives), n // 2)
        idx = np.sort(np.concatenate([rng.choice(positives, k, replace=False),
                                      rng.choice(negatives, n - k, replace=False)]))
    else:
        idx = ctx.eval_index[:n]
    x = ctx.model.to_input(data.x_test[idx])
    pred = torch.from_numpy(ctx.test_logits()[idx].argmax(1)).to(ctx.model.device)
    if card.task == "tabular-classification" and pos is not None:
        target = torch.full_like(pred, pos)
    else:
        target = pred
    baseline = None
    if card.task == "tabular-classification":
        baseline = _tabular_baseline(ctx).to(ctx.model.device).expand_as(x).contiguous()
    inputs = {"idx": idx, "x": x, "target": target, "pred": pred, "baseline": baseline}
    ctx.cache["explain_inputs"] = inputs
    return inputs


def explain_attributions(ctx: ScanContext) -> tuple[dict[str, torch.Tensor], dict[str, str | None]]:
    """Attributions ``[n, *input_shape]`` (CPU) of every method that can run, on the samples of
    :func:`explain_inputs`, and each registered method's skip reason (``None`` when it ran).

    Computed once per scan (``ctx.cache``): ``attributions`` computes them, and
    ``explanation-quality`` run alone (``--only explanation-quality``) computes the very same
    ones, so its figures equal a full scan's. Each attribution is seeded and draws from a private
    RNG (:func:`auditkit.explain.methods.attribute`), so the order of checks does not matter.
    They are computed in units of samples (:func:`auditkit.distributed.map_units`, each seeded
    from the scan seed and its first row), sharded over the ranks of a torchrun scan.
    """
    if "attributions" in ctx.cache and "attribution_status" in ctx.cache:
        return ctx.cache["attributions"], ctx.cache["attribution_status"]
    card, module = ctx.model.card, ctx.model.module
    inputs = explain_inputs(ctx)
    status = available_methods(card, module, ctx.model.eager)
    names = [name for name in status if not status[name]]
    x, target, baseline = inputs["x"], inputs["target"], inputs["baseline"]
    n = len(x)

    def one_unit(k: int, rows: slice) -> dict[str, torch.Tensor]:
        # Seeded by the unit's first row, as attribute() seeds its own chunks by offset.
        return {name: attribute(name, module, x[rows], target[rows], card,
                                baseline=None if baseline is None else baseline[rows],
                                seed=ctx.config.seed + rows.start).detach().cpu()
                for name in names}

    # Unit by unit (sharded over ranks under torchrun): the same attributions on one process and on N.
    units = map_units(one_unit, n, unit_size(n, ctx.config.batch_size), seed=ctx.config.seed) if n else []
    attributions: dict[str, torch.Tensor] = {name: torch.cat([u[name] for u in units]) for name in names} \
        if units else {}
    ctx.cache["attributions"], ctx.cache["attribution_status"] = attributions, status
    return attributions, status


def _tabular_baseline(ctx: ScanContext) -> torch.Tensor:
    """Training mean per feature; the most frequent code for categoricals. Shape ``[1, F]``."""
    x = ctx.data.x_train
    base = x.mean(0)
    for i, f in enumerate(ctx.model.card.features or []):
        if f.kind == "categorical":
            base[i] = np.bincount(x[:, i].astype(int)).argmax()
    return torch.from_numpy(base.astype(np.float32))[None]


def _quality_methods(test: str, names: list[str]) -> list[str]:
    """Of ``names``, the methods whose spec lists quality test ``test`` (``MethodSpec.quality``),
    in registry order."""
    return [m for m in METHODS if m in names and test in METHODS[m].quality]


@register_check
class Attributions(Check):
    name = "attributions"
    title = "Attributions"
    tasks = CLASSIFIERS

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        card = ctx.model.card
        inputs = explain_inputs(ctx)
        x = inputs["x"]
        attributions, status = explain_attributions(ctx)
        methods_out: dict[str, Any] = {
            name: {"status": "skipped", "reason": reason} if reason else
            {"status": "ok", "title": METHODS[name].title, "mean_abs": float(attributions[name].abs().mean())}
            for name, reason in status.items()}
        y = torch.from_numpy(ctx.data.y_test[inputs["idx"]])
        shown = list(range(min(GALLERY_ITEMS, len(y))))
        out: dict[str, Any] = {
            "n_samples": len(inputs["idx"]),
            "sample_index": inputs["idx"].tolist(),
            "target": "positive class" if card.task == "tabular-classification" and card.positive_index is not None
            else "predicted class",
            "methods": methods_out,
            "gallery": gallery(attributions, x.cpu(), y, inputs["pred"].cpu(), shown, card, GALLERY_ITEMS),
        }
        if card.task == "tabular-classification" and card.features:
            names = [f.name for f in card.features]
            out["global_importance"] = {m: global_importance(a, names) for m, a in attributions.items()}
        if card.task == "text-classification" and card.text:
            out["token_importance"] = _token_importance(attributions, x.cpu(), card.text.vocab, card.text.pad_id)
        findings = []
        skipped = [m for m, r in status.items() if r and card.task in METHODS[m].tasks]
        if skipped and not ctx.model.eager:
            findings.append(Finding(
                severity="low", title="Some attribution methods could not run",
                evidence=f"{', '.join(skipped)} need layer hooks; {ctx.model.format} has none",
                section=self.name, subject="evaluation", evidence_path="sections.attributions.data.methods",
                why="Layer methods (Grad-CAM, layer IG on embeddings) show what inner layers respond to; without them "
                    "the explanations rest on input-gradient methods alone.",
                action="Scan the eager model (zoo model.pt, or a state_dict with --arch) instead of a "
                       f"{ctx.model.format} file to get every method."))
        return out, findings


def _token_importance(attributions: dict[str, torch.Tensor], x: torch.Tensor, vocab: list[str],
                      pad_id: int, top: int = 15) -> dict[str, list[dict[str, Any]]]:
    """Mean |attribution| per vocabulary token over the explained sentences, top ``top`` per method."""
    out = {}
    ids = x.numpy().ravel()
    for name, attr in attributions.items():
        a = attr.abs().numpy().ravel()
        keep = ids != pad_id
        sums = np.bincount(ids[keep], weights=a[keep], minlength=len(vocab))
        counts = np.bincount(ids[keep], minlength=len(vocab))
        mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        order = np.argsort(-mean)[:top]
        out[name] = [{"token": vocab[i], "mean_abs": float(mean[i]), "count": int(counts[i])}
                     for i in order if counts[i]]
    return out


@register_check
class ExplanationQuality(Check):
    name = "explanation-quality"
    title = "Explanation quality"
    tasks = CLASSIFIERS

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        card, module, seed = ctx.model.card, ctx.model.module, ctx.config.seed
        inputs = explain_inputs(ctx)
        x, target, baseline = inputs["x"], inputs["target"], inputs["baseline"]
        # The attributions check's, or the same ones computed now (--only explanation-quality).
        attributions, status = explain_attributions(ctx)
        usable = [m for m, r in status.items() if r is None]
        findings: list[Finding] = []
        out: dict[str, Any] = {}

        if "ig" in usable:
            comp = ig_completeness(module, x, target, card, baseline=baseline)
            out["ig_completeness"] = comp
            if not comp["met"]:
                findings.append(Finding(
                    severity="medium", title="Integrated gradients do not add up",
                    evidence=f"p95 relative completeness error {comp['p95']:.3g} > {comp['tol']} "
                             f"even at {comp['n_steps']} steps", section=self.name, subject="evaluation",
                    evidence_path="sections.explanation-quality.data.ig_completeness",
                    why="IG's attributions should sum to the change in the model's output from the baseline; when "
                        "they do not, the integral is badly approximated (or the model is not smooth along the path) "
                        "and the IG maps misstate how much each feature contributes.",
                    action="Do not read IG maps quantitatively for this model; prefer occlusion or SmoothGrad, or "
                           "check for non-differentiable steps (ReLU kinks at scale, clipping) in the forward."))

        n_rand = min(RANDOMISATION_SAMPLES[ctx.config.budget], len(x))
        rand_methods = _quality_methods("randomisation", usable)
        if rand_methods and ctx.model.eager:
            rt = randomisation_test(module, x[:n_rand], target[:n_rand], card, rand_methods, seed=seed)
            out["randomisation"] = rt
            for m, r in rt["methods"].items():
                if not r["verdict"].startswith("passes"):
                    findings.append(Finding(
                        severity="medium", title=f"{METHODS[m].title} is insensitive to the model's weights",
                        evidence=f"after randomising every layer: {RHO_ABS_LABEL} {r['final_spearman_abs']:.2f}, "
                                 f"{RHO_SIGNED_LABEL} {r['final_spearman_raw']:.2f} ({r['verdict']})",
                        section=self.name, subject="evaluation",
                        evidence_path=f"sections.explanation-quality.data.randomisation.methods.{m}",
                        why=f"{METHODS[m].title} maps look much the same for a model with random weights "
                            "(Adebayo et al. 2018): they reflect the input (edges, strokes) more than what this "
                            "model learned, so they cannot justify or debug its decisions.",
                        action=f"Do not use {METHODS[m].title} to explain this model; use a method that passes the "
                               "randomisation test in this section (see the table)."))

        curves = {}
        for m in ctx.track(_quality_methods("deletion-insertion", list(attributions)),
                           desc="deletion/insertion"):
            curves[m] = deletion_insertion(module, x, target, attributions[m].to(x.device), card, seed=seed,
                                           baseline=baseline)
        out["deletion_insertion"] = curves
        for m, c in curves.items():
            typed = DeletionInsertion.model_validate(c)
            if typed.no_better_than_random:  # the rule every report states (BEATS_RANDOM_RULE)
                findings.append(Finding(
                    severity="medium", title=f"{METHODS[m].title} ranks features no better than random",
                    subject="evaluation", evidence_path=f"sections.explanation-quality.data.deletion_insertion.{m}",
                    why=f"Removing the features {METHODS[m].title} ranks highest changes the model's output no more "
                        "than removing random ones: its ranking does not reflect what the model relies on.",
                    action=f"Do not use {METHODS[m].title} rankings for this model; use a method whose deletion and "
                           "insertion curves beat random in this section.",
                    evidence=f"its ranking beats a random one on {typed.deletion_win_rate:.0%} of samples for "
                             f"deletion and {typed.insertion_win_rate:.0%} for insertion (a method "
                             f"{BEATS_RANDOM_RULE}); deletion AUC {c['deletion_auc']:.3f} vs random "
                             f"{c['deletion_auc_random']:.3f}; insertion AUC {c['insertion_auc']:.3f} vs random "
                             f"{c['insertion_auc_random']:.3f}",
                    section=self.name))

        if card.task != "text-classification":
            n_inf = min(32, len(x))
            out["infidelity_sensitivity"] = {
                m: infidelity_sensitivity(module, x[:n_inf], target[:n_inf], m, card, seed=seed)
                for m in _quality_methods("infidelity", usable)
            }

        gt = self._ground_truth(ctx, inputs, attributions)
        if gt:
            out["ground_truth"] = gt
            findings.extend(self._ground_truth_findings(gt))
        return out, findings

    def _ground_truth(self, ctx: ScanContext, inputs: dict[str, Any],
                      attributions: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Agreement with the data's known causes (synthetic data only)."""
        gt = ctx.data.ground_truth
        card = ctx.model.card
        result: dict[str, Any] = {}
        if card.task == "tabular-classification" and "causal_features" in gt and card.features:
            names = [f.name for f in card.features]
            for m, attr in attributions.items():
                importance = dict(zip(names, attr.abs().mean(0).tolist()))
                result[m] = tabular_ground_truth(importance, gt["causal_features"], gt.get("non_causal_features", []))
        if card.task == "text-classification" and "token_relevance_test" in gt and card.text:
            relevance = np.asarray(gt["token_relevance_test"])[inputs["idx"]]
            tokens = inputs["x"].cpu().numpy()
            pad = tokens == card.text.pad_id
            for m, attr in attributions.items():
                result[m] = token_ground_truth(attr.numpy(), relevance, pad, seed=ctx.config.seed)
        return result

    def _ground_truth_findings(self, gt: dict[str, Any]) -> list[Finding]:
        """Methods that miss the data's known causes. When some method finds them, the misses are
        the methods' (subject ``evaluation``); when every method misses, the model itself relies
        on something else than the known causes (subject ``model``)."""
        findings = []
        path = "sections.explanation-quality.data.ground_truth"
        missed_k = {m for m, r in gt.items() if "precision_at_k" in r and r["precision_at_k"] < PRECISION_AT_K_MIN}
        missed_1 = {m for m, r in gt.items() if "hit_at_1" in r and r["hit_at_1"] < HIT_AT_1_MIN}
        all_k = missed_k == {m for m, r in gt.items() if "precision_at_k" in r}
        all_1 = missed_1 == {m for m, r in gt.items() if "hit_at_1" in r}
        for m, r in gt.items():
            if m in missed_k:
                findings.append(Finding(
                    severity="medium", title=f"{METHODS[m].title} misses known causal features",
                    evidence=f"precision@{r.get('k')} {r['precision_at_k']:.2f}", section=self.name,
                    subject="model" if all_k else "evaluation", evidence_path=f"{path}.{m}",
                    why=("No attribution method puts the data's known causes on top: the model likely relies on "
                         "other (possibly spurious) features." if all_k else
                         f"On data whose causes are known, {METHODS[m].title} ranks other features above them while "
                         "other methods find them: its explanations of this model are unreliable."),
                    action=("Check the global importance against the known causes, remove or decorrelate the "
                            "spurious features in the training data and retrain." if all_k else
                            f"Explain this model with the methods that find the causes, not {METHODS[m].title}.")))
            if m in missed_1:
                findings.append(Finding(
                    severity="medium", title=f"{METHODS[m].title} rarely points at the deciding token",
                    evidence=f"hit@1 {r['hit_at_1']:.2f} (random {r.get('random', {}).get('hit_at_1', float('nan')):.2f})",
                    section=self.name, subject="model" if all_1 else "evaluation", evidence_path=f"{path}.{m}",
                    why=("No attribution method points at the token that decides the label: the model likely "
                         "relies on other words." if all_1 else
                         f"{METHODS[m].title} rarely ranks the deciding token first while other methods do: its "
                         "explanations of this model are unreliable."),
                    action=("Inspect which tokens drive the predictions (token importance) and retrain on data "
                            "where they do not predict the label." if all_1 else
                            f"Explain this model with the methods that find the deciding token, not "
                            f"{METHODS[m].title}.")))
        return findings
