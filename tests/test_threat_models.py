"""Threat models beyond pixels, on the committed zoo models: constrained tabular evasion
(fraud-mlp), word substitution and embedding PGD (lstm-reviews), discriminator attacks
(gan-digits). Small subsamples keep every test to seconds."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from auditkit import zoo
from auditkit.attacks.discriminator import attack_discriminator, discriminator_attack
from auditkit.attacks.tabular import change_cost, tabular_attack, valid_points
from auditkit.attacks.text import (
    NOT_FLIPPED,
    embedding_space_attack,
    greedy_substitution,
    neighbour_candidates,
    role_preserving,
    token_substitution_attack,
)
from auditkit.data import load_data
from auditkit.data.reviews import label_preserving_roles, sentiment_rule

torch.set_num_threads(1)

BUDGETS = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]


# ----------------------------------------------------------------------------- tabular


class Recorder(nn.Module):
    """The real model, recording every input it is queried on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


@pytest.fixture(scope="module")
def fraud():
    """fraud-mlp, its card and 72 rows: 56 true positives, 8 missed frauds, 8 legit rows."""
    model, card = zoo.get_model("fraud-mlp")
    model.eval()
    data = load_data("fraud")
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    with torch.no_grad():
        pred = model(x).argmax(1)
    tp = ((y == 1) & (pred == 1)).nonzero().squeeze(1)[:56]
    fn = ((y == 1) & (pred == 0)).nonzero().squeeze(1)[:8]
    legit = (y == 0).nonzero().squeeze(1)[:8]
    idx = torch.cat([legit, fn, tp])
    return model, card, x[idx], y[idx], len(tp)


@pytest.fixture(scope="module")
def fraud_result(fraud):
    model, card, x, y, _ = fraud
    rec = Recorder(model)
    result = tabular_attack(rec, x, y, card, budgets=BUDGETS, steps=30)
    return result, torch.cat(rec.seen)


def card_ok(x: Tensor, card) -> Tensor:
    """Independent check of the card's per-feature constraints, bool ``[N]``."""
    ok = torch.ones(x.shape[0], dtype=torch.bool)
    for j, f in enumerate(card.features):
        col = x[:, j].double()
        ok &= (col >= f.min) & (col <= f.max)
        if f.kind != "continuous":
            ok &= col == col.round()
        if f.kind == "binary":
            ok &= (col == 0) | (col == 1)
        if f.kind == "categorical":
            ok &= (col >= 0) & (col < len(f.categories))
    return ok


def test_every_query_and_every_returned_point_respects_the_card(fraud, fraud_result):
    model, card, x, y, n_tp = fraud
    result, seen = fraud_result
    assert result["n_attacked"] == n_tp and result["n_positive"] == 64
    # Every point the model was ever queried on is valid, and its fixed features are those of
    # one of the original rows.
    assert seen.shape[0] > x.shape[0] and bool(card_ok(seen, card).all())
    fixed = [j for j, f in enumerate(card.features) if not f.changeable]
    originals = {tuple(r) for r in x[:, fixed].tolist()}
    assert all(tuple(r) in originals for r in seen[:, fixed].tolist())
    # Every returned point against its own original.
    names = [f.name for f in card.features]
    for e in result["cheapest"]:
        x0, xa = x[e["index"]], torch.tensor(e["x_adv"], dtype=x.dtype)
        assert bool(card_ok(xa[None], card)[0]) and bool(valid_points(xa[None], x0[None], card)[0])
        assert torch.equal(xa[fixed], x0[fixed])
        if not e["success"]:
            assert torch.equal(xa, x0) and e["changes"] == []
            continue
        changed = {names[j] for j in (xa != x0).nonzero().squeeze(1).tolist()}
        assert changed == {c["feature"] for c in e["changes"]} and changed
        assert abs(e["cost"] - sum(c["cost"] for c in e["changes"])) < 1e-9
        assert abs(e["cost"] - float(change_cost(xa[None], x0[None], card)[0])) < 1e-9
        for c in e["changes"]:
            if c["kind"] == "categorical":
                assert c["to"] in card.features[names.index(c["feature"])].categories
    json.dumps(result)  # plain JSON


