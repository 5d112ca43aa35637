"""GAN checks: Fréchet distance, class coverage, memorisation, discriminator and latent
attributions, and the ``gan`` scan check on the committed zoo GAN."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from auditkit.data import load_data
from auditkit.generative import metrics as gm
from auditkit.generative.check import GANCheck, load_judge
from auditkit.loading import load_model
from auditkit.zoo import build_architecture, get_model
from auditkit.zoo.recipes import gan_samples
from tests.conftest import zoo_model_path


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def judge() -> nn.Module:
    zoo_model_path("cnn-digits")
    return get_model("cnn-digits")[0]


@pytest.fixture(scope="module")
def gan() -> nn.Module:
    zoo_model_path("gan-digits")
    return get_model("gan-digits")[0].eval()


@pytest.fixture(scope="module")
def random_gan() -> nn.Module:
    torch.manual_seed(0)
    return build_architecture("gan-digits", latent_dim=32, width=64)


# ----------------------------------------------------------------------------- Fréchet distance


def test_frechet_identical_sets_is_zero_and_symmetric() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 1.0
    assert gm.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert gm.frechet_distance(a, b) == pytest.approx(gm.frechet_distance(b, a), rel=1e-6)
    assert gm.frechet_distance(a, b) > 1.0


def test_frechet_mean_shift_matches_closed_form() -> None:
    # Equal covariances: the distance is |mu_a - mu_b|^2, exactly for a shifted copy.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 5))
    previous = 0.0
    for size in (0.5, 1.0, 2.0):
        shift = size * np.arange(1, 6)
        d = gm.frechet_distance(a, a + shift)
        assert d == pytest.approx(float(shift @ shift), rel=1e-6)
        assert d > previous
        previous = d


def test_frechet_scaled_copy_matches_closed_form() -> None:
    # b = 2a: S_b = 4 S_a, so d = |mu_a|^2 + tr(S_a) + 4 tr(S_a) - 2 tr(2 S_a) = |mu_a|^2 + tr(S_a).
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4)) + 0.3
    mu = a.mean(0)
    expected = float(mu @ mu + np.trace(np.cov(a, rowvar=False)))
    assert gm.frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)


def test_frechet_rank_deficient_covariances_stay_finite() -> None:
    # More dimensions than samples and dead (constant) features, as ReLU features have.
    rng = np.random.default_rng(3)
    a = np.zeros((10, 40))
    a[:, :20] = rng.normal(size=(10, 20))
    b = np.zeros((12, 40))
    b[:, :20] = rng.normal(size=(12, 20)) + 0.5
    d = gm.frechet_distance(a, b)
    assert math.isfinite(d) and d > 0
    assert gm.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros(5), np.zeros((5, 2)), r"\[N, D\]"),
        (np.zeros((1, 3)), np.zeros((5, 3)), "N >= 2"),
        (np.zeros((4, 3)), np.zeros((4, 2)), "feature sizes differ"),
        (np.full((4, 3), np.nan), np.zeros((4, 3)), "NaN"),
    ],
)
def test_frechet_bad_input(a: np.ndarray, b: np.ndarray, match: str) -> None:
    with pytest.raises(gm.GenerativeInputError, match=match):
        gm.frechet_distance(a, b)


def test_sample_quality_real_data_near_reference_random_gan_far(judge, digits, random_gan) -> None:
    real_as_samples = digits.x_train[::3]
    q = gm.sample_quality(judge, real_as_samples, digits.x_test, digits.x_train, seed=0)
    assert q["n_samples"] == q["n_train_reference"] == len(real_as_samples)
    assert q["feature_dim"] == 128
    # Real training digits are about as far from test as the reference (FID is noisy at n=449).
    assert 0.5 < q["fid_ratio"] < 2.0 and q["fid_real_vs_real_std"] > 0
    bad = gm.sample_quality(judge, gan_samples(random_gan, 300, seed=0), digits.x_test, digits.x_train)
    assert bad["fid_ratio"] > 5
    with pytest.raises(gm.GenerativeInputError, match="embed"):
        gm.sample_quality(nn.Flatten(), real_as_samples, digits.x_test, digits.x_train)
    with pytest.raises(gm.GenerativeInputError, match="same per-sample shape"):
        gm.sample_quality(judge, real_as_samples[:, :, :4], digits.x_test, digits.x_train)
    with pytest.raises(gm.GenerativeInputError, match="n_reference"):
        gm.sample_quality(judge, real_as_samples, digits.x_test, digits.x_train, n_reference=0)


# ----------------------------------------------------------------------------- coverage


class FirstPixelJudge(nn.Module):
    """A constructed judge: class ``round(10 * x[0, 0, 0])``, with confidence ~1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = 10 * x[:, 0, 0, 0:1]
        return -100 * (v - torch.arange(10.0)) ** 2


