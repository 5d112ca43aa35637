"""The ``gan`` check: sample quality, class coverage, memorisation, and what the discriminator
and the latent space respond to, for a GAN artifact (card task ``gan``).

A *judge* classifier of the real data turns images into classes and features. It is chosen
from the card's ``dataset`` (:data:`JUDGES`); without one, the parts that need it (quality,
coverage, latent attributions) are reported skipped with the reason, and the others still run.

Findings (each with why it matters, what to do, and its evidence path in results.json):

* quality: FID more than ``FID_RATIO_MEDIUM`` times the real-vs-real reference (train vs test
  images at the same sample count) *and* more than ``FID_REFERENCE_SDS`` standard deviations of
  the reference above it: medium; beyond ``FID_RATIO_HIGH`` times: high. On gan-digits: FID
  26.9 against a reference of 12.0 ± 2.2;
* mode collapse (classes the judge never sees confidently): high;
* fewer than ``CONFIDENT_LIMIT`` of samples recognised confidently by the judge: medium;
* memorisation (samples nearer the training images than real test images are): high;
* a weak discriminator: it calls fewer than ``WEAK_DISCRIMINATOR_REAL`` of the real test images
  real (upper end of the 95% interval), or separates real from generated images with a ROC-AUC
  below ``WEAK_DISCRIMINATOR_AUC``: low (only the generator usually ships; the finding matters
  to whoever reuses the discriminator as a realness filter, and as a training diagnostic);
* FID from fewer than ``FID_MIN_SAMPLES_PER_DIM`` samples per judge feature: low, about the
  evaluation (both FIDs are then dominated by estimation noise: on gan-digits, 64 samples give
  a ratio of 0.9, 512 give 2.2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from auditkit.checks import Check, ScanContext, register_check
from auditkit.generative import metrics as gm
from auditkit.results import Finding

JUDGES = {"digits": "cnn-digits"}  # reference dataset name -> zoo classifier that judges samples
MAX_SAMPLES = 2000
SAMPLES_PER_SCAN_SAMPLE = 4  # generated images per --samples (up to MAX_SAMPLES)
FID_RATIO_MEDIUM = 1.5  # FID this many times the real-vs-real reference: samples far from the data
FID_REFERENCE_SDS = 3.0  # ...and this many reference standard deviations above it (not draw noise)
FID_RATIO_HIGH = 5.0  # FID this many times the reference: the samples barely resemble the data
CONFIDENT_LIMIT = 0.8  # fewer confident judge predictions than this: many unrecognisable samples
WEAK_DISCRIMINATOR_REAL = 0.75  # the discriminator calls fewer real test images real than this
WEAK_DISCRIMINATOR_AUC = 0.7  # or separates real from generated with a lower ROC-AUC
FID_MIN_SAMPLES_PER_DIM = 4  # FID from fewer samples than this many per feature is too noisy to judge
SECTION = "sections.gan.data"  # where this check's evidence sits in results.json
GRID = 16  # samples shown in the report's grid
LATENT_SAMPLES = 256  # latents explained by integrated gradients (cost: n_steps passes each)


def _dataset_name(spec: str | None) -> str | None:
    if not spec:
        return None
    from auditkit.data import DataError, parse_spec

    try:
        name, path, _ = parse_spec(spec)
    except DataError:
        return None
    return name if path is None else None


def load_judge(
    card_dataset: str | None, input_shape: list[int]
) -> tuple[nn.Module | None, str | None, str | None]:
    """The judge for a GAN trained on ``card_dataset``: ``(module, zoo name, None)`` or
    ``(None, name or None, reason it is unavailable)``."""
    from auditkit.zoo import get_model

    dataset = _dataset_name(card_dataset)
    name = JUDGES.get(dataset or "")
    if name is None:
        known = ", ".join(sorted(JUDGES))
        return None, None, (f"no judge classifier for dataset {card_dataset!r} (judges exist for: "
                            f"{known}); quality, coverage and latent checks need one")
    try:
        judge, judge_card = get_model(name)
    except FileNotFoundError as exc:
        return None, name, f"judge {name} unavailable: {exc}"
    if list(judge_card.input_shape) != list(input_shape):
        return None, name, (f"judge {name} takes inputs {judge_card.input_shape}, the GAN makes "
                            f"{input_shape}")
    return judge.eval(), name, None


@register_check
class GANCheck(Check):
    name = "gan"
    title = "GAN artifact"
    tasks = ("gan",)

    def skip_reason(self, ctx: ScanContext) -> str | None:
        reason = super().skip_reason(ctx)
        if reason:
            return reason
        module = ctx.model.module
        missing = [p for p in ("generator", "discriminator")
                   if not isinstance(getattr(module, p, None), nn.Module)]
        if missing:
            return (f"the {ctx.model.format} GAN has no {' or '.join('.' + p for p in missing)} "
                    "module; scan the eager zoo model.pt (or a state_dict with --arch)")
        return None

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        gan = ctx.model.module
        card = ctx.model.card
        seed = ctx.config.seed
        dev = ctx.model.device
        latent_dim = int(card.latent_dim or getattr(gan, "latent_dim"))
        n = min(ctx.config.samples * SAMPLES_PER_SCAN_SAMPLE, MAX_SAMPLES)
        z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
        with gm.eval_mode(gan), torch.no_grad():
            samples = torch.cat([gan.generator(z[s : s + 512]) for s in range(0, n, 512)]).float()
        if list(samples.shape[1:]) != list(ctx.data.input_shape):
            raise ValueError(
                f"the generator makes images {list(samples.shape[1:])} but the data has "
                f"{ctx.data.input_shape}; pass the dataset the GAN was trained on (--data)"
            )
        x_train = torch.from_numpy(ctx.data.x_train).float().to(dev)
        x_test = torch.from_numpy(ctx.data.x_test).float().to(dev)
        bounds = tuple(card.bounds) if card.bounds is not None else (
            float(min(x_train.min(), x_test.min())), float(max(x_train.max(), x_test.max())))

        judge, judge_name, judge_reason = load_judge(card.dataset, list(samples.shape[1:]))
        if judge is not None:
            judge = judge.to(dev)
        out: dict[str, Any] = {
            "n_samples": n,
            "seed": seed,
            "latent_dim": latent_dim,
            "judge": {"name": judge_name, "available": judge is not None, "reason": judge_reason},
            "skipped": {},
        }
        findings: list[Finding] = []
        # Parts that need no judge.
        memo = gm.memorisation(samples.cpu(), x_train.cpu(), x_test.cpu())
        memo["closest_pairs"] = [
            {**p, "sample_image": gm.image_map(samples[p["sample"]]),
             "train_image": gm.image_map(x_train[p["train"]])}
            for p in memo["closest_pairs"]
        ]
        out["memorisation"] = memo
        out["discriminator"] = gm.discriminator_attributions(
            gan, x_test, samples, seed=seed, bounds=bounds)  # type: ignore[arg-type]

        if judge is None:
            for part in ("quality", "coverage", "latent"):
                out["skipped"][part] = judge_reason
            probs = None
        else:
            out["quality"] = gm.sample_quality(judge, samples, x_test, x_train, seed=seed)
            n_classes = len(card.class_names) or int(ctx.data.num_classes)
            out["coverage"] = gm.class_coverage(judge, samples, n_classes)
            out["latent"] = gm.latent_attributions(gan, judge, min(n, LATENT_SAMPLES), seed=seed,
                                                   latent_dim=latent_dim)
            probs = gm.judge_probs(judge, samples[:GRID])
        names = card.class_names or ctx.data.class_names
        out["sample_grid"] = [
            {"image": gm.image_map(samples[i]),
             "prediction": None if probs is None else int(probs[i].argmax()),
             "prediction_name": None if probs is None or not names else names[int(probs[i].argmax())],
             "confidence": None if probs is None else round(float(probs[i].max()), 4)}
            for i in range(min(GRID, n))
        ]

        findings += gan_findings(out, judge_name)
        return out, findings


def gan_findings(out: dict[str, Any], judge_name: str | None, section: str = "gan") -> list[Finding]:
    """The findings of a ``gan`` payload ``out`` (rules and thresholds in the module docstring)."""
    findings: list[Finding] = []
    q = out.get("quality")
    if q and q["fid_ratio"] is not None and q["fid"] is not None and q["fid_real_vs_real"] is not None:
        sd = q["fid_real_vs_real_std"] or 0.0
        far = q["fid"] > q["fid_real_vs_real"] + FID_REFERENCE_SDS * sd
        if q["fid_ratio"] > FID_RATIO_HIGH or (q["fid_ratio"] > FID_RATIO_MEDIUM and far):
            findings.append(Finding(
                severity="high" if q["fid_ratio"] > FID_RATIO_HIGH else "medium",
                title=f"Generated samples are far from the real data (FID {q['fid_ratio']:.1f}x the real-vs-real "
                      "reference)",
                evidence=f"FID {q['fid']:.1f} against a real-vs-real reference of {q['fid_real_vs_real']:.1f} "
                         f"± {sd:.1f} (train vs test images, {q['n_reference_draws']} draws of "
                         f"{q['n_train_reference']}); {q['n_samples']} samples, {judge_name} features",
                section=section, evidence_path=f"{SECTION}.quality",
                why="FID measures how far the generated images are from real ones in a classifier's feature space; "
                    "the reference is what real images of the same count score against each other, so a generator "
                    "this far above it makes images that are visibly off (odd strokes, blur) or lack the data's "
                    "variety.",
                action="Look at the sample grid for what is off, then train longer or with a stabler recipe "
                       "(spectral normalisation, a two-time-scale learning rate, more discriminator capacity), "
                       "keep the checkpoint with the lowest FID on held-out data, and re-run the audit until FID "
                       f"is within {FID_RATIO_MEDIUM:g}x the reference."))
    if q and q["n_samples"] < FID_MIN_SAMPLES_PER_DIM * q["feature_dim"]:
        need = -(-FID_MIN_SAMPLES_PER_DIM * q["feature_dim"] // SAMPLES_PER_SCAN_SAMPLE)
        findings.append(Finding(
            severity="low", subject="evaluation",
            title="Too few generated samples for FID to judge quality",
            evidence=f"FID from {q['n_samples']} samples in {q['feature_dim']} feature dimensions (at least "
                     f"{FID_MIN_SAMPLES_PER_DIM * q['feature_dim']} needed); FID {q['fid']:.1f}, reference "
                     f"{q['fid_real_vs_real']:.1f}",
            section=section, evidence_path=f"{SECTION}.quality.n_samples",
            why="With fewer samples than a few per feature dimension, both the FID and its real-vs-real reference "
                "are dominated by estimation noise, so their comparison cannot show a poor generator.",
            action=f"Re-run with --samples {need} or more ({SAMPLES_PER_SCAN_SAMPLE} generated images per sample) "
                   "before reading the quality figures."))
    c = out.get("coverage")
    if c and c["mode_collapse"]:
        findings.append(Finding(
            severity="high", title="Mode collapse: the generator misses classes",
            evidence=f"{c['classes_covered']}/{len(c['histogram'])} classes covered by confident samples (missing "
                     f"{c['missing_classes']}), class entropy {c['entropy']:.2f} (1 = uniform), largest class share "
                     f"{c['largest_share']:.2f}",
            section=section, evidence_path=f"{SECTION}.coverage",
            why="A collapsed generator produces only part of the data's variety: anything built on its samples "
                "(augmentation, synthetic data) under-represents the missing classes.",
            action="Retrain with collapse countermeasures (minibatch discrimination or a conditional GAN, spectral "
                   "normalisation, a lower generator learning rate) and check coverage again."))
    if c and c["confident_fraction"] is not None and c["confident_fraction"] < CONFIDENT_LIMIT:
        findings.append(Finding(
            severity="medium", title="Many generated samples are unrecognisable",
            evidence=f"only {c['confident_fraction']:.1%} of {c['n_samples']} samples get a judge confidence >= "
                     f"{c['confidence_threshold']} ({judge_name})",
            section=section, evidence_path=f"{SECTION}.coverage.confident_fraction",
            why="Samples a classifier of the real data cannot place in any class are unlikely to look like real "
                "data to people either.",
            action="Inspect the low-confidence samples in the grid; train longer or with a stabler recipe, or filter "
                   "samples by judge confidence before use."))
    memo = out["memorisation"]
    if memo["memorisation_suspected"]:
        rel = "n/a" if memo["relative_ratio"] is None else f"{memo['relative_ratio']:.2f}"
        findings.append(Finding(
            severity="high", title="Generated samples copy training images",
            evidence=f"median nearest-neighbour distance to train / to test is {rel} times that of real test images "
                     f"(< {gm.MEMO_RATIO} suspected); {memo['near_copy_fraction']:.1%} of samples are near-copies of "
                     f"training images (> {gm.MEMO_NEAR_COPY_FRACTION:.0%} suspected)",
            section=section, evidence_path=f"{SECTION}.memorisation",
            why="A generator that reproduces training images leaks them: a privacy and licensing risk, and it adds "
                "no new data.",
            action="Look at the closest pairs; de-duplicate the training set, stop training earlier or regularise "
                   "(differential privacy for sensitive data), and re-check memorisation."))
    realness = out["discriminator"]["realness"]
    share, auc, n_real = realness.get("real_judged_real"), realness.get("auc_real_vs_fake"), realness["n_real"]
    if share is not None or auc is not None:
        from auditkit.sections.common import Proportion

        called = Proportion.of_fraction(share, n_real) if share is not None else None
        weak_real = called is not None and called.ci_high is not None and called.ci_high < WEAK_DISCRIMINATOR_REAL
        weak_auc = auc is not None and auc < WEAK_DISCRIMINATOR_AUC
        if weak_real or weak_auc:
            calls = (f"calls {share:.0%} of {n_real} real test images real (95% CI [{called.ci_low:.2f}, "
                     f"{called.ci_high:.2f}])" if called is not None and called.ci_low is not None else "")
            fake = realness.get("fake_judged_fake")
            evidence = "; ".join(x for x in (
                calls, f"calls {fake:.0%} of {realness['n_fake']} generated images fake" if fake is not None else "",
                f"ROC-AUC real vs generated {auc:.2f}" if auc is not None else "") if x)
            findings.append(Finding(
                severity="low",
                title=(f"Weak discriminator: it calls only {share:.0%} of real images real" if weak_real
                       else f"Weak discriminator: it barely tells real from generated (ROC-AUC {auc:.2f})"),
                evidence=evidence, section=section, evidence_path=f"{SECTION}.discriminator.realness",
                why="The discriminator is the GAN's learned test of realness. Used as a realness or anomaly filter, "
                    "it would reject real inputs as often as stated here; as a training diagnostic, a discriminator "
                    "this unsure gave the generator little signal, which fits samples far from the data.",
                action="Do not ship the discriminator as a filter without recalibrating its threshold on real data; "
                       "when retraining, give it more capacity or updates (or a lower generator learning rate) and "
                       "track FID against the reference rather than the discriminator's loss."))
    return findings


__all__ = ["GANCheck", "JUDGES", "gan_findings", "load_judge"]
