"""Attribution methods over real captum on small zoo architectures (random weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from auditkit.card import AuditCard, FeatureSpec, TextSpec
from auditkit.explain import METHODS, AttributionError, attribute, available_methods, gallery, global_importance
from auditkit.zoo.models import DigitsCNN, ReviewsLSTM, TabularMLP

torch.set_num_threads(1)

VOCAB = ["<pad>", "<unk>"] + [f"w{i}" for i in range(30)]
FEATURES = [
    FeatureSpec(name="amount", kind="continuous", min=0, max=1000),
    FeatureSpec(name="age", kind="integer", min=18, max=90),
    FeatureSpec(name="channel", kind="categorical", min=0, max=2, categories=["web", "shop", "phone"]),
    FeatureSpec(name="foreign", kind="binary", min=0, max=1),
]
IMAGE_CARD = AuditCard(
    task="image-classification", input_shape=[1, 8, 8], bounds=(0.0, 1.0),
    class_names=[str(i) for i in range(10)],
)
TABULAR_CARD = AuditCard(
    task="tabular-classification", input_shape=[4], class_names=["ok", "fraud"], features=FEATURES
)
TEXT_CARD = AuditCard(
    task="text-classification", input_shape=[16], input_dtype="int64",
    class_names=["negative", "positive"], text=TextSpec(vocab=VOCAB),
)
TARGET = torch.tensor([0, 1, 1, 0])


def _tabular_x(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([
        torch.rand(n, generator=g) * 1000,
        18 + torch.rand(n, generator=g) * 72,
        torch.randint(0, 3, (n,), generator=g).float(),
        torch.randint(0, 2, (n,), generator=g).float(),
    ], 1)


def _image_case() -> tuple[nn.Module, torch.Tensor, AuditCard]:
    torch.manual_seed(0)
    model = DigitsCNN(width=8).eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x, IMAGE_CARD


def _tabular_case() -> tuple[nn.Module, torch.Tensor, AuditCard]:
    torch.manual_seed(0)
    model = TabularMLP(4, categorical={"2": 3}, hidden=16)
    model.fit_scaler(_tabular_x(128, seed=2))
    return model.eval(), _tabular_x(4, seed=3), TABULAR_CARD


def _text_case() -> tuple[nn.Module, torch.Tensor, AuditCard]:
    torch.manual_seed(0)
    model = ReviewsLSTM(len(VOCAB), pad_id=0, embed_dim=8, hidden=8).eval()
    tokens = torch.randint(2, len(VOCAB), (4, 16), generator=torch.Generator().manual_seed(4))
    for row, length in enumerate([16, 10, 5, 1]):
        tokens[row, length:] = 0  # right padding, one sentence per length
    return model, tokens, TEXT_CARD


CASES = {"image": _image_case, "tabular": _tabular_case, "text": _text_case}
EXPECTED = {
    "image": set(METHODS),
    "tabular": set(METHODS) - {"gradcam", "guided-backprop"},
    "text": {"saliency", "ig", "smoothgrad", "occlusion", "gradient-shap"},
}


def _target(card: AuditCard) -> torch.Tensor:
    return TARGET if card.num_classes == 2 else torch.tensor([0, 3, 7, 9])


@pytest.mark.parametrize("kind", list(CASES))
def test_available_methods_per_model(kind: str) -> None:
    model, _, card = CASES[kind]()
    avail = available_methods(card, model, eager=True)
    assert set(avail) == set(METHODS)
    assert {m for m, reason in avail.items() if reason is None} == EXPECTED[kind]
    for name, reason in avail.items():
        assert reason is None or (isinstance(reason, str) and reason)
    if kind != "image":
        assert "convolutional" in avail["gradcam"]
        assert "image" in avail["guided-backprop"]
    if kind == "text":
        assert "LSTM" in avail["deeplift"]


@pytest.mark.parametrize(
    "kind,method", [(k, m) for k in CASES for m in sorted(EXPECTED[k])]
)
def test_method_runs_with_right_shape_and_is_deterministic(kind: str, method: str) -> None:
    model, x, card = CASES[kind]()
    t = _target(card)
    a = attribute(method, model, x, t, card, n_steps=16)
    b = attribute(method, model, x, t, card, n_steps=16)
    assert isinstance(a, torch.Tensor)
    assert a.shape == x.shape and a.dtype == torch.float32  # text: [N, L] per-token scores
    assert torch.isfinite(a).all()
    assert a.abs().sum() > 0, "attributions are all zero"
    assert torch.equal(a, b), "same seed must give the same attributions"
    if kind == "text":
        pad = x == 0
        assert (a[pad] == 0).all(), "pad positions must score exactly 0"
        assert (a[~pad] != 0).any()
    if method in {"saliency", "smoothgrad"}:
        assert (a >= 0).all(), "saliency is an absolute gradient"


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("method", ["smoothgrad", "gradient-shap"])
def test_noise_methods_follow_the_seed_and_keep_global_rng(kind: str, method: str) -> None:
    model, x, card = CASES[kind]()
    t = _target(card)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    np.random.seed(7)
    np_next = np.random.rand()
    np.random.seed(7)
    a0 = attribute(method, model, x, t, card, seed=0)
    assert torch.equal(torch.rand(3), expected_next), "attribute must not consume the global RNG"
    assert np.random.rand() == np_next, "attribute must not consume NumPy's global RNG"
    a1 = attribute(method, model, x, t, card, seed=1)
    assert not torch.equal(a0, a1)
    # captum's GradientShap draws from NumPy's global RNG: the seed must pin that too.
    np.random.seed(99)
    torch.manual_seed(99)
    assert torch.equal(attribute(method, model, x, t, card, seed=0), a0)


def test_batching_does_not_change_deterministic_methods() -> None:
    model, x, card = _image_case()
    t = _target(card)
    for method in ["ig", "occlusion", "gradcam", "deeplift"]:
        whole = attribute(method, model, x, t, card, batch_size=64)
        chunked = attribute(method, model, x, t, card, batch_size=3)
        torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-4)


def test_ig_completeness_delta_and_convergence_on_cnn() -> None:
    model, x, card = _image_case()
    t = _target(card)
    baseline = torch.zeros_like(x)
    with torch.no_grad():
        gap = (model(x) - model(baseline)).gather(1, t[:, None]).squeeze(1)
    errors = {}
    for steps in (8, 128):
        attr, delta = attribute("ig", model, x, t, card, n_steps=steps, return_delta=True)
        assert delta.shape == (4,)
        error = attr.sum((1, 2, 3)) - gap
        torch.testing.assert_close(error.abs(), delta.abs(), atol=1e-5, rtol=1e-3)
        errors[steps] = delta.abs().mean().item()
    assert errors[128] < errors[8] / 3


def test_ig_completeness_on_text_uses_the_pinned_padding_mask() -> None:
    model, tokens, card = _text_case()
    attr, delta = attribute("ig", model, tokens, TARGET, card, n_steps=64, return_delta=True)
    with torch.no_grad():
        f_x = model(tokens)
        # The path starts at the pad embedding everywhere, with the input's padding mask.
        f_b = model.forward_embedded(model.embedding(torch.zeros_like(tokens)), tokens)
    gap = (f_x - f_b).gather(1, TARGET[:, None]).squeeze(1)
    torch.testing.assert_close(attr.sum(1) - gap, delta, atol=1e-5, rtol=1e-3)
    assert delta.abs().max() < 0.05 * gap.abs().max() + 1e-4


def _linear_case() -> tuple[nn.Linear, torch.Tensor, AuditCard]:
    card = AuditCard(
        task="tabular-classification", input_shape=[3], class_names=["a", "b"],
        features=[
            FeatureSpec(name="x0", kind="continuous", min=-5, max=5),
            FeatureSpec(name="x1", kind="continuous", min=2, max=10),  # zero clips to 2
            FeatureSpec(name="x2", kind="continuous", min=-1, max=1),
        ],
    )
    torch.manual_seed(0)
    model = nn.Linear(3, 2).eval()
    x = torch.tensor([[1.0, 3.0, -0.5], [-2.0, 9.0, 0.25], [4.0, 2.5, 1.0], [0.0, 6.0, -1.0]])
    return model, x, card


@pytest.mark.parametrize("method", ["ig", "deeplift", "occlusion"])
def test_linear_model_matches_closed_form(method: str) -> None:
    model, x, card = _linear_case()
    w = model.weight.detach()[TARGET]  # [N, F]
    mean = torch.tensor([0.5, 5.0, 0.1])
    got = attribute(method, model, x, TARGET, card, baseline=mean)
    torch.testing.assert_close(got, w * (x - mean), atol=1e-4, rtol=0)
    # Default tabular baseline: zeros clipped into each feature's [min, max].
    got = attribute(method, model, x, TARGET, card)
    torch.testing.assert_close(got, w * (x - torch.tensor([0.0, 2.0, 0.0])), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["saliency", "smoothgrad"])
def test_linear_model_saliency_is_abs_weight(method: str) -> None:
    model, x, card = _linear_case()
    got = attribute(method, model, x, TARGET, card)
    torch.testing.assert_close(got, model.weight.detach()[TARGET].abs(), atol=1e-5, rtol=1e-4)


def test_gradient_shap_on_linear_model_is_near_closed_form() -> None:
    model, x, card = _linear_case()
    w = model.weight.detach()[TARGET]
    mean = torch.tensor([0.5, 5.0, 0.1])
    got = attribute("gradient-shap", model, x, TARGET, card, baseline=mean)
    # References are the baseline plus noise of 0.1 x (range / sqrt 12) per feature.
    noise_sd = 0.1 * torch.tensor([10.0, 8.0, 2.0]) / 12 ** 0.5
    assert ((got - w * (x - mean)).abs() <= 4 * w.abs() * noise_sd + 1e-5).all()


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_hook_methods_unavailable_without_eager_module() -> None:
    model, x, card = _image_case()
    traced = torch.jit.trace(model, x)
    avail = available_methods(card, traced, eager=False)
    for name in ["gradcam", "deeplift", "guided-backprop"]:
        assert "hooks unavailable on TorchScript" in avail[name]
    for name in ["saliency", "ig", "smoothgrad", "occlusion", "gradient-shap"]:
        assert avail[name] is None
        torch.testing.assert_close(
            attribute(name, traced, x, _target(card), card),
            attribute(name, model, x, _target(card), card), atol=1e-5, rtol=1e-4,
        )
    with pytest.raises(AttributionError, match="hooks"):
        attribute("gradcam", traced, x, _target(card), card)

    text_model, _, text_card = _text_case()
    text_avail = available_methods(text_card, text_model, eager=False)
    assert {m for m, r in text_avail.items() if r is None} == {"occlusion"}
    assert "embedding layer" in text_avail["ig"]


class _BagOfEmbeddings(nn.Module):
    """A text model without ``forward_embedded`` and with a differently named embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(len(VOCAB), 6, padding_idx=0)
        self.head = nn.Linear(6, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.tok(tokens).mean(1))