def _images_of_classes(classes: list[int]) -> torch.Tensor:
    x = torch.zeros(len(classes), 1, 8, 8)
    x[:, 0, 0, 0] = torch.tensor(classes, dtype=torch.float32) / 10
    return x


def test_class_coverage_on_constructed_judge() -> None:
    judge = FirstPixelJudge()
    uniform = gm.class_coverage(judge, _images_of_classes(list(range(10)) * 5), 10)
    assert uniform["histogram"] == [5] * 10
    assert uniform["entropy"] == pytest.approx(1.0)
    assert uniform["classes_covered"] == 10 and not uniform["mode_collapse"]
    assert uniform["confident_fraction"] == 1.0

    half = gm.class_coverage(judge, _images_of_classes([0, 1, 2, 3, 4] * 10), 10)
    assert half["entropy"] == pytest.approx(math.log(5) / math.log(10))
    assert half["missing_classes"] == [5, 6, 7, 8, 9] and half["mode_collapse"]

    # All classes present, but one dominates: entropy below 0.8 flags it.
    skewed = gm.class_coverage(judge, _images_of_classes([0] * 200 + list(range(10)) * 3), 10)
    assert skewed["classes_covered"] == 10
    assert skewed["entropy"] < 0.8 and skewed["mode_collapse"]
    assert skewed["largest_class"] == 0 and skewed["largest_share"] == pytest.approx(203 / 230)

    # A stray sample (under 1 % of the confident ones) does not cover its class.
    stray = gm.class_coverage(judge, _images_of_classes(list(range(9)) * 20 + [9]), 10)
    assert stray["histogram"][9] == 1 and stray["missing_classes"] == [9] and stray["mode_collapse"]


def test_class_coverage_flags_collapsed_generator_not_real_digits(judge, digits) -> None:
    one_digit = np.repeat(digits.x_train[:1], 200, axis=0)  # always the same training digit
    collapsed = gm.class_coverage(judge, one_digit, 10)
    assert collapsed["mode_collapse"] and collapsed["classes_covered"] == 1
    assert collapsed["entropy"] == pytest.approx(0.0, abs=1e-9)
    assert collapsed["largest_share"] == 1.0

    diverse = gm.class_coverage(judge, digits.x_test, 10)
    assert not diverse["mode_collapse"]
    assert diverse["classes_covered"] == 10 and diverse["entropy"] > 0.95
    assert diverse["confident_fraction"] > 0.9


def test_class_coverage_bad_input(judge, digits) -> None:
    with pytest.raises(gm.GenerativeInputError, match="outputs 10 classes but n_classes is 3"):
        gm.class_coverage(judge, digits.x_test[:8], 3)
    with pytest.raises(gm.GenerativeInputError, match="confidence"):
        gm.class_coverage(judge, digits.x_test[:8], 10, confidence=1.5)
    with pytest.raises(gm.GenerativeInputError, match="NaN"):
        gm.class_coverage(judge, np.full((2, 1, 8, 8), np.nan, np.float32), 10)


# ----------------------------------------------------------------------------- memorisation


def test_memorisation_flags_copies_of_training_images(digits) -> None:
    rng = np.random.default_rng(0)
    idx = rng.choice(len(digits.x_train), 300, replace=False)
    copies = np.clip(digits.x_train[idx] + rng.normal(0, 0.01, (300, 1, 8, 8)), 0, 1).astype(np.float32)
    m = gm.memorisation(copies, digits.x_train, digits.x_test)
    assert m["memorisation_suspected"]
    assert m["relative_ratio"] < 0.2 and m["near_copy_fraction"] > 0.9
    pairs = m["closest_pairs"]
    assert len(pairs) == 4 and [p["distance"] for p in pairs] == sorted(p["distance"] for p in pairs)
    assert all(p["train"] == int(idx[p["sample"]]) for p in pairs)  # the copied image is found


