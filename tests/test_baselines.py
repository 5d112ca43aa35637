"""Classical baselines: pipelines per task, the on-disk cache, bad tabular cards, the paired
tests, the constrained tabular attack and the full ``baselines`` check in a scan."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import joblib
import numpy as np
import pytest
import torch

import auditkit
from auditkit.baselines import (
    BaselineError,
    FittedBaseline,
    baseline_names,
    build_pipeline,
    fit_baselines,
    parameter_count,
)
from auditkit.baselines.compare import (
    SklearnModule,
    constrained_decision_attack,
    decision_attack_l2,
    paired_test,
    permutation_importances,
    pr_auc_difference,
    quality_and_calibration,
    robustness_summary,
    tabular_distance,
    tabular_scale,
    word_occlusion_importance,
)
from auditkit.baselines.models import encoded_feature_index, tabular_encoder
from auditkit.card import AuditCard
from auditkit.data import load_data
from auditkit.data.base import AuditData
from auditkit.loading import load_model
from auditkit.results import strip_timings, to_jsonable
from tests.conftest import zoo_model_path


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private AUDITKIT_CACHE_DIR for this module (fits are shared between its tests)."""
    root = tmp_path_factory.mktemp("auditkit-cache")
    old = os.environ.get("AUDITKIT_CACHE_DIR")
    os.environ["AUDITKIT_CACHE_DIR"] = str(root)
    yield root
    if old is None:
        del os.environ["AUDITKIT_CACHE_DIR"]
    else:
        os.environ["AUDITKIT_CACHE_DIR"] = old


def _card(zoo: str) -> AuditCard:
    return load_model(zoo_model_path(zoo)).card


def _subsampled(data: AuditData, n: int, seed: int = 0) -> AuditData:
    """``data`` with at most ``n`` training rows (stratified enough: every class kept)."""
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(data.y_train == c),
                                              max(2, int(n * (data.y_train == c).mean())), replace=False)
                                   for c in np.unique(data.y_train)]))
    data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
    return data


# ----------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize("zoo,spec,n_train", [("cnn-digits", "digits", None),
                                              ("fraud-mlp", "fraud?rows=12000", None),
                                              ("lstm-reviews", "reviews", 3000)])
def test_each_task_fits_and_predicts(zoo: str, spec: str, n_train: int | None, tmp_path: Path) -> None:
    card, data = _card(zoo), load_data(spec)
    if n_train:
        data = _subsampled(data, n_train)
    fitted = fit_baselines(card, data, cache_dir=tmp_path)
    assert list(fitted) == baseline_names(card)
    assert "dummy-prior" in fitted and len(fitted) >= 3
    majority = np.bincount(data.y_train).argmax()
    for name, b in fitted.items():
        p = b.predict_proba(data.x_test)
        assert p.shape == (len(data.y_test), card.num_classes)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
        assert not b.from_cache and b.n_train == len(data.y_train)
        assert parameter_count(b.pipeline) > 0 and b.size_bytes > 0
        acc = (p.argmax(1) == data.y_test).mean()
        if name == "dummy-prior":
            assert (b.predict(data.x_test) == majority).all()
        elif card.task == "tabular-classification":
            from sklearn.metrics import average_precision_score

            # Far above the 1.5% prevalence a random score would get.
            assert average_precision_score(data.y_test == 1, p[:, 1]) > 0.1, name
        else:
            assert acc > {"image-classification": 0.9, "text-classification": 0.7}[card.task], (name, acc)


def test_parameter_count_of_a_logistic_regression(tmp_path: Path) -> None:
    card, data = _card("cnn-digits"), load_data("digits")
    b = fit_baselines(card, data, names=["logistic-regression"], cache_dir=tmp_path)["logistic-regression"]
    assert parameter_count(b.pipeline) == 10 * 64 + 10  # coefficients + intercepts


def test_tabular_encoder_maps_columns_back_to_features() -> None:
    card, data = _card("fraud-mlp"), load_data("fraud?rows=2000")
    enc = tabular_encoder(card.features).fit(data.x_train)
    index = encoded_feature_index(card.features)
    assert enc.transform(data.x_test[:5]).shape[1] == len(index)
    cat = [j for j, f in enumerate(card.features) if f.kind == "categorical"][0]
    assert (index == cat).sum() == len(card.features[cat].categories)
    assert sorted(set(index.tolist())) == list(range(len(card.features)))