def test_text_methods_on_a_model_without_forward_embedded() -> None:
    _, tokens, card = _text_case()
    torch.manual_seed(0)
    model = _BagOfEmbeddings().eval()
    avail = available_methods(card, model, eager=True)
    assert avail["deeplift"] is None, "no recurrent layer: DeepLIFT applies"
    out = {m: attribute(m, model, tokens, TARGET, card) for m, r in avail.items() if r is None}
    assert set(out) == {"saliency", "ig", "smoothgrad", "occlusion", "deeplift", "gradient-shap"}
    pad = tokens == 0
    for name, a in out.items():
        assert (a[pad] == 0).all() and (a[~pad] != 0).all(), name
    # The model is linear in the embeddings: the gradient per position is W[t] / L, so
    # saliency is sum_e |W[t, e]| / L at every token, SmoothGrad equals it (the noise enters
    # the embeddings through a forward hook), and IG equals DeepLIFT equals (emb - pad_emb) . W[t] / L.
    w = model.head.weight.detach()[TARGET] / tokens.shape[1]  # [N, E]
    expected_sal = w.abs().sum(1, keepdim=True).expand_as(tokens).masked_fill(pad, 0)
    torch.testing.assert_close(out["saliency"], expected_sal, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["smoothgrad"], expected_sal, atol=1e-6, rtol=1e-5)
    emb = model.tok(tokens).detach()  # the pad embedding is the zero vector (padding_idx)
    expected_ig = (emb * w[:, None, :]).sum(-1)
    for name in ["ig", "deeplift"]:
        torch.testing.assert_close(out[name], expected_ig, atol=1e-5, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace", "ignore::torch.jit.TracerWarning")
def test_text_occlusion_runs_on_a_traced_model() -> None:
    model, tokens, card = _text_case()
    traced = torch.jit.trace(model, tokens)
    torch.testing.assert_close(
        attribute("occlusion", traced, tokens, TARGET, card),
        attribute("occlusion", model, tokens, TARGET, card), atol=1e-5, rtol=1e-4,
    )
    with pytest.raises(AttributionError, match="hooks"):
        attribute("ig", traced, tokens, TARGET, card)


def test_gradcam_needs_a_conv_layer_and_gan_gets_nothing() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert "nn.Conv2d" in available_methods(IMAGE_CARD, mlp, eager=True)["gradcam"]
    gan_card = AuditCard(task="gan", input_shape=[32], latent_dim=32)
    assert all(r is not None for r in available_methods(gan_card, mlp, eager=True).values())


class _TwoConv(nn.Module):
    """Names its first conv as the Grad-CAM layer, so the last conv is the wrong answer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10),
        )

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.body[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_gradcam_uses_the_named_layer_and_is_broadcast_over_channels() -> None:
    model, x, card = _image_case()
    cam = attribute("gradcam", model, x, _target(card), card)
    assert (cam >= 0).all(), "Grad-CAM is ReLU'd"
    torch.manual_seed(0)
    two = _TwoConv().eval()
    got = attribute("gradcam", two, x, _target(card), card)
    for layer, same in [(two.body[0], True), (two.body[3], False)]:
        ref = LayerGradCam(two, layer).attribute(x, target=_target(card), relu_attributions=True)
        ref = LayerAttribution.interpolate(ref, (8, 8), interpolate_mode="bilinear")
        assert torch.allclose(got, ref, atol=1e-6) is same
    rgb_card = card.updated(input_shape=[3, 8, 8])
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).eval()
    x3 = x.repeat(1, 3, 1, 1)
    out = attribute("gradcam", rgb, x3, _target(card), rgb_card)
    assert out.shape == x3.shape
    assert torch.equal(out[:, 0], out[:, 2])


@pytest.mark.parametrize("kind", list(CASES))
def test_mode_restored_eval_during_and_no_parameter_grads(kind: str) -> None:
    model, x, card = CASES[kind]()
    seen: list[bool] = []
    handle = model.register_forward_pre_hook(lambda m, _inp: seen.append(m.training))
    model.train()
    try:
        for method in sorted(EXPECTED[kind]):
            attribute(method, model, x, _target(card), card, n_steps=4)
    finally:
        handle.remove()
    assert seen and not any(seen), "attribution must run the model in eval mode"
    assert all(m.training for m in model.modules()), "train mode must be restored"
    assert all(p.grad is None for p in model.parameters()), "parameter gradients accumulated"
    model.eval()
    attribute("ig", model, x, _target(card), card, n_steps=4)
    assert not any(m.training for m in model.modules())


def test_bad_inputs_raise_clear_errors() -> None:
    model, x, card = _image_case()
    t = _target(card)
    with pytest.raises(ValueError, match="unknown attribution method 'lime'; known: saliency, ig"):
        attribute("lime", model, x, t, card)
    with pytest.raises(AttributionError, match=r"target class indices must lie in \[0, 10\)"):
        attribute("ig", model, x, torch.tensor([0, 1, 2, 10]), card)
    with pytest.raises(AttributionError, match="target must be int64"):
        attribute("ig", model, x, t[:2], card)
    with pytest.raises(AttributionError, match="input must be float"):
        attribute("ig", model, x[:, :, :4], t, card)
    with pytest.raises(AttributionError, match="return_delta"):
        attribute("saliency", model, x, t, card, return_delta=True)
    with pytest.raises(AttributionError, match="baseline shape"):
        attribute("ig", model, x, t, card, baseline=torch.zeros(2, 1, 8, 8))
    with pytest.raises(AttributionError, match="n_steps"):
        attribute("ig", model, x, t, card, n_steps=0)

    tab_model, tx, tab_card = _tabular_case()
    with pytest.raises(AttributionError, match="convolutional"):
        attribute("gradcam", tab_model, tx, TARGET, tab_card)
    text_model, tokens, text_card = _text_case()
    with pytest.raises(AttributionError, match="image models only"):
        attribute("guided-backprop", text_model, tokens, TARGET, text_card)
    with pytest.raises(AttributionError, match="LSTM"):
        attribute("deeplift", text_model, tokens, TARGET, text_card)
    with pytest.raises(AttributionError, match="int64 token ids"):
        attribute("ig", text_model, tokens.float(), TARGET, text_card)
    with pytest.raises(AttributionError, match="vocabulary size"):
        attribute("ig", text_model, tokens + 100, TARGET, text_card)


def test_global_importance_structure_and_values() -> None:
    attrs = torch.tensor([[1.0, -3.0, 0.5, 0.0], [-1.0, -1.0, 0.5, 0.0]])
    names = [f.name for f in FEATURES]
    rows = global_importance(attrs, names)
    json.dumps(rows)
    assert [r["feature"] for r in rows] == ["age", "amount", "channel", "foreign"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[0] == {"feature": "age", "mean_abs": 2.0, "mean_signed": -2.0, "rank": 1}
    assert rows[1]["mean_abs"] == 1.0 and rows[1]["mean_signed"] == 0.0
    with pytest.raises(AttributionError, match="feature names"):
        global_importance(attrs, names[:3])


def test_global_importance_on_real_tabular_attributions() -> None:
    model, x, card = _tabular_case()
    rows = global_importance(attribute("occlusion", model, x, TARGET, card), [f.name for f in FEATURES])
    assert len(rows) == 4 and all(r["mean_abs"] >= abs(r["mean_signed"]) for r in rows)
    assert [r["mean_abs"] for r in rows] == sorted((r["mean_abs"] for r in rows), reverse=True)


@pytest.mark.parametrize("kind", list(CASES))
def test_gallery_is_bounded_and_json_serialisable(kind: str) -> None:
    model, x, card = CASES[kind]()
    t = _target(card)
    attrs = {m: attribute(m, model, x, t, card, n_steps=4) for m in ["ig", "occlusion"]}
    with torch.no_grad():
        pred = model(x).argmax(1)
    items = gallery(attrs, x, t, pred, [3, 1, 0, 2], card, max_items=3)
    json.loads(json.dumps(items))
    assert [i["index"] for i in items] == [3, 1, 0]
    for item in items:
        i = item["index"]
        assert item["label"] == int(t[i]) and item["prediction"] == int(pred[i])
        assert item["label_name"] == card.class_names[int(t[i])]
        assert set(item["attributions"]) == {"ig", "occlusion"}
        ig = item["attributions"]["ig"]
        if kind == "image":
            assert len(item["input"]) == 8 and len(item["input"][0]) == 8
            assert len(ig) == 8 and len(ig[0]) == 8
            assert ig[2][5] == round(float(attrs["ig"][i, :, 2, 5].sum()), 4)
        elif kind == "text":
            keep = x[i] != 0
            assert item["input"] == [VOCAB[int(tok)] for tok in x[i][keep]]
            assert "<pad>" not in item["input"]
            assert len(ig) == len(item["input"]) == int(keep.sum())
        else:
            assert list(item["input"]) == [f.name for f in FEATURES]
            assert ig["amount"] == round(float(attrs["ig"][i, 0]), 4)
    with pytest.raises(AttributionError, match="outside"):
        gallery(attrs, x, t, pred, [4], card)


# ----------------------------------------------------------------------------- tabular encoded space


@pytest.fixture(scope="module")
def fraud_zoo() -> tuple[nn.Module, torch.Tensor, torch.Tensor, AuditCard]:
    """The committed zoo fraud MLP, 32 test rows and the scan's baseline (training mean, mode
    code for the categorical)."""
    from auditkit.data import load_data
    from auditkit.loading import load_model
    from tests.conftest import zoo_model_path

    model = load_model(zoo_model_path("fraud-mlp"), device="cpu")
    data = load_data(model.card.dataset or "")
    base = data.x_train.mean(0)
    for i, f in enumerate(model.card.features or []):
        if f.kind == "categorical":
            base[i] = np.bincount(data.x_train[:, i].astype(int)).argmax()
    x = model.to_input(data.x_test[:32])
    return model.module, x, torch.from_numpy(base.astype(np.float32)), model.card


def test_zoo_fraud_ig_attributes_the_categorical_feature_and_stays_complete(fraud_zoo) -> None:
    module, x, base, card = fraud_zoo
    names = [f.name for f in card.features]
    cat = names.index("merchant_category")
    t = torch.full((x.shape[0],), card.positive_index or 1)
    attr, delta = attribute("ig", module, x, t, card, baseline=base, n_steps=128, return_delta=True)
    assert attr.shape == x.shape
    # Rows whose category differs from the baseline's get a share; rows with the baseline's
    # category start and end the path at the same one-hot columns: exactly 0.
    differs = x[:, cat] != base[cat]
    assert differs.any() and (~differs).any()
    assert (attr[differs, cat] != 0).all()
    assert (attr[~differs, cat] == 0).all()
    assert attr[:, cat].abs().mean() > 0.1 * attr.abs().mean()
    # Completeness against the raw model: sum(attr) = f(x)_t - f(b)_t, and captum's delta is it.
    with torch.no_grad():
        gap = (module(x) - module(base[None])).gather(1, t[:, None]).squeeze(1)
    err = attr.sum(1) - gap
    torch.testing.assert_close(delta, err, atol=1e-4, rtol=0)
    rel = err.abs() / gap.abs().clamp_min(1e-6)
    assert float(rel.median()) < 0.01
    assert (err.abs() <= 0.05 * gap.abs() + 0.01).all()


def test_zoo_fraud_every_gradient_method_sees_the_categorical_feature(fraud_zoo) -> None:
    module, x, base, card = fraud_zoo
    cat = [f.name for f in card.features].index("merchant_category")
    t = torch.ones(x.shape[0], dtype=torch.int64)
    for method in ["saliency", "smoothgrad", "deeplift", "gradient-shap"]:
        a = attribute(method, module, x, t, card, baseline=base)
        assert a.shape == x.shape and torch.isfinite(a).all()
        assert a[:, cat].abs().max() > 0, method
    # DeepLIFT on a Linear/ReLU network is exact too: it sums to the gap.
    a = attribute("deeplift", module, x, t, card, baseline=base)
    with torch.no_grad():
        gap = module(x)[:, 1] - module(base[None])[0, 1]
    torch.testing.assert_close(a.sum(1), gap, atol=1e-4, rtol=1e-4)


def test_ig_completeness_on_zoo_fraud_measures_the_encoded_attribution(fraud_zoo) -> None:
    from auditkit.explain.quality import ig_completeness

    module, x, base, card = fraud_zoo
    t = torch.ones(x.shape[0], dtype=torch.int64)
    comp = ig_completeness(module, x, t, card, baseline=base, start_steps=64, max_steps=64)
    assert comp["median"] < 0.01


class _PlainMLP(nn.Sequential):
    """A tabular MLP without the encoded-space protocol (codes go in as plain numbers)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_model_without_encoded_space_is_attributed_in_raw_space_as_before() -> None:
    from captum.attr import IntegratedGradients, Saliency

    model, card = _PlainMLP().eval(), TABULAR_CARD
    x = _tabular_x(4, seed=3)
    base = torch.tensor([500.0, 40.0, 1.0, 0.0])
    got, delta = attribute("ig", model, x, TARGET, card, baseline=base, n_steps=16, return_delta=True)
    want, want_delta = IntegratedGradients(model).attribute(
        x, baselines=base.expand_as(x), target=TARGET, n_steps=16, return_convergence_delta=True
    )
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(delta, want_delta)
    # Raw space: a categorical code is a plain number here, so it gets a nonzero gradient.
    sal = attribute("saliency", model, x, TARGET, card)
    torch.testing.assert_close(sal, Saliency(model).attribute(x, target=TARGET, abs=True))