def test_memorisation_does_not_flag_held_out_real_images(digits) -> None:
    # Half of test as "samples", the other half as the test reference: new real digits.
    samples, test = digits.x_test[:225], digits.x_test[225:]
    m = gm.memorisation(samples, digits.x_train, test)
    assert not m["memorisation_suspected"]
    assert m["ratio"] < 0.9  # the raw ratio is biased by the pool sizes (1347 train vs 225 test)
    assert 0.8 < m["relative_ratio"] < 1.25  # relative to real data it is not
    assert m["near_copy_fraction"] <= 0.1
    # Test images themselves have distance 0 to the test set: no ratio, and not memorised.
    same = gm.memorisation(digits.x_test, digits.x_train, digits.x_test)
    assert same["ratio"] is None and not same["memorisation_suspected"]


def test_memorisation_flags_a_minority_of_copies(digits) -> None:
    # 20% verbatim copies hidden among new digits: the median ratio stays ~1, near-copies flag it.
    samples = np.concatenate([digits.x_test[:180], digits.x_train[:45]])
    m = gm.memorisation(samples, digits.x_train, digits.x_test[225:])
    assert m["relative_ratio"] > 0.8
    assert m["near_copy_fraction"] > 0.15 and m["memorisation_suspected"]


def test_memorisation_bad_input(digits) -> None:
    with pytest.raises(gm.GenerativeInputError, match="same per-sample shape"):
        gm.memorisation(digits.x_test[:, :, :4], digits.x_train, digits.x_test)
    with pytest.raises(gm.GenerativeInputError, match="at least 2"):
        gm.memorisation(digits.x_test, digits.x_train, digits.x_test[:1])
    with pytest.raises(gm.GenerativeInputError, match="non-empty"):
        gm.memorisation(digits.x_test[:0], digits.x_train, digits.x_test)


# ----------------------------------------------------------------------------- discriminator


def test_discriminator_attributions_on_zoo_gan(gan, digits) -> None:
    fake = gan_samples(gan, 64, seed=0)
    out = gm.discriminator_attributions(gan, digits.x_test[:128], fake, seed=0, n_explain=16)
    r = out["realness"]
    assert r["mean_on_real"] > r["mean_on_fake"]  # a trained discriminator prefers real digits
    assert r["auc_real_vs_fake"] > 0.6
    assert out["methods"] == ["saliency", "ig"] and out["skipped"] == {}
    for group in ("real", "fake"):
        g = out[group]
        assert len(g["examples"]) == 4
        for m in ("saliency", "ig"):
            amap = np.array(g["mean_abs_map"][m], dtype=float)
            assert amap.shape == (8, 8) and np.isfinite(amap).all() and amap.max() > 0
            assert np.array(g["examples"][0]["maps"][m], dtype=float).shape == (8, 8)
    json.dumps(out, allow_nan=False)


def test_discriminator_attributions_bad_input(gan, digits) -> None:
    with pytest.raises(gm.GenerativeInputError, match="unknown attribution method"):
        gm.discriminator_attributions(gan, digits.x_test[:4], digits.x_test[:4], methods=["nope"])
    with pytest.raises(gm.GenerativeInputError, match="no .discriminator"):
        gm.discriminator_attributions(nn.Linear(2, 2), digits.x_test[:4], digits.x_test[:4])


# ----------------------------------------------------------------------------- latent space


def test_latent_attributions_top_dims_change_class_more(gan, judge) -> None:
    out = gm.latent_attributions(gan, judge, 64, seed=0)
    attr = np.array(out["mean_abs_attribution"], dtype=float)
    assert attr.shape == (32,) and np.isfinite(attr).all() and attr.max() > 0
    assert len(out["mean_attribution"]) == 32 and len(out["top_dims"]) == 4
    assert out["top_dims"] == [int(i) for i in np.argsort(-attr, kind="stable")[:4]]
    assert out["flip_rate_top"] > out["flip_rate_random"] and out["top_changes_more"]
    assert not gan.generator.training and not judge.training  # eval mode kept
    again = gm.latent_attributions(gan, judge, 64, seed=0)
    assert again == out  # seeded: same numbers


def test_latent_attributions_random_gan_and_bad_input(random_gan, judge) -> None:
    random_gan.train()
    out = gm.latent_attributions(random_gan, judge, 16, seed=1, top_k=2, n_random=2, n_steps=8)
    assert len(out["mean_abs_attribution"]) == 32
    assert all(math.isfinite(v) for v in out["mean_abs_attribution"])
    assert random_gan.training and random_gan.generator.training  # train mode restored
    with pytest.raises(gm.GenerativeInputError, match="top_k"):
        gm.latent_attributions(random_gan, judge, 4, top_k=32)
    with pytest.raises(gm.GenerativeInputError, match="n_samples"):
        gm.latent_attributions(random_gan, judge, 0)
    with pytest.raises(gm.GenerativeInputError, match="no .generator"):
        gm.latent_attributions(judge, judge, 4)