def test_text_pipeline_sees_bigrams_and_no_pads(tmp_path: Path) -> None:
    card, data = _card("lstm-reviews"), _subsampled(load_data("reviews"), 2000)
    b = fit_baselines(card, data, names=["tfidf-logistic-regression"], cache_dir=tmp_path)
    grams = set(b["tfidf-logistic-regression"].pipeline.named_steps["tfidf"].get_feature_names_out())
    assert "not good" in grams and "i" in grams
    assert not any("<pad>" in g for g in grams)


def test_unknown_names_and_tasks_are_refused(tmp_path: Path) -> None:
    card, data = _card("cnn-digits"), load_data("digits")
    with pytest.raises(BaselineError, match="unknown baseline 'svm'.*logistic-regression"):
        fit_baselines(card, data, names=["svm"], cache_dir=tmp_path)
    gan = AuditCard(task="gan", input_shape=[32], latent_dim=32)
    with pytest.raises(BaselineError, match="no classical baselines for task 'gan'"):
        build_pipeline("dummy-prior", gan)


# ----------------------------------------------------------------------------- cache


def test_cache_hits_on_the_second_call(tmp_path: Path) -> None:
    card, data = _card("cnn-digits"), load_data("digits")
    first = fit_baselines(card, data, seed=1, cache_dir=tmp_path)
    second = fit_baselines(card, data, seed=1, cache_dir=tmp_path)
    for name in first:
        assert not first[name].from_cache and second[name].from_cache
        assert second[name].cache_path == first[name].cache_path and first[name].cache_path.exists()
        np.testing.assert_array_equal(first[name].predict_proba(data.x_test), second[name].predict_proba(data.x_test))
        assert second[name].fit_seconds == first[name].fit_seconds
        assert second[name].size_bytes == first[name].size_bytes
    # Another seed, other data or use_cache=False never hit that entry.
    assert not fit_baselines(card, data, seed=2, names=["dummy-prior"], cache_dir=tmp_path)["dummy-prior"].from_cache
    other = load_data("digits?seed=1")
    assert not fit_baselines(card, other, seed=1, names=["dummy-prior"], cache_dir=tmp_path)["dummy-prior"].from_cache
    fresh = fit_baselines(card, data, seed=1, names=["dummy-prior"], cache_dir=tmp_path, use_cache=False)
    assert not fresh["dummy-prior"].from_cache and fresh["dummy-prior"].cache_path is None


def test_cache_ignores_corrupt_and_foreign_files(tmp_path: Path) -> None:
    card, data = _card("cnn-digits"), load_data("digits")

    def fit() -> FittedBaseline:
        return fit_baselines(card, data, names=["logistic-regression"], cache_dir=tmp_path)["logistic-regression"]

    path = fit().cache_path
    path.write_bytes(b"not a joblib file")
    again = fit()
    assert not again.from_cache and again.predict(data.x_test[:3]).shape == (3,)
    # A payload under the right name whose key differs (another file put there) is not used.
    payload = joblib.load(path)
    joblib.dump({**payload, "key": "0" * 64}, path)
    assert not fit().from_cache
    # So is one written by an older payload layout (a key missing) or holding something else.
    for broken in ({k: v for k, v in payload.items() if k != "size_bytes"}, {**payload, "pipeline": "x"}):
        joblib.dump(broken, path)
        assert not fit().from_cache
    assert fit().from_cache


# ----------------------------------------------------------------------------- bad tabular cards


def _fraud_with(column: str, values: np.ndarray | None = None, drop_last: bool = False) -> tuple[AuditCard, AuditData]:
    card, data = _card("fraud-mlp"), load_data("fraud?rows=2000")
    if values is not None:
        j = [f.name for f in card.features].index(column)
        data.x_train[: len(values), j] = values
    if drop_last:
        data.x_train, data.x_test = data.x_train[:, :-1], data.x_test[:, :-1]
    return card, data


