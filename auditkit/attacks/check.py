"""The scan's ``robustness`` check: the threat model that fits the task, attacked in earnest.

- images: the worst-case ensemble per norm (Linf, L2) over the card's epsilons, with per-sample
  records and the whole curve, run in units of samples (``attacks.sharded``: sharded over
  torch.distributed ranks under torchrun, merged records), then the gradient-masking checklist
  (on the merged records, on every rank). The forward pass is probed
  first (``masking.forward_determinism``); a randomised model is attacked under the EOT protocol
  (AutoAttack's rand version, ``ensemble.EOT_BUDGETS``) and reported by a finding. An attack that
  raises is recorded under that attack and marks the section incomplete (the curve points it
  lacks say so): it never ends the scan nor silently raises robust accuracy;
- tabular: the constrained threat model of the card's feature schema (evade the positive class);
- text: token substitutions under a budget of k (plus an embedding-space diagnostic);
- GAN: attacks on the discriminator (real judged fake and back).

Findings (each with why it matters, what to do, and its evidence path in results.json):

* per norm, robust accuracy at the headline eps (the middle positive eps of the grid): high
  below ``COLLAPSE_FRACTION`` of clean accuracy, medium more than ``ROBUST_DROP_MEDIUM`` below
  clean, low otherwise;
* per norm, robustness that collapses (robust accuracy, upper end of its 95% interval, below
  ``COLLAPSE_FRACTION`` of clean) at
  an eps of the audited grid — the card's epsilons, which the card calls meaningful, or
  ``--eps`` — other than the headline eps: high when it collapses below the headline eps (the
  headline understates how early it breaks), medium when it holds at the headline eps but
  collapses at a larger eps of the grid;
* suspected gradient masking: high; a failed masking check without suspicion: medium, about
  the evaluation; an attack that raised: about the evaluation; a randomised forward: medium;
* tabular: the share of caught positives that evade at the smallest budget where at least half
  do (high) or at the largest budget (medium); text: robust accuracy under the largest
  substitution budget (high below 50%, low otherwise).
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
COLLAPSE_FRACTION = 0.5  # robust accuracy below this fraction of clean accuracy: robustness collapsed
ROBUST_DROP_MEDIUM = 0.1  # robust accuracy this far below clean at the headline eps: medium
SECTION = "sections.robustness.data"  # where this check's evidence sits in results.json
NORM_NAMES = {"linf": "L∞", "l2": "L2"}


def _adv_training_action(norm: str, eps: float) -> str:
    return (f"Retrain with adversarial training (PGD-AT or TRADES) at {NORM_NAMES.get(norm, norm)} eps={eps:g} or "
            "the largest budget you must withstand, then re-run this audit; `--defense adversarial-training=PATH` "
            "compares a model with its <name>-at counterpart (the zoo's cnn-digits-at shows the recipe). Do not "
            "rely on input purification (bit squeezing, filters): adaptive attacks go through it.")


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
        from auditkit.attacks.ensemble import eot_protocol
        from auditkit.attacks.masking import forward_determinism, masking_checks
        from auditkit.attacks.sharded import run_ensemble_sharded

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
            # Unit by unit (sharded over ranks under torchrun), merged: the same records on one
            # process and on N; the masking checks below then run on every rank alike.
            result = run_ensemble_sharded(module, x, y, norm, epsilons[norm], budget=budget, bounds=bounds,
                                          seed=ctx.config.seed, batch_size=ctx.config.batch_size,
                                          track=ctx.track, eot=eot)
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
            findings += self._norm_findings(norm, result, eot)
        return out, findings

    def _norm_findings(self, norm: str, result: EnsembleResult, eot: EOT | None) -> list[Finding]:
        """The headline figure of one norm and, where it is not the headline eps, the eps at
        which robustness collapses (rules in the module docstring)."""
        curve = result.curve()
        eps = _middle(result.epsilons)
        i = min(range(len(curve)), key=lambda k: abs(curve[k]["eps"] - eps))
        point, clean = curve[i], result.curve([0.0])[0]
        acc0 = clean["robust_accuracy"]
        path = f"{SECTION}.threat_models.{norm}.curve"
        # A collapse is claimed on the upper end of the interval: a few samples cannot raise it.
        collapsed = [k for k, p in enumerate(curve) if p["eps"] > 0 and p["ci_high"] < COLLAPSE_FRACTION * acc0]
        first = collapsed[0] if collapsed else None
        robust = point["robust_accuracy"]
        severity = ("high" if robust < COLLAPSE_FRACTION * acc0 else
                    "medium" if robust < acc0 - ROBUST_DROP_MEDIUM else "low")
        bound = "" if point["complete"] else "at most "
        protocol = (f" under EOT ({eot.samples} passes per gradient, majority of {eot.votes} forwards per "
                    "decision)" if eot is not None else "")
        missing = (f"; without {', '.join(point['missing_attacks'])}, which raised: an upper bound"
                   if not point["complete"] else "")
        name = NORM_NAMES.get(norm, norm)
        grid = ", ".join(f"{p['eps']:g}" for p in curve if p["eps"] > 0)
        findings = [Finding(
            severity=severity,
            title=f"Robust accuracy {bound}{robust:.1%} at {norm} eps={eps:g}",
            evidence=f"worst case over {len(result.attacks)} attacks ({', '.join(result.attacks)}){protocol} on "
                     f"{point['n']} samples, 95% CI [{point['ci_low']:.3f}, {point['ci_high']:.3f}]; "
                     f"clean {acc0:.1%}{missing}",
            section=self.name, evidence_path=f"{path}[{i}]",
            why=(f"An attacker who may change each input by {name} {eps:g} (the middle of the audited budgets "
                 f"{grid}) leaves the model right on only {robust:.0%} of samples, against {acc0:.0%} clean: its "
                 "answers cannot be trusted where inputs can be manipulated."
                 if severity != "low" else
                 f"The model keeps most of its accuracy under {name} perturbations of {eps:g}: it resists this "
                 "budget."),
            action=(_adv_training_action(norm, eps) if severity != "low" else
                    "Nothing to fix at this budget; keep robust accuracy at this eps in the gate policy so that a "
                    "regression fails."))]
        if first is not None and first != i:
            p = curve[first]
            below = p["eps"] < eps
            findings.append(Finding(
                severity="high" if below else "medium",
                title=f"{name} robustness collapses at eps={p['eps']:g}, "
                      + ("below the headline eps" if below else "within the audited budgets"),
                evidence=f"robust accuracy {p['robust_accuracy']:.1%} at eps {p['eps']:g} (95% CI "
                         f"[{p['ci_low']:.3f}, {p['ci_high']:.3f}], {p['n']} samples) against {acc0:.1%} clean: "
                         f"below {COLLAPSE_FRACTION:.0%} of clean accuracy; audited budgets {grid}",
                section=self.name, evidence_path=f"{path}[{first}]",
                why=(f"The audited budgets (the card's epsilons or --eps) are the perturbations the model is meant "
                     f"to withstand; at {name} eps={p['eps']:g} an attacker already takes more than half of its "
                     "accuracy" + (f", before the headline eps {eps:g}." if below else
                                   f": robust at {eps:g}, it fails at a budget the card still lists.")),
                action=_adv_training_action(norm, max(p["eps"], eps))))
        return findings

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
                evidence="; ".join(f"{c['name']}: {c['evidence']}" for c in failed), section=self.name,
                evidence_path=f"{SECTION}.masking.checks",
                why="The model's gradients hide its weaknesses (flat, noisy or non-differentiable steps), so "
                    "gradient attacks fail for reasons other than robustness: the robust accuracy above is an upper "
                    "bound a better attack can break (Athalye et al. 2018).",
                action="Do not quote the robust accuracy. Look for non-differentiable or randomised steps in the "
                       "forward (quantisation, argmax, clipping, test-time noise) and remove them or attack through "
                       "them (BPDA, EOT); re-run with --budget thorough and compare the black-box attacks' figures.")]
        index = {c["name"]: k for k, c in enumerate(masking["checks"])}
        return [Finding(
            severity="medium", title=f"Robustness evaluation check failed: {c['name']}", evidence=c["evidence"],
            section=self.name, subject="evaluation", evidence_path=f"{SECTION}.masking.checks[{index[c['name']]}]",
            why="One of the sanity checks of the attack evaluation (Carlini et al. 2019) failed: the robust "
                "accuracy may be off, although the failures do not add up to suspected gradient masking.",
            action="Read the check's evidence; re-run with --budget thorough (more steps and restarts) and see "
                   "whether it still fails before relying on the robustness figures.") for c in failed]

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
            k = next((k for k, p in enumerate(curve) if p["evasion"]["value"] >= 0.5), len(curve) - 1)
            point = curve[k]
            ev = point["evasion"]
            positive = card.positive_class or "positive"
            changeable = result.get("changeable_features") or []
            median = result.get("median_cost")
            findings.append(Finding(
                severity="high" if ev["value"] >= 0.5 else "medium",
                title=f"{ev['value']:.0%} of caught {positive} cases evade "
                      f"with changes costing ≤ {point['budget']:g} feature units",
                evidence=f"{ev['n']} true positives attacked, only attacker-changeable features moved "
                         f"within their ranges and kinds; 95% CI [{ev['ci_low']:.3f}, {ev['ci_high']:.3f}]; "
                         f"median cheapest change {median:.3g}" if isinstance(median, (int, float)) else
                         f"{ev['n']} true positives attacked, only attacker-changeable features moved "
                         f"within their ranges and kinds; 95% CI [{ev['ci_low']:.3f}, {ev['ci_high']:.3f}]",
                section=self.name, evidence_path=f"{SECTION}.tabular.curve[{k}]",
                why=f"Someone who controls the changeable features ({', '.join(changeable[:5])}"
                    f"{', ...' if len(changeable) > 5 else ''}) can turn a caught {positive} case into a missed one "
                    f"with a change this small: against an adaptive adversary the model gives little protection."
                    if changeable else
                    f"An adversary can turn a caught {positive} case into a missed one with a change this small: "
                    "against an adaptive adversary the model gives little protection.",
                action="Make the decision rest more on features the attacker cannot change, and retrain with "
                       "adversarial training under this constrained threat model (the zoo's fraud-mlp-at is the "
                       "recipe; `--defense adversarial-training=PATH` compares the two); meanwhile send cases near the "
                       "decision threshold to a second check."))
        return {"budget": ctx.config.budget, "tabular": result}, findings

    # ------------------------------------------------------------------ text
    def _text(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        from auditkit.attacks.text import (
            embedding_space_attack,
            role_preserving,
            token_substitution_attack,
        )

        card = ctx.model.card
        tokens = ctx.model.to_input(ctx.x_eval)
        y = torch.as_tensor(ctx.y_eval, device=ctx.model.device)
        ks = [int(k) for k in (ctx.config.epsilons or card.epsilons).get("substitutions", [1, 2, 3]) if k > 0]
        # The data says which substitutions keep its labels (AuditData.substitution_roles).
        roles = ctx.data.substitution_roles
        allowed = role_preserving(roles) if roles else None
        out: dict[str, Any] = {"budget": ctx.config.budget, "sample_index": ctx.eval_index.tolist()}
        out["text"] = token_substitution_attack(ctx.model.module, tokens, y, card, max_substitutions=ks,
                                                seed=ctx.config.seed, allowed=allowed)
        if ctx.model.eager and hasattr(ctx.model.module, "forward_embedded"):
            out["embedding_diagnostic"] = embedding_space_attack(ctx.model.module, tokens, y, card,
                                                                 [0.0, 0.25, 0.5, 1.0, 2.0], seed=ctx.config.seed)
        findings = []
        # The label-preserving run is the real attack; without a rule for this vocabulary the
        # unconstrained one is all there is, and it is only an upper bound on vulnerability.
        key = "label_preserving" if out["text"].get("label_preserving") else "unconstrained"
        run = out["text"][key]
        if run["curve"]:
            last = run["curve"][-1]
            acc = last["robust_accuracy"]
            weak = acc["value"] < 0.5
            findings.append(Finding(
                severity="high" if weak else "low",
                evidence_path=f"{SECTION}.text.{key}.curve[{len(run['curve']) - 1}]",
                why=(f"Changing {last['k']} word(s) for near-synonyms flips most of the model's answers: anyone who "
                     "writes the input can steer it." if weak else
                     f"Up to {last['k']} word substitution(s) among embedding neighbours rarely change the "
                     "model's answer."),
                action=("Retrain with substitution-augmented or adversarial training (synonym swaps of the "
                        "audited kind), or certify against word substitutions, then re-run this audit."
                        if weak else "Nothing to fix at this budget; keep it in the gate policy so that a "
                        "regression fails."),
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
        from auditkit.generative.metrics import gan_samples

        gan = ctx.model.module
        n = min(ctx.config.samples, 128)
        real = ctx.model.to_input(ctx.x_eval[:n])
        fake = gan_samples(gan, n, seed=ctx.config.seed, device=ctx.model.device)
        eps = sorted({0.0, *(ctx.config.epsilons or {}).get("linf", [0.02, 0.05, 0.1, 0.2])})
        result = discriminator_attack(gan, real, fake, eps, bounds=ctx.model.card.bounds or (0.0, 1.0),
                                      seed=ctx.config.seed)
        return {"budget": ctx.config.budget, "discriminator": result}, []