# ----------------------------------------------------------------------------- the scan check


def _walk_numbers(obj: Any) -> list[float]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _walk_numbers(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _walk_numbers(x)]
    return [obj] if isinstance(obj, float) else []


@pytest.fixture(scope="module")
def gan_scan():
    from auditkit.scanning import scan

    # Only the checks this test needs: others are exercised (and timed) in their own tests.
    return scan(zoo_model_path("gan-digits"), samples=64, progress=False, only=["gan", "performance"])


def test_scan_gan_section_has_all_parts(gan_scan) -> None:
    section = gan_scan.sections["gan"]
    assert section.status == "ok", section.reason
    data = section.data
    assert data["n_samples"] == 256 and data["skipped"] == {}
    assert data["judge"] == {"name": "cnn-digits", "available": True, "reason": None}
    for part in ("quality", "coverage", "memorisation", "discriminator", "latent", "sample_grid"):
        assert part in data, part
    assert data["quality"]["fid_ratio"] < 5
    assert not data["coverage"]["mode_collapse"]
    assert not data["memorisation"]["memorisation_suspected"]
    grid = data["sample_grid"]
    assert len(grid) == 16
    assert np.array(grid[0]["image"], dtype=float).shape == (8, 8)
    assert all(0 <= g["prediction"] < 10 and 0 < g["confidence"] <= 1 for g in grid)
    assert np.array(data["memorisation"]["closest_pairs"][0]["train_image"], dtype=float).shape == (8, 8)
    json.dumps(data, allow_nan=False)
    assert all(math.isfinite(v) for v in _walk_numbers(data))
    # Findings agree with the data they summarise.
    titles = {f.title for f in section.findings}
    low_conf = data["coverage"]["confident_fraction"] < 0.8
    assert ("Many generated samples are unrecognisable" in titles) == low_conf
    assert all(f.severity != "high" for f in section.findings)
    # Classifier checks do not apply to a GAN.
    assert gan_scan.sections["performance"].status == "not-applicable"


def test_scan_cnn_reports_gan_check_skipped() -> None:
    from auditkit.scanning import scan

    result = scan(zoo_model_path("cnn-digits"), samples=16, progress=False, only=["gan"])
    section = result.sections["gan"]
    assert section.status == "not-applicable"
    assert "does not apply to task image-classification" in (section.reason or "")


def test_gan_check_without_judge_runs_the_rest(monkeypatch, tmp_path: Path, digits) -> None:
    from auditkit.scanning import scan

    model = load_model(zoo_model_path("gan-digits"))
    monkeypatch.setenv("AUDITKIT_ZOO_DIR", str(tmp_path))  # no judge artifact there
    result = scan(model, digits, samples=16, progress=False, only=["gan"])
    data = result.sections["gan"].data
    assert result.sections["gan"].status == "ok"
    assert set(data["skipped"]) == {"quality", "coverage", "latent"}
    assert "cnn-digits" in data["skipped"]["quality"] and "missing" in data["skipped"]["quality"]
    assert "memorisation" in data and "discriminator" in data
    assert "quality" not in data and data["sample_grid"][0]["prediction"] is None
    json.dumps(data, allow_nan=False)


def test_load_judge_by_dataset() -> None:
    judge, name, reason = load_judge("digits", [1, 8, 8])
    assert judge is not None and name == "cnn-digits" and reason is None
    for spec in ("fraud", "npz:/data/faces.npz", None):
        judge, name, reason = load_judge(spec, [1, 8, 8])
        assert judge is None and "no judge classifier" in (reason or "")
    judge, _, reason = load_judge("digits", [3, 32, 32])
    assert judge is None and "takes inputs" in (reason or "")


def test_gan_check_skips_a_gan_without_generator_module() -> None:
    from auditkit.checks import ScanConfig, ScanContext

    model = load_model(zoo_model_path("gan-digits"))
    model.module = nn.Sequential(nn.Linear(32, 64))  # like an exported program: no submodules
    ctx = ScanContext(model=model, data=load_data("digits"), config=ScanConfig(), eval_index=np.arange(4))
    reason = GANCheck().skip_reason(ctx)
    assert reason is not None and ".generator" in reason and ".discriminator" in reason
