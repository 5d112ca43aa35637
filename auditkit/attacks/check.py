"""The scan's ``robustness`` check: the threat model that fits the task, attacked in earnest.

- images: the worst-case ensemble per norm (Linf, L2) over the card's epsilons, with per-sample
  records and the whole curve, then the gradient-masking checklist. The forward pass is probed
  first (``masking.forward_determinism``); a randomised model is attacked under the EOT protocol
  (AutoAttack's rand version, ``ensemble.EOT_BUDGETS``) and reported by a finding. An attack that
  raises is recorded under that attack and marks the section incomplete (the curve points it
  lacks say so): it never ends the scan nor silently raises robust accuracy;
- tabular: the constrained threat model of the card's feature schema (evade the positive class);
- text: token substitutions under a budget of k (plus an embedding-space diagnostic);
- GAN: attacks on the discriminator (real judged fake and back).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditkit.attacks.common import EOT
from auditkit.attacks.ensemble import EnsembleResult
from auditkit.checks import Check, ScanContext, register_check
from auditkit.results import Finding

NORMS = ("linf", "l2")


def _middle(values: list[float]) -> float:
    positive = sorted(v for v in values if v > 0)
    return positive[len(positive) // 2] if positive else 0.0


@register_check
class Robustness(Check):
    name = "robustness"
    title = "Adversarial robustness"
    tasks = ("image-classification", "tabular-classification", "text-classification", "gan")

    def skip_reason(self, ctx: ScanContext) -> str | None:
        reason = super().skip_reason(ctx)
        if reason:
            return reason
        card = ctx.model.card
        if card.task == "image-classification" and card.bounds is None:
            return "the card gives no input bounds; attacks need the valid input domain"
        if card.task == "gan" and not hasattr(ctx.model.module, "discriminator"):
            return "the GAN module exposes no discriminator"
        return None

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        task = ctx.model.card.task
        if task == "image-classification":
            return self._images(ctx)
        if task == "tabular-classification":
            return self._tabular(ctx)
        if task == "text-classification":
            return self._text(ctx)
        return self._discriminator(ctx)

    # ------------------------------------------------------------------ images
    def _epsilons(self, ctx: ScanContext) -> dict[str, list[float]]:
        source = ctx.config.epsilons or ctx.model.card.epsilons
        return {n: sorted({0.0, *map(float, source[n])}) for n in NORMS if source.get(n)}

    def _images(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        from auditkit.attacks.ensemble import eot_protocol, run_ensemble
        from auditkit.attacks.masking import forward_determinism, masking_checks

        card, module = ctx.model.card, ctx.model.module
        bounds = card.bounds or (0.0, 1.0)
        x = ctx.model.to_input(ctx.x_eval)
        y = torch.as_tensor(ctx.y_eval, device=ctx.model.device)
        epsilons = self._epsilons(ctx)
        budget = ctx.config.budget
        out: dict[str, Any] = {"budget": budget, "sample_index": ctx.eval_index.tolist(),
                               "threat_models": {}, "skipped": {}}
        findings: list[Finding] = []
        # Before attacking: a randomised forward pass needs the EOT protocol, or every attack's
        # gradients and decisions are single noisy draws (and foolbox's FMN asserts on them).
        determinism = forward_determinism(module, x, ctx.config.batch_size)
        eot = None if determinism["deterministic"] else eot_protocol(budget)
        out["determinism"] = determinism
        out["eot"] = None
        if eot is not None:
            out["eot"] = {**eot.as_dict(), "attacks": {}, "protocol": "AutoAttack rand version (Croce & Hein 2020): "
                          "APGD-CE and APGD-DLR with Expectation over Transformation, one restart"}
            findings.append(self._randomised_finding(determinism, eot))
        ensembles = {}
        for norm in NORMS:
            if norm not in epsilons:
                out["skipped"][norm] = "no epsilons for this norm in the card, policy or flags"
                continue
            result = run_ensemble(module, x, y, norm, epsilons[norm], budget=budget, bounds=bounds,
                                  seed=ctx.config.seed, batch_size=ctx.config.batch_size, track=ctx.track, eot=eot)
            ensembles[norm] = result
            out["threat_models"][norm] = result.to_dict()
            if eot is not None:
                out["eot"]["attacks"][norm] = list(result.attacks)
        out["attack_errors"] = [{"norm": norm, **e} for norm, r in ensembles.items() for e in r.errors]
        for norm, result in ensembles.items():
            findings += self._attack_error_findings(ctx, norm, result)
        if ensembles:
            masking = masking_checks(module, x, y, ensembles, bounds, seed=ctx.config.seed,
                                     budget=budget, batch_size=ctx.config.batch_size,
                                     loaded_in_train_mode=ctx.model.loaded_in_train_mode, track=ctx.track,
                                     determinism=determinism)
            out["masking"] = masking
            findings += self._masking_findings(masking)
            for err in masking.get("errors", []):
                where = f" ({err['norm']})" if err.get("norm") else ""
                ctx.mark_incomplete(f"gradient-masking check {err['check']}{where} could not run: {err['error']}")
        for norm, result in ensembles.items():
            eps = _middle(result.epsilons)
            point = result.curve([eps])[0]
            clean = result.curve([0.0])[0]
            severity = "high" if point["robust_accuracy"] < 0.5 * clean["robust_accuracy"] else "medium"
            bound = "" if point["complete"] else "at most "
            protocol = (f" under EOT ({eot.samples} passes per gradient, majority of {eot.votes} forwards per "
                        "decision)" if eot is not None else "")
            missing = (f"; without {', '.join(point['missing_attacks'])}, which raised: an upper bound"
                       if not point["complete"] else "")
            findings.append(Finding(
                severity=severity,
                title=f"Robust accuracy {bound}{point['robust_accuracy']:.1%} at {norm} eps={eps:g}",
                evidence=f"worst case over {len(result.attacks)} attacks ({', '.join(result.attacks)}){protocol} on "
                         f"{point['n']} samples, 95% CI [{point['ci_low']:.3f}, {point['ci_high']:.3f}]; "
                         f"clean {clean['robust_accuracy']:.1%}{missing}",
                section=self.name))
        return out, findings

    def _randomised_finding(self, determinism: dict[str, Any], eot: EOT) -> Finding:
        diff = determinism["max_abs_logit_diff"]
        return Finding(
            severity="medium",
            title="The model's forward pass is randomised: robustness was measured with EOT",
            evidence=f"{determinism['forwards']} eval-mode forward passes on the same {determinism['n']} inputs differ "
                     f"(max logit difference {'n/a (output shapes differ)' if diff is None else f'{diff:.3g}'}, "
                     f"{determinism['n_prediction_changed']} prediction(s) changed); the attacks ran AutoAttack's "
                     f"rand protocol: APGD-CE and APGD-DLR averaging {eot.samples} passes per gradient, each sample "
                     f"judged by a majority of {eot.votes} forwards",
            section=self.name, subject="model", evidence_path="sections.robustness.data.determinism",
            why="Randomness at inference (input noise, random transforms, dropout left on) makes single-pass "
                "gradients noisy, so ordinary attacks underestimate how easily the model is fooled; the same "
                "input may also get a different answer on each call.",
            action="Read the robust accuracy as that of the model's majority answer under EOT. If the "
                   "randomness is not meant as a defence, remove it at inference (model.eval(), no test-time "
                   "noise); if it is, also evaluate it with a certified method such as randomized smoothing.")

    def _attack_error_findings(self, ctx: ScanContext, norm: str, result: EnsembleResult) -> list[Finding]:
        """Each attack that raised: a finding, and the section marked incomplete where the
        curve lacks it (a missing attack can only raise robust accuracy)."""
        findings = []
        incomplete_eps = [p["eps"] for p in result.curve() if not p["complete"]]
        for name in result.attacks:
            errors = result.per_attack[name]["errors"]
            if not errors:
                continue
            n_samples = len({i for e in errors for i in e["samples"]})
            eps_list = sorted({e["eps"] for e in errors if e["eps"] is not None})
            where = (f"at eps {', '.join(f'{e:g}' for e in eps_list)}" if eps_list else "on its whole run")
            lacking = [e for e in incomplete_eps if name in result.missing_attacks(e)]
            ctx.mark_incomplete(
                f"{norm} attack {name} raised on {n_samples} sample(s) {where} ({errors[0]['error']}); "
                + (f"robust accuracy at eps {', '.join(f'{e:g}' for e in lacking)} is an upper bound"
                   if lacking else "the samples it missed were broken by other attacks"))
            findings.append(Finding(
                severity="high" if lacking else "low",
                title=f"Attack {name} ({norm}) failed on {n_samples} sample(s): "
                      + ("robust accuracy may be overstated" if lacking else "no figure affected"),
                evidence=f"{errors[0]['error']} ({len(errors)} failed batch(es) {where})",
                section=self.name, subject="evaluation",
                evidence_path=f"sections.robustness.data.threat_models.{norm}.per_attack.{name}.errors",
                why="An attack that did not run cannot find adversarial points: where it was missing, the worst "
                    "case is over fewer attacks and robust accuracy can only be too high.",
                action="Re-run with --debug to see the error; if the model is valid, report it. Curve points "
                       "with complete=false list the attacks they lack."))
        return findings

    def _masking_findings(self, masking: dict[str, Any]) -> list[Finding]:
        # Under EOT, deterministic-forward only warns: the randomised-model finding reports it.
        failed = [c for c in masking["checks"] if c["status"] == "fail"]
        if not failed:
            return []
        if masking.get("suspected"):
            return [Finding(
                severity="high", title="Gradient masking suspected: gradient-attack numbers overstate robustness",
                evidence="; ".join(f"{c['name']}: {c['evidence']}" for c in failed), section=self.name)]
        return [Finding(severity="medium", title=f"Robustness evaluation check failed: {c['name']}",
                        evidence=c["evidence"], section=self.name) for c in failed]

    # ------------------------------------------------------------------ tabular
    def _tabular(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        from auditkit.attacks.tabular import tabular_attack

        card, data = ctx.model.card, ctx.data
        pos = card.positive_index
        if pos is None:
            pos = 1 if card.num_classes == 2 else None
        if pos is None:
            return {"skipped": "the tabular threat model needs a positive class in the card"}, []
        # Attack true positives: fraud the model catches, which the fraudster wants to slip through.
        pred = ctx.test_logits().argmax(1)
        caught = np.flatnonzero((data.y_test == pos) & (pred == pos))
        n = min(len(caught), ctx.config.samples)
        idx = np.sort(ctx.rng("tabular-attack").choice(caught, n, replace=False)) if n else caught
        if n == 0:
            return {"skipped": "the model catches no positive test sample; nothing to evade"}, []
        x = ctx.model.to_input(data.x_test[idx])
        y = torch.as_tensor(data.y_test[idx], device=ctx.model.device)
        result = tabular_attack(ctx.model.module, x, y, card, seed=ctx.config.seed)
        result["sample_index"] = idx.tolist()
        findings = []
        curve = result.get("curve") or []
        if curve:
            # The smallest budget at which most caught cases slip through says most to a reader.
            point = next((p for p in curve if p["evasion"]["value"] >= 0.5), curve[-1])
            ev = point["evasion"]
            findings.append(Finding(
                severity="high" if ev["value"] >= 0.5 else "medium",
                title=f"{ev['value']:.0%} of caught {card.positive_class or 'positive'} cases evade "
                      f"with changes costing ≤ {point['budget']:g} feature units",
                evidence=f"{ev['n']} true positives attacked, only attacker-changeable features moved "
                         f"within their ranges and kinds; 95% CI [{ev['ci_low']:.3f}, {ev['ci_high']:.3f}]; "
                         f"median cheapest change {result.get('median_cost')}",
                section=self.name))
        return {"budget": ctx.config.budget, "tabular": result}, findings

    # ------------------------------------------------------------------ text
    def _text(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        from auditkit.attacks.text import (
            embedding_space_attack,
            reviews_label_preserving,
            token_substitution_attack,
        )

        card = ctx.model.card
        tokens = ctx.model.to_input(ctx.x_eval)
        y = torch.as_tensor(ctx.y_eval, device=ctx.model.device)
        ks = [int(k) for k in (ctx.config.epsilons or card.epsilons).get("substitutions", [1, 2, 3]) if k > 0]
        allowed = reviews_label_preserving() if ctx.data.name.startswith("reviews") else None
        out: dict[str, Any] = {"budget": ctx.config.budget, "sample_index": ctx.eval_index.tolist()}
        out["text"] = token_substitution_attack(ctx.model.module, tokens, y, card, max_substitutions=ks,
                                                seed=ctx.config.seed, allowed=allowed)
        if ctx.model.eager and hasattr(ctx.model.module, "forward_embedded"):
            out["embedding_diagnostic"] = embedding_space_attack(ctx.model.module, tokens, y, card,
                                                                 [0.0, 0.25, 0.5, 1.0, 2.0], seed=ctx.config.seed)
        findings = []
        # The label-preserving run is the real attack; without a rule for this vocabulary the
        # unconstrained one is all there is, and it is only an upper bound on vulnerability.
        run = out["text"].get("label_preserving") or out["text"]["unconstrained"]
        if run["curve"]:
            last = run["curve"][-1]
            acc = last["robust_accuracy"]
            findings.append(Finding(
                severity="high" if acc["value"] < 0.5 else "low",
                title=f"Robust accuracy {acc['value']:.1%} under {last['k']} word substitution(s)",
                evidence=("label-preserving substitutions among embedding neighbours" if allowed is not None
                          else "substitutions among embedding neighbours with no label-preserving rule for "
                               "this vocabulary: an upper bound on vulnerability")
                         + f"; 95% CI [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}] on {acc['n']} sentences",
                section=self.name))
        return out, findings

    # ------------------------------------------------------------------ GAN
    def _discriminator(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        from auditkit.attacks.discriminator import discriminator_attack
        from auditkit.zoo.recipes import gan_samples

        gan = ctx.model.module
        n = min(ctx.config.samples, 128)
        real = ctx.model.to_input(ctx.x_eval[:n])
        fake = gan_samples(gan, n, seed=ctx.config.seed, device=ctx.model.device)
        eps = sorted({0.0, *(ctx.config.epsilons or {}).get("linf", [0.02, 0.05, 0.1, 0.2])})
        result = discriminator_attack(gan, real, fake, eps, bounds=ctx.model.card.bounds or (0.0, 1.0),
                                      seed=ctx.config.seed)
        return {"budget": ctx.config.budget, "discriminator": result}, []