def test_evasion_curve_is_monotone_and_cheapest_changes_evade(fraud, fraud_result):
    model, card, x, y, n_tp = fraud
    result, _ = fraud_result
    values = [p["evasion"]["value"] for p in result["curve"]]
    assert [p["budget"] for p in result["curve"]] == sorted(BUDGETS)
    assert values == sorted(values) and values[0] == 0.0  # budget 0 changes nothing
    assert values[-1] > 0.5  # the zoo model is not robust to cheap changes
    for p in result["curve"]:
        lo, hi = p["evasion"]["ci_low"], p["evasion"]["ci_high"]
        assert lo - 1e-12 <= p["evasion"]["value"] <= hi + 1e-12 and p["evasion"]["n"] == n_tp
    wins = [e for e in result["cheapest"] if e["success"]]
    xa = torch.tensor([e["x_adv"] for e in wins], dtype=x.dtype)
    with torch.no_grad():
        assert bool((model(xa).argmax(1) != card.positive_index).all())
    # The curve counts exactly the cheapest changes within each budget.
    for p in result["curve"]:
        within = sum(e["cost"] <= p["budget"] for e in wins)
        assert within == round(p["evasion"]["value"] * n_tp)
    # Feature table: fractions over the successes, changeable features only.
    table = {r["feature"]: r for r in result["feature_table"]}
    assert set(table) == set(result["changeable_features"])
    for name, r in table.items():
        assert r["n_changed"] == sum(any(c["feature"] == name for c in e["changes"]) for e in wins)


def test_integer_changes_are_whole_units_within_budget(fraud):
    """Only the velocity (integer 0..20, one unit costs 0.05) may change: no budget below one
    unit can evade, and every change is a whole number of transactions."""
    model, card, x, y, _ = fraud
    feats = [f.model_copy(update={"changeable": f.name == "txn_count_last_hour"})
             for f in card.features]
    only_velocity = card.model_copy(update={"features": feats})
    result = tabular_attack(model, x, y, only_velocity, budgets=[0.02, 0.049, 0.5, 1.0], steps=20)
    curve = {p["budget"]: p["evasion"]["value"] for p in result["curve"]}
    assert curve[0.02] == 0.0 and curve[0.049] == 0.0
    for e in result["cheapest"]:
        for c in e["changes"]:
            assert c["feature"] == "txn_count_last_hour" and isinstance(c["to"], int)
            assert abs(e["cost"] - abs(c["to"] - c["from"]) / 20) < 1e-12


def test_nothing_changeable_means_no_evasion(fraud):
    model, card, x, y, n_tp = fraud
    frozen = card.model_copy(update={
        "features": [f.model_copy(update={"changeable": False}) for f in card.features]})
    result = tabular_attack(model, x, y, frozen, budgets=[0.1, 1.0, 10.0], steps=5)
    assert result["n_attacked"] == n_tp
    assert all(p["evasion"]["value"] == 0.0 for p in result["curve"])
    assert result["median_cost"] is None and result["changeable_features"] == []


def test_change_cost_units(fraud):
    _, card, x, _, _ = fraud
    x0 = x[:1].clone()
    x0[0, 0], x0[0, 2], x0[0, 4] = 950.0, 5.0, 1.0  # amount, electronics, card present
    xa = x0.clone()
    xa[0, 0], xa[0, 2], xa[0, 4] = 420.0, 0.0, 0.0  # grocery, card not present
    assert float(change_cost(xa, x0, card)[0]) == pytest.approx(530.0 / 9999.5 + 0.2)
    assert float(change_cost(xa, x0, card, discrete_cost=0.5)[0]) == pytest.approx(530.0 / 9999.5 + 1.0)


def test_tabular_bad_inputs(fraud):
    model, card, x, y, _ = fraud
    with pytest.raises(ValueError, match="budgets"):
        tabular_attack(model, x, y, card, budgets=[0.1, -0.5])
    with pytest.raises(ValueError, match="budgets"):
        tabular_attack(model, x, y, card, budgets=[])
    with pytest.raises(ValueError, match="features"):
        tabular_attack(model, x, y, card.model_copy(update={"features": None}))
    with pytest.raises(ValueError, match="columns"):
        tabular_attack(model, x[:, :5], y, card)
    bad = x.clone()
    bad[0, 1] = 3.5  # hour must be whole
    with pytest.raises(ValueError, match="violates the card"):
        tabular_attack(model, bad, y, card)
    with pytest.raises(ValueError, match="positive_class"):
        tabular_attack(model, x, y, card.model_copy(update={"positive_class": None}))


