"""Each "where to add" path of docs/architecture.md, exercised through its public registry:
a check with its report section, an attribution method, an attack, a zoo model. Every
registration is undone by its fixture. Also: a check run alone gives the numbers it gives in a
full scan (``--only explanation-quality``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from torch import nn

import auditkit
from auditkit.attacks import registry as attack_registry
from auditkit.attacks.ensemble import run_ensemble
from auditkit.attacks.registry import AttackSpec, get_attack, register_attack
from auditkit.builtin_checks import all_checks
from auditkit.checks import Check, ScanContext, register_check, unregister_check
from auditkit.explain.methods import METHODS, MethodSpec, attribute, available_methods, register_method, unregister_method
from auditkit.report import write_reports
from auditkit.results import Finding, strip_timings
from auditkit.zoo import list_models, training_order
from auditkit.zoo import models as zoo_models
from auditkit.zoo.recipes import (
    ZooRecipe,
    _digits_card,
    evaluate_classifier,
    register_recipe,
    train_classifier,
    train_zoo_model,
    unregister_recipe,
)
from auditkit.training import TrainConfig
from tests.conftest import zoo_model_path

# ----------------------------------------------------------------------------- a check


class DarkPixels(Check):
    """A plugin check: the share of pixels below 0.1 in the evaluated images."""

    name = "dark-pixels"
    title = "Dark pixels"
    tasks = ("image-classification",)

    def run(self, ctx: ScanContext) -> tuple[dict[str, Any], list[Finding]]:
        share = float((ctx.x_eval < 0.1).mean())
        finding = Finding(severity="low", title="Mostly dark inputs", evidence=f"{share:.0%} of pixels below 0.1",
                          section=self.name, subject="model", evidence_path="sections.dark-pixels.data.share",
                          why="A test finding.", action="Nothing to do.")
        return {"share": share, "n": len(ctx.eval_index)}, [finding]


@pytest.fixture
def dark_pixels() -> Iterator[type[Check]]:
    register_check(DarkPixels)
    try:
        yield DarkPixels
    finally:
        unregister_check(DarkPixels.name)


def test_a_registered_check_runs_in_a_scan_and_shows_up_in_the_reports(dark_pixels: type[Check],
                                                                      tmp_path: Path) -> None:
    assert list(all_checks())[-1] == "dark-pixels"  # after the built-in ones
    result = auditkit.scan(zoo_model_path("cnn-digits"), samples=8, budget="quick", progress=False,
                           only=["dark-pixels"])
    section = result.sections["dark-pixels"]
    assert section.status == "ok" and section.data["n"] == 8 and 0 < section.data["share"] < 1
    assert [f.title for f in section.findings] == ["Mostly dark inputs"]
    paths = write_reports(result, tmp_path)
    assert "dark-pixels" in paths["html"].read_text() and "Mostly dark inputs" in paths["md"].read_text()
    # A task it does not apply to: not-applicable, with the reason.
    text = auditkit.scan(zoo_model_path("lstm-reviews"), samples=4, budget="quick", progress=False,
                         only=["dark-pixels"])
    assert text.sections["dark-pixels"].status == "not-applicable"


# ----------------------------------------------------------------------------- an attribution method


def _input_x_gradient(c: Any) -> tuple[torch.Tensor, None]:
    x = c.x.detach().clone().requires_grad_(True)
    logit = c.module(x).gather(1, c.target[:, None]).sum()
    (grad,) = torch.autograd.grad(logit, x)
    return (grad * x).detach(), None


@pytest.fixture
def input_x_gradient() -> Iterator[MethodSpec]:
    spec = register_method(MethodSpec(
        "input-x-gradient", "Input x gradient", ("image-classification", "tabular-classification"), False,
        "Gradient times input (Shrikumar et al. 2016), written by hand.",
        dense=_input_x_gradient, quality=frozenset({"deletion-insertion"})))
    try:
        yield spec
    finally:
        unregister_method(spec.name)


def test_a_registered_attribution_method_is_listed_computed_and_run_by_the_scan(
        input_x_gradient: MethodSpec) -> None:
    from auditkit.zoo import get_model

    module, card = get_model("cnn-digits")
    assert available_methods(card, module, True)["input-x-gradient"] is None
    x = torch.rand(3, *card.input_shape)
    target = module(x).argmax(1)
    a = attribute("input-x-gradient", module, x, target, card)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().sum() > 0
    result = auditkit.scan(zoo_model_path("cnn-digits"), samples=8, budget="quick", progress=False,
                           only=["attributions"])
    methods = result.sections["attributions"].data["methods"]
    assert methods["input-x-gradient"]["status"] == "ok" and methods["input-x-gradient"]["title"] == "Input x gradient"
    with pytest.raises(ValueError, match="registered twice"):
        register_method(input_x_gradient)
    with pytest.raises(ValueError, match="no callable"):
        register_method(MethodSpec("broken", "Broken", ("text-classification",), False, "no text callable"))


def test_no_method_name_is_switched_on_outside_the_registry() -> None:
    """Adding a method is one spec: the explain package names methods only in their specs
    (and IG's completeness test, which is about IG by definition)."""
    import re

    package = Path(auditkit.__file__).parent / "explain"
    names = [m for m in METHODS if m != "ig"]
    for path in (package / "check.py", package / "quality.py"):
        text = path.read_text()
        hits = [n for n in names if re.search(rf'["\']{re.escape(n)}["\']', text)]
        assert not hits, f"{path.name} switches on {hits}: put the behaviour in the MethodSpec"


# ----------------------------------------------------------------------------- an attack


def _uniform_noise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None,
                   bounds: tuple[float, float], seed: int, tries: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sign noise at the eps-ball's corners: ``tries`` draws, the first that fools the model."""
    g = torch.Generator().manual_seed(seed)
    best = x.clone()
    for _ in range(tries):
        cand = (x + eps * torch.randint(0, 2, x.shape, generator=g).mul(2).sub(1).to(x)).clamp(*bounds)
        with torch.no_grad():
            fooled = model(cand).argmax(1) != y
        best[fooled] = cand[fooled]
    return best, torch.full((len(x),), tries, dtype=torch.int64)


@pytest.fixture
def noise_attack(monkeypatch: pytest.MonkeyPatch) -> Iterator[AttackSpec]:
    monkeypatch.setattr(attack_registry, "_ATTACKS", dict(attack_registry._ATTACKS))  # undone after the test
    yield register_attack(AttackSpec(
        "noise-linf", "fixed-eps", "linf", "score-based", "auditkit", "random sign noise (a test attack)",
        {"quick": {"tries": 2}, "standard": {"tries": 4}, "thorough": {"tries": 8}}, _uniform_noise))


def test_a_registered_attack_runs_alone_and_in_the_ensemble(noise_attack: AttackSpec) -> None:
    from auditkit.zoo import get_model

    module, card = get_model("cnn-digits")
    x = torch.from_numpy(auditkit.load_data("digits").x_test[:16])
    y = module(x).argmax(1)
    out = get_attack("noise-linf").run(module, x, y, [0.0, 0.3], budget="quick")
    assert len(out) == 2 and not out[0].success.any()
    assert ((out[1].x_adv - x).abs().amax() <= 0.3 + 1e-6)
    ens = run_ensemble(module, x, y, "linf", [0.3], budget="quick", attacks=["noise-linf"])
    assert ens.attacks == ["noise-linf"] and ens.robust_at(0.3).sum() == (~out[1].success).sum()


# ----------------------------------------------------------------------------- a zoo model


class TinyLinear(nn.Module):
    """A linear classifier on 8x8 digits: ``[N, 1, 8, 8]`` -> ``[N, num_classes]`` logits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def tiny_zoo_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setitem(zoo_models._ARCHITECTURES, "tiny-linear", TinyLinear)
    name = "tiny-digits"
    register_recipe(ZooRecipe(
        name=name, architecture="tiny-linear", task="image-classification", dataset="digits",
        description="linear classifier on 8x8 digits (a test entry)",
        make_card=lambda data: _digits_card(name)(data).model_copy(update={
            "architecture": "tiny-linear", "arch_kwargs": {"num_classes": data.num_classes},
            "preprocessing": None}),
        train=train_classifier, evaluate=evaluate_classifier,
        config=TrainConfig(epochs=2, batch_size=128, num_threads=1), lr=1e-2, depends_on=("cnn-digits",)))
    try:
        yield name
    finally:
        unregister_recipe(name)


def test_a_registered_zoo_model_trains_and_scans(tiny_zoo_model: str, tmp_path: Path) -> None:
    assert tiny_zoo_model in list_models()
    order = training_order()
    assert order.index("cnn-digits") < order.index(tiny_zoo_model)
    metrics = train_zoo_model(tiny_zoo_model, out_dir=tmp_path, progress=False)
    assert metrics["test_accuracy"] > 0.5
    assert json.loads((tmp_path / "metrics.json").read_text())["model"] == tiny_zoo_model
    result = auditkit.scan(tmp_path / "model.pt", samples=8, budget="quick", progress=False, only=["performance"])
    assert result.sections["performance"].status == "ok"
    assert result.provenance.card["architecture"] == "tiny-linear"


# ----------------------------------------------------------------------------- checks run alone


def test_explanation_quality_alone_gives_the_numbers_of_a_full_scan() -> None:
    """explanation-quality needs the attributions; run alone it computes the very same ones
    (ScanContext cache, explain.check.explain_attributions), so its figures do not change."""
    kwargs = dict(samples=8, budget="quick", progress=False, seed=1)
    both = auditkit.scan(zoo_model_path("cnn-digits"), only=["attributions", "explanation-quality"], **kwargs)
    alone = auditkit.scan(zoo_model_path("cnn-digits"), only=["explanation-quality"], **kwargs)
    a = strip_timings(json.loads(both.sections["explanation-quality"].model_dump_json()))
    b = strip_timings(json.loads(alone.sections["explanation-quality"].model_dump_json()))
    assert a["data"]["deletion_insertion"], "the deletion/insertion curves need the attributions"
    assert a == b


# ----------------------------------------------------------------------------- facts travel with the data


def test_the_data_carries_its_label_rules_and_the_counterpart_is_named() -> None:
    """Checks read what the data says about itself (no data-name switches), and the
    adversarially trained counterpart is named explicitly (no zoo lookup by name)."""
    from auditkit.attacks.text import role_preserving
    from auditkit.defenses.check import check_defense_names
    from auditkit.errors import ScanInputError

    reviews = auditkit.load_data("reviews?n=200")
    allowed = role_preserving(reviews.substitution_roles or {})
    assert allowed("good", "great") and not allowed("good", "awful") and not allowed("not", "never")
    assert "good" in reviews.ground_truth["sentiment_words"]
    assert auditkit.load_data("digits").substitution_roles is None

    assert check_defense_names(["smoothing", "adversarial-training=a.pt", "smoothing"]) == \
        ["smoothing", "adversarial-training=a.pt"]
    with pytest.raises(ScanInputError, match="take no '=' argument"):
        check_defense_names(["smoothing=1"])
    result = auditkit.scan(zoo_model_path("cnn-digits"), samples=4, budget="quick", progress=False,
                           only=["defenses"], defenses=["adversarial-training"])
    entry = result.sections["defenses"].data["defenses"]["adversarial-training"]
    assert entry["status"] == "skipped" and "--defense adversarial-training=PATH" in entry["reason"]


def test_zoo_names_for_scripts_and_zoo_dir_outside_a_checkout(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    import auditkit.zoo as zoo
    from auditkit.zoo.__main__ import main
    from tests.conftest import REPO

    assert main([str(REPO / "auditkit.toml")]) == 0
    gated = capsys.readouterr().out.split()
    assert "cnn-digits" in gated and "fraud-mlp-at" not in gated  # auditkit.toml gates no fraud-mlp-at
    # Installed without the checkout (site-packages): ./zoo of the working directory, else a
    # clear message naming AUDITKIT_ZOO_DIR.
    monkeypatch.delenv("AUDITKIT_ZOO_DIR", raising=False)
    monkeypatch.setattr(zoo, "__file__", str(tmp_path / "site-packages" / "auditkit" / "zoo" / "__init__.py"))
    monkeypatch.chdir(REPO)
    assert zoo.zoo_dir() == REPO / "zoo"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="AUDITKIT_ZOO_DIR"):
        zoo.get_model("cnn-digits")
