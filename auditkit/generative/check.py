"""The ``gan`` check: sample quality, class coverage, memorisation, and what the discriminator
and the latent space respond to, for a GAN artifact (card task ``gan``).

A *judge* classifier of the real data turns images into classes and features. It is chosen
from the card's ``dataset`` (:data:`JUDGES`); without one, the parts that need it (quality,
coverage, latent attributions) are reported skipped with the reason, and the others still run.
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
FID_RATIO_LIMIT = 5.0  # FID this many times the real-vs-real reference: samples far from the data
CONFIDENT_LIMIT = 0.8  # fewer confident judge predictions than this: many unrecognisable samples
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
        n = min(ctx.config.samples * 4, MAX_SAMPLES)
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

        def finding(severity: str, title: str, evidence: str) -> None:
            findings.append(Finding(severity=severity, title=title, evidence=evidence, section=self.name))

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

        if "quality" in out:
            q = out["quality"]
            if q["fid_ratio"] is not None and q["fid_ratio"] > FID_RATIO_LIMIT:
                finding("medium", "Generated samples are far from the real data (FID)",
                        f"FID {q['fid']:.2f} is {q['fid_ratio']:.1f}x the real-vs-real reference "
                        f"{q['fid_real_vs_real']:.2f} ({judge_name} features, {q['n_samples']} samples)")
        if "coverage" in out:
            c = out["coverage"]
            if c["mode_collapse"]:
                finding("high", "Mode collapse: the generator misses classes",
                        f"{c['classes_covered']}/{len(c['histogram'])} classes covered by confident "
                        f"samples (missing {c['missing_classes']}), class entropy {c['entropy']:.2f} "
                        f"(1 = uniform), largest class share {c['largest_share']:.2f}")
            if c["confident_fraction"] < CONFIDENT_LIMIT:
                finding("medium", "Many generated samples are unrecognisable",
                        f"only {c['confident_fraction']:.1%} of {c['n_samples']} samples get a judge "
                        f"confidence >= {c['confidence_threshold']} ({judge_name})")
        if memo["memorisation_suspected"]:
            rel = "n/a" if memo["relative_ratio"] is None else f"{memo['relative_ratio']:.2f}"
            finding("high", "Generated samples copy training images",
                    f"median nearest-neighbour distance to train / to test is {rel} times that of "
                    f"real test images (< {gm.MEMO_RATIO} suspected); "
                    f"{memo['near_copy_fraction']:.1%} of samples are near-copies of training "
                    f"images (> {gm.MEMO_NEAR_COPY_FRACTION:.0%} suspected)")
        return out, findings


__all__ = ["GANCheck", "JUDGES", "load_judge"]
