"""Training recipes of the zoo models: data, card, training task, evaluation.

Each recipe is what `auditkit zoo train NAME` runs. Retraining on the same machine with the
same seed reproduces the committed metrics (CPU training is deterministic); across machines,
within the tolerance stated in each model card.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from auditkit.errors import UnknownZooModelError  # noqa: F401  (re-exported)
from auditkit.card import AuditCard, Preprocessing
from auditkit.data import AuditData, load_data
from auditkit.generative.metrics import gan_samples  # noqa: F401  (re-exported)
from auditkit.zoo.adversarial import at_recipe_trainer, evaluate_digits_at, evaluate_fraud_at
from auditkit.zoo.models import DigitsGAN, build_architecture
from auditkit.training import (
    ClassifierTask,
    StepContext,
    TrainConfig,
    TrainResult,
    fit,
    predict_logits,
    resolve_device,
)

# The zoo models are tiny: one intra-op thread is as fast as two on 2 cores, does not
# oversubscribe a shared machine, and keeps CPU runs bit-reproducible.
DIGITS_EPSILONS = {
    "linf": [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
    "l2": [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0],
}


@dataclass
class ZooRecipe:
    """How one zoo model is made: its data, card, trainer settings and evaluation."""

    name: str
    architecture: str
    task: str
    dataset: str
    description: str
    make_card: Callable[[AuditData], AuditCard]
    train: Callable[["ZooRecipe", nn.Module, AuditData, TrainConfig], TrainResult]
    evaluate: Callable[[nn.Module, AuditData, torch.device], dict[str, Any]]
    config: TrainConfig = field(default_factory=TrainConfig)
    lr: float = 1e-3
    weight_decay: float = 0.0
    depends_on: tuple[str, ...] = ()
    data_note: str = ""
    intended_use: str = ""
    weaknesses: str = ""
    tolerance: str = ""

    def load_data(self) -> AuditData:
        return load_data(self.dataset)


# ----------------------------------------------------------------------------- cards


def _digits_card(name: str) -> Callable[[AuditData], AuditCard]:
    def make(data: AuditData) -> AuditCard:
        return AuditCard(
            name=name,
            task="image-classification",
            input_shape=data.input_shape,
            input_dtype="float32",
            bounds=(0.0, 1.0),
            preprocessing=Preprocessing(mean=[0.3], std=[0.35], applied="inside"),
            class_names=data.class_names,
            dataset="digits",
            architecture="cnn-digits",
            arch_kwargs={"num_classes": data.num_classes},
            epsilons=DIGITS_EPSILONS,
            description="CNN on scikit-learn's 8x8 digits, pixels in [0, 1].",
        )

    return make


def _reviews_card(data: AuditData) -> AuditCard:
    assert data.text is not None
    return AuditCard(
        name="lstm-reviews",
        task="text-classification",
        input_shape=data.input_shape,
        input_dtype="int64",
        bounds=None,
        class_names=data.class_names,
        text=data.text,
        dataset="reviews",
        architecture="lstm-reviews",
        arch_kwargs={
            "vocab_size": len(data.text.vocab),
            "pad_id": data.text.pad_id,
            "num_classes": data.num_classes,
        },
        epsilons={"substitutions": [0, 1, 2, 3]},
        description="Bidirectional LSTM sentiment classifier over token ids.",
    )


def _log_feature_indices(data: AuditData) -> list[int]:
    # Heavy-tailed non-negative quantities (amounts, distances) are log-scaled inside the model.
    assert data.features is not None
    return [
        i
        for i, f in enumerate(data.features)
        if f.kind == "continuous" and f.min >= 0 and f.max >= 100
    ]


def _fraud_card(data: AuditData) -> AuditCard:
    assert data.features is not None
    categorical = {
        str(i): len(f.categories or []) for i, f in enumerate(data.features) if f.kind == "categorical"
    }
    return AuditCard(
        name="fraud-mlp",
        task="tabular-classification",
        input_shape=data.input_shape,
        input_dtype="float32",
        bounds=None,
        class_names=data.class_names,
        positive_class=data.positive_class,
        features=data.features,
        dataset="fraud",
        architecture="tabular-mlp",
        arch_kwargs={
            "num_features": len(data.features),
            "categorical": categorical,
            "log_features": _log_feature_indices(data),
            "num_classes": data.num_classes,
        },
        description="MLP over raw transaction features (scaling and one-hot inside the model).",
    )


def _gan_card(data: AuditData) -> AuditCard:
    return AuditCard(
        name="gan-digits",
        task="gan",
        input_shape=data.input_shape,
        input_dtype="float32",
        bounds=(0.0, 1.0),
        class_names=data.class_names,
        dataset="digits",
        architecture="gan-digits",
        arch_kwargs={"latent_dim": 32, "width": 64},
        latent_dim=32,
        description="DCGAN-style generator and discriminator for 8x8 digits.",
    )


# ----------------------------------------------------------------------------- training


def _tensors(data: AuditData) -> TensorDataset:
    return TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))


def train_classifier(recipe: ZooRecipe, model: nn.Module, data: AuditData, config: TrainConfig) -> TrainResult:
    """Supervised training with cross-entropy through the shared trainer."""
    if hasattr(model, "fit_scaler"):
        model.fit_scaler(torch.from_numpy(data.x_train))
    task = ClassifierTask(model, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return fit(task, _tensors(data), config)


class GANTask:
    """Non-saturating DCGAN objective; discriminator step then generator step per batch."""

    def __init__(self, gan: DigitsGAN, lr: float = 2e-4):
        self.gan = gan
        self.lr = lr
        self.modules = {"generator": gan.generator, "discriminator": gan.discriminator}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (0.5, 0.999)
        return {
            "generator": torch.optim.Adam(self.gan.generator.parameters(), lr=self.lr, betas=betas),
            "discriminator": torch.optim.Adam(self.gan.discriminator.parameters(), lr=self.lr, betas=betas),
        }

    def training_step(self, batch: tuple[torch.Tensor, ...], ctx: StepContext) -> dict[str, float]:
        real = batch[0]
        gen, disc = ctx.modules["generator"], ctx.modules["discriminator"]
        bce = nn.functional.binary_cross_entropy_with_logits
        n = real.shape[0]
        z = torch.randn(n, self.gan.latent_dim, device=real.device)
        with ctx.autocast():
            fake = gen(z)
            # One-sided label smoothing (0.9) keeps the discriminator from saturating.
            d_real = disc(real)
            d_fake = disc(fake.detach())
            d_loss = bce(d_real, torch.full_like(d_real, 0.9)) + bce(d_fake, torch.zeros_like(d_fake))
        ctx.step(d_loss, "discriminator")
        with ctx.autocast():
            d_gen = disc(fake)
            g_loss = bce(d_gen, torch.ones_like(d_gen))
        ctx.step(g_loss, "generator")
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


def train_gan(recipe: ZooRecipe, model: nn.Module, data: AuditData, config: TrainConfig) -> TrainResult:
    if not isinstance(model, DigitsGAN):
        raise TypeError(f"train_gan needs a DigitsGAN, got {type(model).__name__}")
    return fit(GANTask(model, lr=recipe.lr), _tensors(data), config)


# ----------------------------------------------------------------------------- evaluation


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def evaluate_classifier(model: nn.Module, data: AuditData, device: torch.device) -> dict[str, Any]:
    logits = predict_logits(model, data.x_test, device=device)
    metrics: dict[str, Any] = {"test_accuracy": _accuracy(logits, data.y_test), "n_test": len(data.y_test)}
    for subset, mask in data.subsets.items():
        metrics[f"{subset}_accuracy"] = _accuracy(logits[mask], data.y_test[mask])
        metrics[f"n_{subset}"] = int(mask.sum())
    return metrics


def evaluate_fraud(model: nn.Module, data: AuditData, device: torch.device) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    metrics = evaluate_classifier(model, data, device)
    logits = torch.from_numpy(predict_logits(model, data.x_test, device=device))
    pos = data.class_names.index(data.positive_class or data.class_names[1])
    score = torch.softmax(logits, 1)[:, pos].numpy()
    y = (data.y_test == pos).astype(int)
    metrics.update(
        pr_auc=float(average_precision_score(y, score)),
        roc_auc=float(roc_auc_score(y, score)),
        # The all-legit baseline scores every row the same: PR-AUC = prevalence, ROC-AUC = 0.5.
        baseline_all_legit={"pr_auc": float(y.mean()), "roc_auc": 0.5, "accuracy": float(1 - y.mean())},
        fraud_rate_test=float(y.mean()),
    )
    return metrics


def evaluate_gan(model: nn.Module, data: AuditData, device: torch.device) -> dict[str, Any]:
    """Quality as judged by the committed ``cnn-digits``: confident fraction and class coverage."""
    from auditkit.zoo import get_model

    if not isinstance(model, DigitsGAN):
        raise TypeError(f"evaluate_gan needs a DigitsGAN, got {type(model).__name__}")
    judge, _ = get_model("cnn-digits")
    samples = gan_samples(model, 2000, seed=0, device=device)
    probs = torch.softmax(torch.from_numpy(predict_logits(judge, samples)), 1)
    conf, pred = probs.max(1)
    hist = np.bincount(pred.numpy(), minlength=10)
    return {
        "n_samples": 2000,
        "confident_fraction": float((conf > 0.9).float().mean()),
        "classes_covered": int((hist > 0).sum()),
        "class_histogram": hist.tolist(),
        "judge": "cnn-digits",
    }


# ----------------------------------------------------------------------------- registry

RECIPES: dict[str, ZooRecipe] = {
    r.name: r
    for r in [
        ZooRecipe(
            name="cnn-digits",
            architecture="cnn-digits",
            task="image-classification",
            dataset="digits",
            description="3-conv CNN on 8x8 digits",
            make_card=_digits_card("cnn-digits"),
            train=train_classifier,
            evaluate=evaluate_classifier,
            config=TrainConfig(epochs=30, batch_size=64, channels_last=True, num_threads=1),
            lr=2e-3,
            weight_decay=1e-4,
            data_note="scikit-learn's bundled 8x8 digits (1,797 images), pixels scaled to [0, 1], "
            "seeded stratified split: 1,347 train / 450 test.",
            intended_use="A small, fast image classifier for exercising attributions, attacks and "
            "defenses end to end. Not a model of handwriting in general.",
            weaknesses="Undefended: small L-inf perturbations (a few grey levels) flip many predictions. "
            "8x8 inputs make heatmaps coarse. Trained without augmentation.",
            tolerance="test accuracy within ±1 point across machines (bit-identical on the same machine and thread count).",
        ),
        ZooRecipe(
            name="lstm-reviews",
            architecture="lstm-reviews",
            task="text-classification",
            dataset="reviews",
            description="Bi-LSTM sentiment classifier on generated reviews",
            make_card=_reviews_card,
            train=train_classifier,
            evaluate=evaluate_classifier,
            config=TrainConfig(epochs=8, batch_size=64, num_threads=1),
            lr=3e-3,
            data_note="12,000 generated review sentences (auditkit.data.reviews): sentiment words, "
            "negation, intensifiers, contrast ('good but awful') and neutral distractors; labels follow "
            "documented rules with no noise; 16 tokens, 90-token vocabulary with <pad>=0 and <unk>=1; "
            "9,000 train / 3,000 test; per-token ground truth of the deciding tokens.",
            intended_use="Text attributions (layer IG on embeddings) with known deciding tokens, and "
            "token-substitution attacks.",
            weaknesses="The generated language is tiny and rule-based: perfect test accuracy says the "
            "rules were learnt, not that the model understands reviews. Words outside the vocabulary "
            "map to <unk>.",
            tolerance="test and negation-subset accuracy within ±1 point.",
        ),
        ZooRecipe(
            name="fraud-mlp",
            architecture="tabular-mlp",
            task="tabular-classification",
            dataset="fraud",
            description="MLP on simulated card transactions",
            make_card=_fraud_card,
            train=train_classifier,
            evaluate=evaluate_fraud,
            config=TrainConfig(epochs=8, batch_size=256, num_threads=1),
            lr=2e-3,
            weight_decay=1e-4,
            data_note="60,000 simulated card transactions (auditkit.data.fraud), 1.5% fraud from "
            "documented rules plus logistic noise; 11 features of mixed kinds (3 are non-causal "
            "distractors); 45,000 train / 15,000 test; the card's schema marks what a fraudster can change.",
            intended_use="Tabular attributions with known causal features, the constrained tabular "
            "threat model, and comparison with gradient-boosted trees.",
            weaknesses="Trained with plain cross-entropy on 1.5% positives: scores are usable for "
            "ranking (PR-AUC) but the default 0.5 threshold flags few frauds. The categorical "
            "merchant_category is one-hot encoded inside the model: its integer code has no gradient. "
            "auditkit's gradient attributions therefore run on the encoded inputs (forward_encoded) and "
            "sum per feature; a tool that only sees the raw inputs (or a TorchScript / torch.export copy, "
            "which hides the encoded space) scores it zero.",
            tolerance="ROC-AUC within ±0.01 and PR-AUC within ±0.05.",
        ),
        ZooRecipe(
            name="gan-digits",
            architecture="gan-digits",
            task="gan",
            dataset="digits",
            description="DCGAN-style GAN on 8x8 digits",
            make_card=_gan_card,
            train=train_gan,
            evaluate=evaluate_gan,
            config=TrainConfig(epochs=300, batch_size=64, drop_last=True, num_threads=1),
            lr=2e-4,
            depends_on=("cnn-digits",),
            data_note="The digits training split (1,347 images); the test split is held out so that "
            "memorisation can be measured against it.",
            intended_use="Exercising the GAN checks (sample quality, coverage, memorisation, "
            "discriminator and latent attributions) and the Defense-GAN style purification.",
            weaknesses="Small DCGAN on a small dataset: some samples are ambiguous digits. Quality is "
            "judged by the committed cnn-digits, so the judge's own errors enter the metric.",
            tolerance="confident fraction within ±0.05; all ten classes covered.",
        ),
        # Adversarially trained counterparts (auditkit.zoo.adversarial over auditkit.defenses).
        ZooRecipe(
            name="cnn-digits-at",
            architecture="cnn-digits",
            task="image-classification",
            dataset="digits",
            description="3-conv CNN on 8x8 digits, PGD adversarial training at Linf eps 0.1",
            make_card=lambda data: _digits_card("cnn-digits-at")(data).model_copy(update={
                "description": "CNN on scikit-learn's 8x8 digits, pixels in [0, 1]; PGD adversarial "
                               "training (Madry et al. 2018) at Linf eps 0.1."}),
            train=at_recipe_trainer("pgd", eps=0.1, steps=7),
            evaluate=evaluate_digits_at,
            config=TrainConfig(epochs=30, batch_size=64, channels_last=True, num_threads=1),
            lr=2e-3,
            weight_decay=1e-4,
            depends_on=("cnn-digits",),
            data_note="As cnn-digits: scikit-learn's 8x8 digits, 1,347 train / 450 test, pixels in [0, 1]. "
                      "Every training batch is replaced by PGD-Linf adversarial examples (eps 0.1, random "
                      "start, 7 steps of 2.5 * eps / 7, crafted in eval mode).",
            intended_use="The defended counterpart of cnn-digits: compare robust accuracy, clean accuracy "
                         "and training cost (`auditkit scan zoo/cnn-digits/model.pt --defense "
                         "adversarial-training=zoo/cnn-digits-at/model.pt`).",
            weaknesses="Robust only near the training radius: beyond Linf 0.1 robust accuracy falls off "
                       "and by 0.3 (where a pixel can move almost a third of its range) little is left. "
                       "Not certified: the robust accuracy is an attack's upper bound (the standard "
                       "ensemble). Adversarial training costs several times the plain training.",
            tolerance="clean accuracy within ±1.5 points, robust accuracy at eps 0.1 within ±5 points.",
        ),
        ZooRecipe(
            name="fraud-mlp-at",
            architecture="tabular-mlp",
            task="tabular-classification",
            dataset="fraud",
            description="MLP on simulated card transactions, adversarial training in feature units",
            make_card=lambda data: _fraud_card(data).model_copy(update={
                "name": "fraud-mlp-at",
                "description": "MLP over raw transaction features (scaling and one-hot inside the model); "
                               "PGD adversarial training on the changeable numeric features (Linf 0.02 of "
                               "each feature's range), fraud weighted 5x."}),
            train=at_recipe_trainer("pgd", eps=0.02, steps=7, tabular=True, class_weights=[1.0, 5.0]),
            evaluate=evaluate_fraud_at,
            config=TrainConfig(epochs=8, batch_size=256, num_threads=1),
            lr=2e-3,
            weight_decay=1e-4,
            depends_on=("fraud-mlp",),
            data_note="As fraud-mlp: 60,000 simulated transactions, 45,000 train / 15,000 test. Training "
                      "batches are replaced by PGD examples that move only the changeable continuous and "
                      "integer features (amount, hour, distance, transaction count, device score, day), by "
                      "at most 2% of each feature's range, within [min, max]; categorical and binary "
                      "features stay unchanged and integers are not rounded during training.",
            intended_use="The defended counterpart of fraud-mlp under the card's constrained threat model: "
                         "compare evasion rate against budget, PR-AUC and training cost.",
            weaknesses="Trained against small numeric changes only: categorical/binary switches (cost 0.1 "
                       "each) and larger budgets are not defended. Plain adversarial training on 1.5% "
                       "positives collapses to 'all legit', hence the 5x fraud weight, which moves the "
                       "operating point: compare PR-AUC/ROC-AUC, not accuracy.",
            tolerance="ROC-AUC within ±0.02, PR-AUC within ±0.05, evasion rate at budget 0.02 within ±10 points.",
        ),
    ]
}


def render_model_card(recipe: ZooRecipe, card: AuditCard, metrics: dict[str, Any]) -> str:
    """The README model card of a zoo artifact, written from the recipe and measured metrics."""
    cfg = recipe.config
    shown = {k: v for k, v in metrics.items() if k not in ("data_sha256", "final_losses", "class_histogram")}
    lines = [
        f"# {recipe.name}",
        "",
        f"{card.description or recipe.description}",
        "",
        "## Data",
        "",
        recipe.data_note,
        "",
        "## Recipe",
        "",
        f"- architecture `{card.architecture}` with `{json.dumps(card.arch_kwargs)[:200]}`",
        f"- {cfg.epochs} epochs, batch {cfg.batch_size}, learning rate {recipe.lr}, weight decay "
        f"{recipe.weight_decay}, seed {metrics.get('seed', 0)}, one CPU thread",
        f"- reproduce: `auditkit zoo train {recipe.name}` (about {metrics.get('train_seconds', '?')} s "
        f"on the machine that trained it, {metrics.get('train_device', 'cpu')})",
        f"- tolerance when retrained: {recipe.tolerance}",
        "",
        "## Metrics (held-out test split)",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for k, v in shown.items():
        value = f"{v:.4f}" if isinstance(v, float) else json.dumps(v) if isinstance(v, dict) else str(v)
        lines.append(f"| {k} | {value} |")
    lines += ["", "## Intended use", "", recipe.intended_use, "", "## Known weaknesses", "",
              recipe.weaknesses, "", "## Files", "",
              "- `model.pt`: the safe auditkit/1 format (tensors and plain data; "
              "`torch.load(weights_only=True)`), card embedded",
              "- `metrics.json`: the figures above, machine-readable", ""]
    return "\n".join(lines)



def register_recipe(recipe: ZooRecipe) -> ZooRecipe:
    """Add a zoo model: its recipe is all the zoo needs (``auditkit zoo train NAME`` trains it,
    ``list_models`` lists it; the Makefile and the tests iterate the registry). Its architecture
    must be registered (:func:`auditkit.zoo.models.register_architecture`)."""
    if recipe.name in RECIPES:
        raise ValueError(f"zoo model {recipe.name!r} is registered twice")
    unknown = [d for d in recipe.depends_on if d not in RECIPES]
    if unknown:
        raise ValueError(f"zoo model {recipe.name!r} depends on unknown models {unknown}")
    RECIPES[recipe.name] = recipe
    return recipe


def unregister_recipe(name: str) -> None:
    """Remove zoo model ``name`` from the registry (tests that register one clean up with it)."""
    RECIPES.pop(name, None)


def get_recipe(name: str) -> ZooRecipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownZooModelError(f"unknown zoo model {name!r}; known: {', '.join(sorted(RECIPES))}") from None


def train_zoo_model(
    name: str,
    out_dir: str | Path | None = None,
    epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Train zoo model ``name`` from its recipe, evaluate it, write ``model.pt`` and ``metrics.json``.

    Returns the metrics written. ``out_dir`` defaults to ``zoo/<name>/``; a checkpoint
    ``train.ckpt`` there allows ``resume=True`` after an interruption.
    """
    from auditkit.loading import save_zoo_file
    from auditkit.zoo import zoo_dir

    recipe = get_recipe(name)
    out = Path(out_dir) if out_dir else zoo_dir() / name
    out.mkdir(parents=True, exist_ok=True)
    data = recipe.load_data()
    card = recipe.make_card(data)
    torch.manual_seed(seed)
    model = build_architecture(card.architecture or recipe.architecture, **card.arch_kwargs)
    config = TrainConfig(**{**recipe.config.__dict__})
    config.epochs = epochs or config.epochs
    config.device = device
    config.seed = seed
    config.progress = progress
    config.checkpoint_path = out / "train.ckpt"
    config.resume = resume
    start = time.perf_counter()
    result = recipe.train(recipe, model, data, config)
    train_seconds = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) != 0:
        return {}  # under torchrun only rank 0 evaluates and writes the artifact
    dev = resolve_device(device)
    model.to("cpu").eval()
    metrics = recipe.evaluate(model, data, torch.device("cpu"))
    metrics.update(
        {
            "model": name,
            "epochs": config.epochs,
            "seed": seed,
            "train_device": str(dev),
            "train_seconds": round(train_seconds, 2),
            "world_size": result.world_size,
            "final_losses": {k: round(v, 5) for k, v in result.history[-1].items()} if result.history else {},
            "n_params": sum(p.numel() for p in model.parameters()),
            "torch": torch.__version__,
            "data_sha256": data.sha256(),
        }
    )
    save_zoo_file(out / "model.pt", model, card)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "README.md").write_text(render_model_card(recipe, card, metrics))
    Path(config.checkpoint_path).unlink(missing_ok=True)
    return metrics