@pytest.mark.parametrize("column,values,message", [
    ("card_present", np.array([2.0]), r"'card_present' is 'binary' in the card but the training split holds 2"),
    ("merchant_category", np.array([2.5]), r"'merchant_category' is 'categorical' with 8 categories but .* holds 2\.5"),
    ("merchant_category", np.array([8.0]), r"codes must be integers 0\.\.7"),
    ("hour", np.array([3.5]), r"'hour' is 'integer' in the card but .* 3\.5.*declare it 'continuous'"),
])
def test_tabular_kinds_that_do_not_match_the_data_raise(column: str, values: np.ndarray, message: str,
                                                        tmp_path: Path) -> None:
    card, data = _fraud_with(column, values)
    with pytest.raises(BaselineError, match=message):
        fit_baselines(card, data, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was fitted or written


def test_tabular_column_count_mismatch_raises(tmp_path: Path) -> None:
    card, data = _fraud_with("", drop_last=True)
    with pytest.raises(BaselineError, match=r"has 10 columns but the card's feature schema lists 11 features"):
        fit_baselines(card, data, cache_dir=tmp_path)


def test_scan_reports_the_check_skipped_on_a_mismatching_table(cache_root: Path) -> None:
    model = load_model(zoo_model_path("fraud-mlp"))
    _, data = _fraud_with("card_present", np.array([0.5]))
    result = auditkit.scan(model, data, samples=8, budget="quick", progress=False, only=["baselines"])
    section = result.sections["baselines"]
    assert section.status == "skipped"
    assert "cannot build the tabular baselines" in section.reason and "card_present" in section.reason


# ----------------------------------------------------------------------------- paired tests


def test_mcnemar_direction_on_constructed_predictions() -> None:
    both = np.ones(50, bool)
    net = np.concatenate([both, np.ones(20, bool), np.zeros(2, bool)])
    base = np.concatenate([both, np.zeros(20, bool), np.ones(2, bool)])
    r = paired_test(net, base)
    assert (r["network_only_correct"], r["baseline_only_correct"]) == (20, 2)
    assert r["p_value"] < 0.001 and r["winner"] == "network"
    r = paired_test(base, net)
    assert r["winner"] == "baseline" and (r["network_only_correct"], r["baseline_only_correct"]) == (2, 20)
    r = paired_test(net[:55], base[:55])  # 5 discordant pairs, all one way: p = 2 / 32
    assert r["winner"] == "tie" and r["p_value"] == pytest.approx(0.0625)


def test_pr_auc_difference_direction() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.05
    good = y + 0.3 * rng.random(2000)  # ranks every positive first
    noise = rng.random(2000)
    r = pr_auc_difference(noise, good, y, seed=0, n_boot=100)
    assert r["winner"] == "baseline" and r["value"] > 0.8 and r["ci_low"] > 0
    r = pr_auc_difference(good, noise, y, seed=0, n_boot=100)
    assert r["winner"] == "network" and r["ci_high"] < 0
    assert pr_auc_difference(good, good, y, seed=0, n_boot=100)["winner"] == "tie"


def test_quality_matches_the_performance_checks_figures() -> None:
    from auditkit.performance import classification_report, softmax

    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.1).astype(np.int64)
    logits = np.stack([np.zeros(600), 2.0 * y + rng.normal(0, 1.5, 600)], 1)
    quality, calib = quality_and_calibration(softmax(logits), y, ["neg", "pos"], 1, seed=3, n_boot=200)
    report = classification_report(logits, y, ["neg", "pos"], 1, seed=3)
    for key in ("accuracy", "pr_auc", "roc_auc"):
        assert quality[key] == pytest.approx(report[key]), key
    assert quality["positive_class"] == "pos" and calib["ece"] == pytest.approx(report["calibration"]["ece"])
    assert 0 < quality["pr_auc"]["ci_low"] < quality["pr_auc"]["value"] < quality["pr_auc"]["ci_high"] < 1
    # Without a positive class: accuracy only.
    assert set(quality_and_calibration(softmax(logits), y, ["neg", "pos"], None, seed=3)[0]) == {"accuracy"}


def test_robustness_summary_counts_from_norms() -> None:
    norms = np.array([0.0, 0.3, 1.0, np.inf, 2.0])
    correct = np.array([False, True, True, True, True])
    s = robustness_summary(norms, correct, [0.0, 0.5, 1.0, 3.0])
    assert [p["value"] for p in s["robust_accuracy"]] == [0.8, 0.6, 0.4, 0.2]
    assert s["median_min_norm"] == 1.5 and s["found"] == 3 and s["attacked"] == 4


# ----------------------------------------------------------------------------- robustness and importance