def test_encoded_feature_index_follows_encode_column_order() -> None:
    # Categoricals given out of feature order: encode() follows the dict's order, so must the index.
    model = TabularMLP(6, categorical={"4": 3, "1": 4}, log_features=[0], hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 6, generator=g) * 5
    x[:, 4] = torch.randint(0, 3, (16,), generator=g).float()
    x[:, 1] = torch.randint(0, 4, (16,), generator=g).float()
    model.fit_scaler(x)
    index = model.encoded_feature_index
    assert index == [0, 2, 3, 5, 4, 4, 4, 1, 1, 1, 1]
    z = model.encode(x)
    assert z.shape[1] == len(index)
    for j in range(6):
        changed: set[int] = set()
        steps = [1.0, 2.0, 3.0] if j in (1, 4) else [0.5]
        for step in steps:
            moved = x.clone()
            moved[:, j] = (x[:, j] + step) % 4 if j == 1 else (x[:, j] + step) % 3 if j == 4 else x[:, j] + step
            changed |= set(torch.nonzero((model.encode(moved) != z).any(0)).flatten().tolist())
        assert changed == {k for k, i in enumerate(index) if i == j}, j
    torch.testing.assert_close(model.forward_encoded(z), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_tabular_mlp_state_dict_unchanged_and_still_scriptable() -> None:
    torch.manual_seed(0)
    model = TabularMLP(4, categorical={"2": 3}, log_features=[0], hidden=16)
    model.fit_scaler(_tabular_x(128, seed=2))
    model, x = model.eval(), _tabular_x(4, seed=3)
    assert set(model.state_dict()) == {
        "mean", "std", "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias",
    }
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x))
    torch.testing.assert_close(scripted.forward_encoded(scripted.encode(x)), model(x))
    assert scripted.encoded_feature_index == model.encoded_feature_index
