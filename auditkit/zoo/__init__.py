"""The model zoo: registered architectures, their training recipes and the committed artifacts.

>>> from auditkit import zoo
>>> zoo.list_models()
['cnn-digits', 'cnn-digits-at', 'fraud-mlp', 'fraud-mlp-at', 'gan-digits', 'lstm-reviews']
>>> model, card = zoo.get_model("cnn-digits")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from auditkit.card import AuditCard
from auditkit.zoo.models import build_architecture, list_architectures, register_architecture

__all__ = [
    "build_architecture",
    "get_model",
    "list_architectures",
    "list_models",
    "model_info",
    "register_architecture",
    "training_order",
    "zoo_dir",
]


def zoo_dir() -> Path:
    """Folder holding the committed artifacts ``<name>/model.pt``.

    In order: ``$AUDITKIT_ZOO_DIR``; the repository's top-level ``zoo/`` beside the package (a
    source checkout or an editable install); ``./zoo`` in the working directory when it holds
    zoo artifacts (a non-editable install run from a checkout). Otherwise the repository path
    is returned and :func:`get_model` says that the artifact is missing and how to point
    ``AUDITKIT_ZOO_DIR`` at the folder.
    """
    env = os.environ.get("AUDITKIT_ZOO_DIR")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "zoo"
    if beside.is_dir():
        return beside
    here = Path.cwd() / "zoo"
    if any(here.glob("*/model.pt")):
        return here
    return beside


def list_models() -> list[str]:
    """Names of the zoo models that have a training recipe (the registry:
    :func:`auditkit.zoo.recipes.register_recipe`), sorted."""
    from auditkit.zoo.recipes import RECIPES

    return sorted(RECIPES)


def training_order() -> list[str]:
    """Every zoo model, each after the models it depends on (``ZooRecipe.depends_on``: the GAN's
    judge, an adversarially trained model's undefended counterpart), otherwise sorted."""
    from auditkit.zoo.recipes import RECIPES

    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise ValueError(f"zoo recipes depend on each other in a cycle: {' -> '.join(path + (name,))}")
        for dep in RECIPES[name].depends_on:
            visit(dep, path + (name,))
        done.append(name)

    for name in sorted(RECIPES):
        visit(name, ())
    return done


def artifact_path(name: str) -> Path:
    return zoo_dir() / name / "model.pt"


def get_model(name: str, weights: bool = True) -> tuple[nn.Module, AuditCard]:
    """The eager module and its card.

    With ``weights=True`` the committed artifact is loaded safely (``weights_only=True``);
    with ``weights=False`` the architecture is built with random weights and the recipe's card.
    """
    from auditkit.zoo.recipes import get_recipe

    recipe = get_recipe(name)
    if not weights:
        card = recipe.make_card(recipe.load_data())
        return build_architecture(card.architecture or "", **card.arch_kwargs), card
    path = artifact_path(name)
    if not path.exists():
        raise FileNotFoundError(
            f"zoo artifact {path} is missing; train it with `auditkit zoo train {name}`, or set "
            "AUDITKIT_ZOO_DIR to the folder that holds the zoo's <name>/model.pt (e.g. a checkout's zoo/)"
        )
    from auditkit.loading import load_zoo_file

    loaded = load_zoo_file(path)
    return loaded.module, loaded.card


def model_info(name: str) -> dict[str, Any]:
    """Card summary and committed metrics of a zoo model (empty metrics if not trained)."""
    from auditkit.zoo.recipes import get_recipe

    recipe = get_recipe(name)
    metrics_file = zoo_dir() / name / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return {
        "name": name,
        "architecture": recipe.architecture,
        "task": recipe.task,
        "dataset": recipe.dataset,
        "description": recipe.description,
        "artifact": str(artifact_path(name)),
        "trained": artifact_path(name).exists(),
        "metrics": metrics,
    }