def test_constrained_attack_respects_the_feature_schema(tmp_path: Path) -> None:
    card, data = _card("fraud-mlp"), load_data("fraud?rows=12000")
    b = fit_baselines(card, data, names=["logistic-regression"], cache_dir=tmp_path)["logistic-regression"]
    feats = card.features
    pos, neg = np.flatnonzero(data.y_test == 1)[:12], np.flatnonzero(data.y_test == 0)[:12]
    x, y = data.x_test[np.r_[pos, neg]], data.y_test[np.r_[pos, neg]]
    scale = tabular_scale(feats, data.x_train)
    adv, norms = constrained_decision_attack(b.predict, x, y, feats, scale, seed=0, n_init=32, n_refine=5)
    wrong = b.predict(x) != y
    assert (norms[wrong] == 0).all() and np.isfinite(norms[~wrong]).sum() >= 6
    found = np.isfinite(norms) & (norms > 0)
    assert (b.predict(adv[found]) != y[found]).all()  # every reported point is misclassified
    np.testing.assert_allclose(tabular_distance(adv, x, feats, scale)[found], norms[found])
    for j, f in enumerate(feats):
        col = adv[:, j]
        assert (col >= f.min).all() and (col <= f.max).all(), f.name
        if f.kind != "continuous":
            assert (col == np.round(col)).all(), f.name
        if not f.changeable:
            np.testing.assert_array_equal(col, x[:, j])
    # Same seed, same points.
    again, norms2 = constrained_decision_attack(b.predict, x, y, feats, scale, seed=0, n_init=32, n_refine=5)
    np.testing.assert_array_equal(norms, norms2)


def test_hopskipjump_on_a_sklearn_model_finds_misclassified_points(tmp_path: Path) -> None:
    card, data = _card("cnn-digits"), load_data("digits")
    b = fit_baselines(card, data, names=["logistic-regression"], cache_dir=tmp_path)["logistic-regression"]
    module = SklearnModule(b.predict_proba)
    x, y = torch.from_numpy(data.x_test[:8]), torch.from_numpy(data.y_test[:8])
    assert module(x).shape == (8, 10) and not module.training
    norms = decision_attack_l2(module, x, y, (0.0, 1.0), seed=0, steps=2, initial_gradient_eval_steps=10,
                               max_gradient_eval_steps=20, init_directions=50)
    correct = b.predict(data.x_test[:8]) == data.y_test[:8]
    assert (norms[~correct] == 0).all()
    assert np.isfinite(norms[correct]).all() and (norms[correct] > 0).all()
    assert (norms[correct] < 8.0).all()  # the diagonal of [0, 1]^64 is 8: a real boundary point


def test_word_occlusion_finds_the_deciding_word() -> None:
    x = np.array([[5, 2, 0], [3, 2, 0], [5, 3, 0], [2, 2, 0]])
    y = np.array([1, 0, 1, 0])

    def predict(a: np.ndarray) -> np.ndarray:
        return (a == 5).any(1).astype(int)

    drops = word_occlusion_importance(predict, x, y, np.array([2, 3, 5, 7]), unk_id=1)
    np.testing.assert_allclose(drops, [0.0, 0.0, 0.5, 0.0])



