"""Card inference (auditkit.inference) and card validation: what the model and data reveal, what is
assumed, every card problem at once, and the flags that override card fields. In-process and fast;
the CLI end to end is in test_byom.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from auditkit.card import AuditCard, CardError, card_problems, card_schema, check_card_file, flag_overrides, parse_eps
from auditkit.data import data_from_arrays, tabular_from_frame
from auditkit.errors import ScanInputError
from auditkit.inference import (
    OutputAdapter,
    default_epsilons,
    draft_card,
    infer_bounds,
    infer_card,
)
from tests.byom_models import MLP, SmallResNet, TextLSTM

torch.manual_seed(0)


def _images(n: int = 80, scale: float = 1.0, shift: float = 0.0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.random((n, 1, 8, 8), dtype=np.float32) * scale + shift).astype(np.float32)
    return x, np.arange(n) % classes


class Fixed(nn.Module):
    """Returns a fixed transform of a linear score: logits, probabilities, one logit, one probability."""

    def __init__(self, kind: str, width: int):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(64, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x.flatten(1))
        if self.kind == "softmax":
            return z.softmax(1)
        if self.kind == "sigmoid":
            return torch.sigmoid(z)
        if self.kind == "squeezed":
            return z[:, 0]
        return z


# --------------------------------------------------------------------------- inference rules


@pytest.mark.parametrize("scale, shift, bounds, word", [
    (1.0, 0.0, (0.0, 1.0), "[0, 1]"),
    (255.0, 0.0, (0.0, 255.0), "[0, 255]"),
    (2.0, -1.0, (-1.0, 1.0), "[-1, 1]"),
    (6.0, -3.0, None, "widened by 5%"),
])
def test_bounds_from_the_data_range_say_which_rule(scale: float, shift: float, bounds, word: str) -> None:
    x, _ = _images(scale=scale, shift=shift)
    got, note = infer_bounds(x)
    assert word in note
    if bounds is not None:
        assert got == bounds
    else:  # standardised data: observed range plus a margin, so every sample lies inside
        lo, hi = float(x.min()), float(x.max())
        assert got[0] < lo and got[1] > hi and math.isclose(got[1] - got[0], 1.1 * (hi - lo), rel_tol=1e-3)


def test_epsilon_grids_scale_with_bounds_width_and_input_size() -> None:
    unit, _ = default_epsilons("image-classification", (0.0, 1.0), [1, 8, 8])
    wide, _ = default_epsilons("image-classification", (0.0, 255.0), [1, 8, 8])
    big, _ = default_epsilons("image-classification", (0.0, 1.0), [3, 32, 32])
    assert unit["linf"] == [0.0, 0.003922, 0.007843, 0.01569, 0.03137, 0.06275]  # (1..16)/255
    assert wide["linf"][1:] == pytest.approx([v * 255 for v in unit["linf"][1:]], rel=1e-3)
    # L2 grows with sqrt(d): 8x8 grey vs 32x32 RGB is sqrt(3072 / 64) ~ 6.93 times larger.
    assert big["l2"][-1] / unit["l2"][-1] == pytest.approx(math.sqrt(3072 / 64), rel=1e-3)
    assert big["l2"][4] == pytest.approx(0.4347, rel=1e-3)  # 8/255 Linf ~ L2 0.43: the CIFAR-10 ratio
    text, _ = default_epsilons("text-classification", None, [2])
    assert text == {"substitutions": [0.0, 1.0, 2.0]}  # never more words than the text has
    assert default_epsilons("tabular-classification", None, [5])[0] == {}


@pytest.mark.parametrize("kind, width, output", [
    ("logits", 10, "logits"), ("softmax", 10, "probabilities"),
    ("logits", 1, "binary-logit"), ("squeezed", 1, "binary-logit"), ("sigmoid", 1, "binary-probability"),
])
def test_output_kind_is_read_from_a_probe_and_turned_into_logits(kind: str, width: int, output: str) -> None:
    classes = 10 if width == 10 else 2
    x, y = _images(classes=classes)
    module = Fixed(kind, width).eval()
    if kind == "logits" and width == 1:
        with torch.no_grad():  # make sure the logits are not all inside [0, 1]
            module.lin.bias.fill_(-3.0)
    resolution, _ = infer_card(module, data_from_arrays({"x": x, "y": y}))
    assert resolution.card.output == output
    assert resolution.sources["output"] == "inferred" and resolution.notes["output"]
    adapted = OutputAdapter(module, output)
    xt = torch.as_tensor(x[:5])
    logits = adapted(xt)
    assert logits.shape == (5, classes)
    raw = module(xt).detach()
    if output == "probabilities":
        torch.testing.assert_close(logits.softmax(1), raw)
    elif output == "binary-logit":
        torch.testing.assert_close(logits.softmax(1)[:, 1], torch.sigmoid(raw.reshape(-1)))
    elif output == "binary-probability":
        torch.testing.assert_close(logits.softmax(1)[:, 1], raw.reshape(-1), atol=1e-5, rtol=1e-4)


def test_more_outputs_than_label_classes_and_fewer() -> None:
    x, y = _images(classes=3)
    resolution, _ = infer_card(SmallResNet(num_classes=5).eval(), data_from_arrays({"x": x, "y": y}))
    assert resolution.card.class_names == ["0", "1", "2", "3", "4"]
    assert "5 outputs but the labels only 3" in resolution.notes["class_names"]
    x, y = _images(classes=10)
    with pytest.raises(ScanInputError, match="returns 4 values per sample but the labels hold 10 classes"):
        infer_card(SmallResNet(num_classes=4).eval(), data_from_arrays({"x": x, "y": y}))


def test_positive_class_is_the_minority_of_imbalanced_binary_labels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame["label"] = np.where(np.arange(200) < 30, "fraud", "ok")  # 15% fraud
    data = tabular_from_frame(frame, "label")
    resolution, data = infer_card(MLP(4, 2).eval(), data)
    card = resolution.card
    assert card.class_names == ["fraud", "ok"] and card.positive_class == "fraud"
    assert "15.0%" in resolution.notes["positive_class"] and "sorted order" in resolution.notes["class_names"]
    assert [f.kind for f in card.features] == ["continuous"] * 4 and all(f.changeable for f in card.features)
    assert data.positive_class == "fraud"
    frame["label"] = np.arange(200) % 2  # balanced: the second class, said so
    resolution, _ = infer_card(MLP(4, 2).eval(), tabular_from_frame(frame, "label"))
    assert resolution.card.positive_class == "1" and "balanced" in resolution.notes["positive_class"]


def test_integer_arrays_are_token_ids_when_the_model_embeds_them() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(2, 30, size=(60, 12))
    x[:, 8:] = 0  # right padding
    y = np.arange(60) % 2
    data = data_from_arrays({"x": x, "y": y})
    assert data.task == "tabular-classification"  # what the arrays alone say
    resolution, data = infer_card(TextLSTM(vocab_size=40).eval(), data)
    card = resolution.card
    assert card.task == "text-classification" and card.input_dtype == "int64" and card.input_shape == [12]
    assert len(card.text.vocab) == 40 and card.text.pad_id == 0  # the model's embedding rows
    assert "token ids" in resolution.notes["task"] and card.epsilons == {"substitutions": [0.0, 1.0, 2.0, 3.0]}
    assert data.x_test.dtype == np.int64 and data.text is not None
    # The same arrays for a model that takes floats stay a table.
    resolution, _ = infer_card(MLP(12, 2).eval(), data_from_arrays({"x": x, "y": y}))
    assert resolution.card.task == "tabular-classification"


def test_flags_win_over_inference_and_inference_builds_on_them() -> None:
    x, y = _images(scale=255.0)
    over = flag_overrides(bounds="0,255", eps=["linf=2,4"], class_names="a,b,c,d,e,f,g,h,i,j",
                          preprocessing="mean=0.5;std=0.25;applied=outside")
    resolution, data = infer_card(SmallResNet().eval(), data_from_arrays({"x": x, "y": y}), over)
    card = resolution.card
    assert card.bounds == (0.0, 255.0) and card.epsilons == {"linf": [2.0, 4.0]}
    assert card.class_names[0] == "a" and data.class_names[0] == "a"
    assert card.preprocessing is not None and card.preprocessing.applied == "outside"
    for field in ("bounds", "epsilons", "class_names", "preprocessing"):
        assert resolution.sources[field] == "flag" and field not in resolution.notes
    assert resolution.sources["task"] == "inferred" and resolution.sources["description"] == "default"


def test_string_labels_follow_the_class_names_flag() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=list("abc"))
    frame["y"] = np.where(np.arange(40) % 2, "cat", "dog")
    data = tabular_from_frame(frame, "y")
    assert data.class_names == ["cat", "dog"]
    resolution, relabelled = infer_card(MLP(3, 2).eval(), data, {"class_names": ["dog", "cat"]})
    assert resolution.card.class_names == ["dog", "cat"]
    assert (np.asarray(relabelled.class_names)[relabelled.y_test] == np.asarray(data.class_names)[data.y_test]).all()


@pytest.mark.parametrize("kwargs, needle", [
    ({"bounds": "0"}, "--bounds"), ({"bounds": "a,b"}, "--bounds"), ({"task": "regression"}, "--task"),
    ({"eps": ["linf"]}, "--eps"), ({"eps": ["linf=0.1", "linf=0.2"]}, "given twice"),
    ({"preprocessing": "mean=0.5"}, "std"), ({"class_names": "a,,b"}, "--class-names"),
])
def test_bad_flags_name_the_flag(kwargs: dict, needle: str) -> None:
    with pytest.raises(CardError, match=needle):
        flag_overrides(**kwargs)


def test_eps_flag_forms() -> None:
    assert parse_eps(["linf=0.01,0.03 l2=0.5"]) == {"linf": [0.01, 0.03], "l2": [0.5]}
    assert parse_eps(["linf=0.01,0.03", "l2=0.5"]) == {"linf": [0.01, 0.03], "l2": [0.5]}


# --------------------------------------------------------------------------- validation


IMAGE = {"task": "image-classification", "input_shape": [1, 8, 8], "class_names": ["a", "b"], "bounds": [0, 1]}


@pytest.mark.parametrize("update, needle", [
    ({"bounds": [float("nan"), 1]}, "finite"),
    ({"bounds": [0, float("inf")]}, "finite"),
    ({"bounds": [1, 0]}, "empty"),
    ({"epsilons": {"linf": [float("nan")]}}, "finite and >= 0"),
    ({"epsilons": {"linf": [-0.1]}}, "finite and >= 0"),
    ({"epsilons": {"linf": [1e308]}}, "larger than the bounds' width"),
    ({"epsilons": {"linf": [1.5]}}, "larger than the bounds' width"),
    ({"epsilons": {"l2": [8.5]}}, "diameter of the input box"),
    ({"epsilons": {"l1": [0.5]}}, "unknown threat model"),
    ({"class_names": ["a", "a"]}, "unique"),
    ({"input_shape": [0, 8, 8]}, "greater than or equal to 1"),
])
def test_card_errors_are_one_line_and_name_an_existing_fix(update: dict, needle: str) -> None:
    with pytest.raises(CardError) as info:
        AuditCard.from_dict({**IMAGE, **update}, source="c.json")
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "CLI flag" not in message  # the old hint named no flag
    flags = [part.split()[0] for part in message.split("pass ")[1:]] if "pass " in message else []
    for flag in flags:
        assert flag.strip(",") in ("--bounds", "--eps", "--class-names", "--task", "--positive-class",
                                   "--preprocessing", "--bounds,"), message


def test_an_epsilon_at_the_limit_is_valid() -> None:
    card = AuditCard.from_dict({**IMAGE, "epsilons": {"linf": [1.0], "l2": [8.0], "substitutions": [0]}})
    assert card.epsilons["l2"] == [8.0]


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    bad = {**IMAGE, "bounds": [0, float("nan")], "class_names": ["only"], "typo_field": 1,
           "positive_class": "zzz", "epsilons": {"linf": [-1]}, "_comment": "ignored"}
    problems = card_problems({k: v for k, v in bad.items() if not k.startswith("_")})
    fields = {p[0].split(".")[0] for p in problems}
    assert {"bounds", "class_names", "typo_field", "positive_class", "epsilons"} <= fields, problems
    path = tmp_path / "bad.card.json"
    path.write_text(json.dumps(bad))
    assert len(check_card_file(path)) == len(problems)
    with pytest.raises(CardError, match=f"{len(problems)} problems"):
        AuditCard.read(path)


def test_comment_keys_are_ignored_and_drafts_read_back(tmp_path) -> None:
    x, y = _images()
    resolution, _ = infer_card(SmallResNet().eval(), data_from_arrays({"x": x, "y": y}))
    text = draft_card(resolution)
    doc = json.loads(text)
    assert doc["_bounds"].startswith("Valid input range") and "inferred" in doc["_bounds"]
    path = tmp_path / "draft.card.json"
    path.write_text(text)
    assert AuditCard.read(path) == resolution.card
    assert check_card_file(path) == []


def test_schema_is_generated_from_the_model_and_allows_comments() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = card_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]) == set(AuditCard.model_fields)
    assert all(p.get("description") for p in schema["properties"].values())
    jsonschema.validate({**IMAGE, "_note": "a comment"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**IMAGE, "typo": 1}, schema)


def test_a_module_with_generator_and_discriminator_is_a_gan() -> None:
    from auditkit.data import load_data
    from auditkit.zoo import get_model

    gan, _ = get_model("gan-digits")
    resolution, _ = infer_card(gan, load_data("digits"))
    card = resolution.card
    assert card.task == "gan" and card.latent_dim == 32 and card.bounds == (0.0, 1.0)
    assert "generator and a discriminator" in resolution.notes["task"]