# ----------------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def reviews():
    model, card = zoo.get_model("lstm-reviews")
    model.eval()
    data = load_data("reviews")
    return model, card, torch.tensor(data.x_test[:64]), torch.tensor(data.y_test[:64])


@pytest.fixture(scope="module")
def text_result(reviews):
    model, card, tokens, y = reviews
    return token_substitution_attack(
        model, tokens, y, card, max_substitutions=[1, 2, 3],
        allowed=role_preserving(label_preserving_roles(same_part_of_speech=False)),
        label_oracle=lambda words: sentiment_rule(words)[0])


def test_robust_accuracy_curves(reviews, text_result):
    model, card, tokens, y = reviews
    with torch.no_grad():
        clean = float((model(tokens).argmax(1) == y).float().mean())
    r = text_result
    assert r["clean_accuracy"]["value"] == clean
    for run in ("unconstrained", "label_preserving"):
        curve = r[run]["curve"]
        assert [p["k"] for p in curve] == [0, 1, 2, 3]
        acc = [p["robust_accuracy"]["value"] for p in curve]
        assert acc[0] == clean and acc == sorted(acc, reverse=True)
    un = [p["robust_accuracy"]["value"] for p in r["unconstrained"]["curve"]]
    lp = [p["robust_accuracy"]["value"] for p in r["label_preserving"]["curve"]]
    assert all(a <= b for a, b in zip(un, lp))
    assert un[-1] < clean  # neighbours flip this model's predictions
    # The label-preserving filter keeps the generator's label on every flip it finds.
    if r["label_preserving"]["n_flipped"]:
        assert r["label_preserving"]["true_label_changed"]["value"] == 0.0
    json.dumps(r)


def test_examples_decode_and_respect_the_candidates(reviews, text_result):
    _, card, tokens, y = reviews
    for run in ("unconstrained", "label_preserving"):
        cands = text_result["candidates" + ("" if run == "unconstrained" else "_" + run)]
        for e in text_result[run]["examples"]:
            assert isinstance(e["original"], str) and isinstance(e["adversarial"], str)
            assert "<pad>" not in e["adversarial"] and "->" in e["marked"]
            assert e["prediction_after"] != e["label"] and 1 <= len(e["substitutions"]) <= 3
            for s in e["substitutions"]:
                assert s["to"] in cands[s["from"]]
    allowed = role_preserving(label_preserving_roles(same_part_of_speech=False))
    for words in text_result["candidates_label_preserving"].values():
        assert "<pad>" not in words and "<unk>" not in words
    for w, subs in text_result["candidates_label_preserving"].items():
        assert all(allowed(w, s) for s in subs) and subs
        assert w not in ("not", "never", "but")


def test_greedy_substitution_never_touches_pads(reviews):
    model, card, tokens, y = reviews
    cand = neighbour_candidates(model.embedding.weight, card, 8)
    pad, unk = card.text.pad_id, card.text.unk_id
    assert bool((cand[[pad, unk]] == -1).all())
    assert not bool(((cand == pad) | (cand == unk)).any())
    assert not bool((cand == torch.arange(len(card.text.vocab)).unsqueeze(1)).any())
    adv, flipped = greedy_substitution(model, tokens, y, cand, max_substitutions=3)
    is_pad = tokens == pad
    assert torch.equal(adv[is_pad], tokens[is_pad]) and not bool((adv[~is_pad] == pad).any())
    diff = adv != tokens
    assert int(diff.sum(1).max()) <= 3
    for i, j in diff.nonzero().tolist():
        assert int(adv[i, j]) in cand[tokens[i, j]].tolist()
    with torch.no_grad():
        pred = model(adv).argmax(1)
    hit = (flipped > 0)
    assert bool((pred[hit] != y[hit]).all()) and bool((diff[hit].sum(1) == flipped[hit]).all())
    assert bool((flipped[~hit] == NOT_FLIPPED).all())  # the model is right on all clean ones