def _one_feature_problem(n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Label = (feature 0 > 0); features 1..3 are noise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


@pytest.mark.parametrize("positive_index", [None, 1])
def test_permutation_importance_agrees_with_sklearn(positive_index: int | None) -> None:
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    x, y = _one_feature_problem()
    model = LogisticRegression().fit(x, y)
    ours = permutation_importances(model, x, y, positive_index, n_repeats=5, seed=0)
    if positive_index is None:
        scoring = "accuracy"
    else:
        def scoring(est, a, b):  # noqa: ANN001, ANN202
            return average_precision_score(b == 1, est.predict_proba(a)[:, 1])
    ref = permutation_importance(model, x, y, scoring=scoring, n_repeats=5, random_state=0).importances_mean
    assert ours.shape == (4,) and ours.argmax() == 0
    assert ours[0] > 0.3  # shuffling the deciding feature costs a lot of score
    # Different shuffles, same estimate: within the shuffles' noise (about 0.01 here).
    np.testing.assert_allclose(ours, ref, atol=0.03)


def test_permutation_importance_does_not_depend_on_chunking() -> None:
    x, y = _one_feature_problem(300)
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    whole = permutation_importances(model, x, y, None, n_repeats=3, seed=4)
    column_by_column = permutation_importances(model, x, y, None, n_repeats=3, seed=4, chunk_values=1)
    np.testing.assert_array_equal(whole, column_by_column)
    assert not np.array_equal(whole, permutation_importances(model, x, y, None, n_repeats=3, seed=5))
    with pytest.raises(ValueError, match="n_repeats"):
        permutation_importances(model, x, y, None, n_repeats=0, seed=0)


def test_permutation_rows_shrink_for_wide_inputs() -> None:
    from auditkit.baselines.check import PERM_MIN_ROWS, PERM_ROWS, permutation_rows

    assert permutation_rows(64, "standard") == PERM_ROWS["standard"]  # digits: every row allowed
    assert permutation_rows(30, "thorough") == PERM_ROWS["thorough"]  # fraud's features
    wide = permutation_rows(3 * 16 * 16, "standard")
    assert PERM_MIN_ROWS < wide < PERM_ROWS["standard"] and wide * 768 * 3 <= 200_000
    assert permutation_rows(1024, "quick") < permutation_rows(1024, "standard") < permutation_rows(1024, "thorough")
    assert permutation_rows(10**6, "standard") == PERM_MIN_ROWS


# ----------------------------------------------------------------------------- the check in a scan


def _scan(zoo: str) -> auditkit.AuditResult:
    return auditkit.scan(zoo_model_path(zoo), budget="quick", samples=32, progress=False,
                         only=["performance", "baselines"])


def _check_section(result: auditkit.AuditResult) -> dict:
    section = result.sections["baselines"]
    assert section.status == "ok", section.reason
    data = section.data
    json.dumps(to_jsonable(data), allow_nan=False)
    assert isinstance(data["verdict"], str) and data["verdict"].endswith(".")
    assert "dummy-prior" in data["baselines"] and "network" in data
    for entry in [*data["baselines"].values(), data["network"]]:
        assert {"quality", "calibration", "robustness", "interpretability", "cost"} <= set(entry)
        assert 0 <= entry["calibration"]["ece"] <= 1 and entry["cost"]["parameters"] > 0
    for entry in data["baselines"].values():
        assert entry["quality"]["vs_network"]["winner"] in ("network", "baseline", "tie")
        assert isinstance(entry["cost"]["timings"]["from_cache"], bool)
    assert any(f.section == "baselines" for f in result.findings)
    return data


def test_scan_cnn_digits(cache_root: Path) -> None:
    first = _scan("cnn-digits")
    data = _check_section(first)
    assert data["primary_metric"] == "accuracy"
    assert data["network"]["quality"]["accuracy"]["value"] > 0.95
    dummy = data["baselines"]["dummy-prior"]["quality"]
    assert dummy["accuracy"]["value"] < 0.2 and dummy["vs_network"]["winner"] == "network"
    rob = data["baselines"]["logistic-regression"]["robustness"]
    assert rob["decision_attack"]["status"] == "skipped" and "quick" in rob["decision_attack"]["reason"]
    assert rob["transfer"]["status"] == "ok" and rob["noise"]["linf"]["eps"] == 0.15
    net_t = data["network"]["robustness"]["transfer"]
    assert net_t["adversarial_accuracy"]["value"] < net_t["clean_accuracy"]["value"]  # white-box APGD works
    coefficients = data["baselines"]["logistic-regression"]["interpretability"]["coefficients"]
    assert coefficients["spearman_with_network"] > 0.3  # both look at the centre strokes
    # A second scan loads every baseline from the cache and gives the same JSON, timings aside.
    second = _scan("cnn-digits")
    assert all(e["cost"]["timings"]["from_cache"] for e in second.sections["baselines"].data["baselines"].values())
    a, b = (strip_timings(json.loads(r.to_json()))["sections"] for r in (first, second))
    assert a == b


def test_scan_fraud_mlp(cache_root: Path) -> None:
    result = _scan("fraud-mlp")
    data = _check_section(result)
    assert data["primary_metric"] == "pr_auc"
    net_pr = data["network"]["quality"]["pr_auc"]["value"]
    dummy = data["baselines"]["dummy-prior"]["quality"]
    assert dummy["pr_auc"]["value"] < 0.05 < net_pr and dummy["pr_auc_vs_network"]["winner"] == "network"
    assert not any(f.severity == "high" and "constant" in f.title for f in result.findings)
    for name in ("logistic-regression", "random-forest", "hist-gradient-boosting"):
        interp = data["baselines"][name]["interpretability"]
        assert set(interp["importance"]) == {f.name for f in load_data("fraud?rows=2000").features}
        # The known causes outrank the distractors for the classical models too.
        assert interp["ground_truth"]["precision_at_k"] >= 0.75, (name, interp["ground_truth"])
    assert data["robustness_setup"]["samples"] == 32
    assert data["baselines"]["random-forest"]["robustness"]["transfer"]["status"] == "skipped"


def test_scan_lstm_reviews(cache_root: Path) -> None:
    result = _scan("lstm-reviews")
    data = _check_section(result)
    assert data["verdict"].startswith("The network beats every baseline on reviews")
    lr = data["baselines"]["tfidf-logistic-regression"]
    assert lr["robustness"]["status"] == "skipped"
    assert lr["interpretability"]["top_ngrams_sentiment_fraction"] >= 0.5
    assert "not" in lr["interpretability"]["top_words"]
    assert data["network"]["interpretability"]["top_words_sentiment_fraction"] >= 0.5