def test_label_preserving_substitutions_keep_the_rule_label(reviews):
    model, card, tokens, y = reviews
    vocab = card.text.vocab
    for pos in (False, True):
        cand = neighbour_candidates(model.embedding.weight, card, 8,
                                    role_preserving(label_preserving_roles(same_part_of_speech=pos)))
        adv, _ = greedy_substitution(model, tokens, y, cand, max_substitutions=3)
        for i in range(len(y)):
            words = [vocab[t] for t in adv[i].tolist() if t != card.text.pad_id]
            assert sentiment_rule(words)[0] == int(y[i])


def test_embedding_space_attack(reviews):
    model, card, tokens, y = reviews
    r = embedding_space_attack(model, tokens, y, card, [0.0, 0.5, 4.0, 1.0], steps=10)
    assert [p["eps"] for p in r["curve"]] == [0.0, 0.5, 1.0, 4.0]
    acc = [p["robust_accuracy"]["value"] for p in r["curve"]]
    with torch.no_grad():
        clean = float((model(tokens).argmax(1) == y).float().mean())
    assert acc[0] == clean and acc == sorted(acc, reverse=True) and acc[-1] < 0.5
    assert "not a realisable text attack" in r["note"]
    json.dumps(r)


def test_text_bad_inputs(reviews):
    model, card, tokens, y = reviews
    with pytest.raises(ValueError, match="int64"):
        token_substitution_attack(model, tokens.float(), y, card)
    with pytest.raises(ValueError, match="text"):
        token_substitution_attack(model, tokens, y, card.model_copy(update={"text": None}))
    with pytest.raises(ValueError, match="embedding"):
        token_substitution_attack(nn.Linear(16, 2), tokens, y, card)
    with pytest.raises(ValueError, match="outside"):
        token_substitution_attack(model, tokens + 1000, y, card)
    with pytest.raises(ValueError, match="eps"):
        embedding_space_attack(model, tokens, y, card, [-1.0])
    with pytest.raises(ValueError, match="max_substitutions"):
        token_substitution_attack(model, tokens, y, card, max_substitutions=[-1])


# ----------------------------------------------------------------------------- discriminator


@pytest.fixture(scope="module")
def gan():
    model, card = zoo.get_model("gan-digits")
    model.eval()
    real = torch.tensor(load_data("digits").x_test[:32])
    with torch.no_grad():
        fake = model(torch.randn(32, card.latent_dim, generator=torch.Generator().manual_seed(0)))
    return model, real, fake


def test_discriminator_curve(gan):
    model, real, fake = gan
    r = discriminator_attack(model, real, fake, [0.1, 0.0, 0.02], steps=10)
    with torch.no_grad():
        clean_real = float((model.discriminator(real) > 0).float().mean())
        clean_fake = float((model.discriminator(fake) <= 0).float().mean())
    c = r["curve"]
    assert [p["eps"] for p in c] == [0.0, 0.02, 0.1]
    assert c[0]["real_judged_real"]["value"] == clean_real
    assert c[0]["fake_judged_fake"]["value"] == clean_fake
    for key in ("real_judged_real", "fake_judged_fake"):
        v = [p[key]["value"] for p in c]
        assert v == sorted(v, reverse=True) and v[-1] < v[0]
        assert all(p[key]["n"] == 32 for p in c)
    json.dumps(r)


def test_discriminator_points_within_eps_and_bounds(gan):
    model, real, fake = gan
    for x, judged in ((real, 1), (fake, 0)):
        out = attack_discriminator(model, x, judged, eps=0.05, steps=10)
        assert float((out.x_adv - x).abs().max()) <= 0.05 + 1e-6
        assert float(out.x_adv.min()) >= 0.0 and float(out.x_adv.max()) <= 1.0
        with torch.no_grad():
            call_real = model.discriminator(out.x_adv).squeeze(1) > 0
        assert torch.equal(out.success, call_real != bool(judged))
        assert bool(out.success.any())


def test_discriminator_bad_inputs(gan):
    model, real, fake = gan
    with pytest.raises(ValueError, match="eps_list"):
        discriminator_attack(model, real, fake, [])
    with pytest.raises(ValueError, match="eps"):
        discriminator_attack(model, real, fake, [-0.1])
    with pytest.raises(ValueError, match="judged"):
        attack_discriminator(model, real, 2, eps=0.1)
    with pytest.raises(ValueError, match="bounds"):
        discriminator_attack(model, real * 3, fake, [0.1])
