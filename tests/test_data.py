"""Built-in datasets (digits, fraud simulator, reviews corpus) and the data-spec registry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from auditkit.data import (
    AuditData,
    DataError,
    describe_dataset,
    list_datasets,
    load_data,
    parse_spec,
)
from auditkit.data import fraud as fraud_mod
from auditkit.data import reviews as rv

# --------------------------------------------------------------------------- registry


def test_list_datasets_names_every_builtin() -> None:
    assert list_datasets() == ["digits", "fraud", "reviews"]
    assert all(describe_dataset(name) for name in list_datasets())


def test_parse_spec() -> None:
    assert parse_spec("fraud?rows=20000&seed=3") == ("fraud", None, {"rows": "20000", "seed": "3"})
    assert parse_spec("csv:/a/b.csv?target=y") == ("csv", "/a/b.csv", {"target": "y"})
    assert parse_spec(" Digits ") == ("digits", None, {})


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("", "empty data spec"),
        ("imagenet", "unknown dataset 'imagenet'"),
        ("data/table.csv", "prefix its kind"),
        ("fraud?rows=lots", "rows='lots' is not a valid whole number"),
        ("fraud?row=100", "unknown argument(s) ['row']"),
        ("fraud?seed=1&seed=2", "given twice"),
        ("fraud?rows=10", "too small"),
        ("digits?test_fraction=1.5", "test_fraction=1.5"),
        ("hdf5:/tmp/x.h5", "unknown data kind 'hdf5'"),
        ("csv:", "no path after"),
    ],
)
def test_bad_specs_raise_data_error(spec: str, needle: str) -> None:
    with pytest.raises(DataError) as info:
        load_data(spec)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_builtin_cache_returns_independent_copies() -> None:
    a = load_data("fraud?rows=2000")
    a.x_train[:] = -1.0  # a caller scribbling on its copy must not poison the cache
    b = load_data("fraud?rows=2000&seed=0")  # same normalised spec
    assert b.x_train.min() >= 0.0
    assert b.meta["spec"] == "fraud?rows=2000&seed=0&test_fraction=0.25"


# --------------------------------------------------------------------------- digits


def test_digits_shapes_range_and_split() -> None:
    d = load_data("digits")
    assert isinstance(d, AuditData) and d.task == "image-classification"
    assert d.x_train.shape == (1347, 1, 8, 8) and d.x_test.shape == (450, 1, 8, 8)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    both = np.concatenate([d.x_train, d.x_test])
    assert both.min() == 0.0 and both.max() == 1.0
    assert d.class_names == [str(i) for i in range(10)]
    # Stratified: each class's share of the test split matches its share of the train split.
    share_train = np.bincount(d.y_train, minlength=10) / len(d.y_train)
    share_test = np.bincount(d.y_test, minlength=10) / len(d.y_test)
    assert np.abs(share_train - share_test).max() < 0.01


def test_digits_split_is_deterministic_per_seed() -> None:
    a, b, c = load_data("digits"), load_data("digits?seed=0"), load_data("digits?seed=1")
    assert a.sha256() == b.sha256()
    assert a.sha256() != c.sha256()
    # A different seed reshuffles the split, not the data: the same multiset of labels overall.
    labels_a = np.sort(np.concatenate([a.y_train, a.y_test]))
    assert np.array_equal(labels_a, np.sort(np.concatenate([c.y_train, c.y_test])))


# --------------------------------------------------------------------------- fraud


def _fraud_all(d: AuditData) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([d.x_train, d.x_test]), np.concatenate([d.y_train, d.y_test])


def test_fraud_rows_and_rate_across_seeds() -> None:
    d = load_data("fraud")
    assert len(d.y_train) + len(d.y_test) == 60_000
    assert d.class_names == ["legit", "fraud"] and d.positive_class == "fraud"
    for spec in ("fraud", "fraud?seed=1", "fraud?seed=2&rows=20000", "fraud?seed=7&rows=2000"):
        x, y = _fraud_all(load_data(spec))
        assert 0.01 <= y.mean() <= 0.02, spec
    # Stratified split: both halves carry the same rate.
    assert abs(d.y_train.mean() - d.y_test.mean()) < 0.001


def test_fraud_schema_is_respected_by_every_value() -> None:
    d = load_data("fraud")
    x, _ = _fraud_all(d)
    assert d.features is not None and len(d.features) >= 10
    assert x.shape[1] == len(d.features) and x.dtype == np.float32
    kinds = {f.kind for f in d.features}
    assert kinds == {"continuous", "integer", "categorical", "binary"}
    for i, f in enumerate(d.features):
        col = x[:, i]
        assert col.min() >= f.min and col.max() <= f.max, f.name
        assert f.unit or f.kind in ("binary", "categorical") or f.name == "device_score", f.name
        assert f.description, f.name
        if f.kind in ("integer", "categorical", "binary"):
            assert np.all(col == np.round(col)), f.name
        if f.kind == "binary":
            assert set(np.unique(col)) == {0.0, 1.0}, f.name
        if f.kind == "categorical":
            assert f.categories is not None and len(f.categories) >= 6
            assert set(np.unique(col)) == set(range(len(f.categories))), f.name
    by_name = {f.name: f for f in d.features}
    assert by_name["amount"].changeable and by_name["hour"].changeable
    assert not by_name["account_age_days"].changeable and not by_name["customer_age"].changeable


def test_fraud_ground_truth_partitions_the_features() -> None:
    d = load_data("fraud")
    gt = d.ground_truth
    names = [f.name for f in d.features or []]
    assert set(gt["causal_features"]) | set(gt["non_causal_features"]) == set(names)
    assert not set(gt["causal_features"]) & set(gt["non_causal_features"])
    assert len(gt["non_causal_features"]) >= 2
    assert gt["rules"] and gt["weights"] and all(w > 0 for w in gt["weights"].values())


def _independence_p_value(col: np.ndarray, y: np.ndarray) -> float:
    """Chi-square test of independence between a feature (binned into <= 10 bins) and y."""
    values = np.unique(col)
    if len(values) > 10:
        edges = np.unique(np.quantile(col, np.linspace(0, 1, 11)[1:-1]))
        col = np.searchsorted(edges, col, side="right")
    levels = np.unique(col)
    table = np.array([[np.sum((col == v) & (y == c)) for c in (0, 1)] for v in levels])
    return float(chi2_contingency(table)[1])


@pytest.mark.parametrize("seed", [0, 1])
def test_fraud_causal_features_matter_and_distractors_do_not(seed: int) -> None:
    d = load_data(f"fraud?seed={seed}")
    x, y = _fraud_all(d)
    names = [f.name for f in d.features or []]
    p = {name: _independence_p_value(x[:, i], y) for i, name in enumerate(names)}
    for name in d.ground_truth["causal_features"]:
        assert p[name] < 1e-8, (name, p[name])
    for name in d.ground_truth["non_causal_features"]:
        assert p[name] > 1e-3, (name, p[name])


def test_fraud_is_learnable_by_a_simple_model() -> None:
    d = load_data("fraud")
    scaler = StandardScaler().fit(d.x_train)
    model = LogisticRegression(max_iter=1000).fit(scaler.transform(d.x_train), d.y_train)
    auc = roc_auc_score(d.y_test, model.predict_proba(scaler.transform(d.x_test))[:, 1])
    assert auc > 0.9
    # The documented rule itself ranks fraud better than any fitted model can.
    assert roc_auc_score(d.y_test, fraud_mod.fraud_score(d.x_test)) > auc


def test_fraud_is_deterministic_for_a_seed() -> None:
    a = fraud_mod.load_fraud(rows=3000, seed=5)
    b = fraud_mod.load_fraud(rows=3000, seed=5)
    c = fraud_mod.load_fraud(rows=3000, seed=6)
    assert a.sha256() == b.sha256() != c.sha256()


# --------------------------------------------------------------------------- reviews


@pytest.fixture(scope="module")
def reviews() -> AuditData:
    return load_data("reviews")


def test_reviews_size_vocab_and_padding(reviews: AuditData) -> None:
    d = reviews
    assert len(d.y_train) + len(d.y_test) >= 10_000
    assert d.task == "text-classification" and d.class_names == ["negative", "positive"]
    assert d.text is not None and d.text.vocab[:2] == ["<pad>", "<unk>"]
    assert d.text.pad_id == 0 and d.text.unk_id == 1
    x = np.concatenate([d.x_train, d.x_test])
    assert x.dtype == np.int64 and x.shape[1] == 16
    assert x.min() >= 0 and x.max() < len(d.text.vocab)
    assert not np.any(x == 1), "generated sentences use only vocabulary words"
    # Right-padded: once a position is <pad>, every later one is too.
    pad = x == 0
    assert np.all(pad[:, 1:] >= pad[:, :-1])
    assert np.all(~pad[:, 0]) and pad.sum(1).min() >= 0
    y = np.concatenate([d.y_train, d.y_test])
    assert 0.45 <= y.mean() <= 0.55


def test_reviews_encode_decode_round_trip() -> None:
    vocab = rv.build_vocab()
    ids = rv.encode("The movie was NOT very good", vocab)
    assert ids.shape == (16,) and ids.dtype == np.int64 and ids[6:].tolist() == [0] * 10
    assert rv.decode(ids, vocab) == ["the", "movie", "was", "not", "very", "good"]
    assert rv.encode("the zyzzyva was good", vocab, maxlen=None)[1] == 1  # unknown -> <unk>


@pytest.mark.parametrize(
    "sentence, label, relevant",
    [
        ("the movie was good", 1, ["good"]),
        ("the movie was not good", 0, ["not", "good"]),
        ("the movie was very good", 1, ["good"]),
        ("the movie was not very good", 0, ["not", "good"]),
        ("the plot was really terrible", 0, ["terrible"]),
        ("the plot was never terrible", 1, ["never", "terrible"]),
        ("i did not hate this film yesterday", 1, ["not", "hate"]),
        ("good but terrible", 0, ["terrible"]),
        ("the acting was not bad but the ending was dull", 0, ["dull"]),
        ("the acting was awful but i really love this film", 1, ["love"]),
        ("not good but not bad", 1, ["not", "bad"]),
    ],
)
def test_sentiment_rule_on_constructed_sentences(
    sentence: str, label: int, relevant: list[str]
) -> None:
    vocab = rv.build_vocab()
    tokens = rv.decode(rv.encode(sentence, vocab), vocab)  # via the real encoding
    got_label, positions = rv.sentiment_rule(tokens)
    assert got_label == label
    assert [tokens[i] for i in positions] == relevant


def test_sentiment_rule_needs_a_sentiment_word() -> None:
    with pytest.raises(ValueError, match="no sentiment word"):
        rv.sentiment_rule("the movie was good but the plot".split())


def test_reviews_labels_and_masks_follow_the_rules(reviews: AuditData) -> None:
    d = reviews
    assert d.text is not None
    for split in ("train", "test"):
        x, y = getattr(d, f"x_{split}"), getattr(d, f"y_{split}")
        mask = d.ground_truth[f"token_relevance_{split}"]
        assert mask.shape == x.shape and mask.dtype == bool
        assert mask.any(axis=1).all(), "every sentence has deciding tokens"
        assert not (mask & (x == 0)).any(), "relevance never points at padding"
        for i in range(len(y)):
            tokens = rv.decode(x[i], d.text)
            label, positions = rv.sentiment_rule(tokens)
            assert label == y[i]
            assert np.flatnonzero(mask[i]).tolist() == positions
            assert tokens[positions[-1]] in rv.SENTIMENT_WORDS
            assert all(tokens[p] in rv.NEGATORS for p in positions[:-1])


def test_reviews_subsets(reviews: AuditData) -> None:
    d = reviews
    assert d.text is not None
    neg, con = d.subsets["negation"], d.subsets["contrast"]
    n_test = len(d.y_test)
    assert neg.shape == con.shape == (n_test,) and neg.dtype == con.dtype == bool
    assert 0.1 * n_test < neg.sum() < 0.5 * n_test and 0.1 * n_test < con.sum() < 0.5 * n_test
    mask = d.ground_truth["token_relevance_test"]
    assert np.array_equal(neg, mask.sum(1) == 2)
    but_id = d.text.vocab.index("but")
    assert np.array_equal(con, (d.x_test == but_id).any(1))
    # Negation flips: in the negation subset the deciding word's own polarity opposes the label.
    for i in range(n_test):
        word = d.text.vocab[d.x_test[i][mask[i]][-1]]
        word_label = int(word in rv.POSITIVE_WORDS)
        assert (word_label != d.y_test[i]) == neg[i]


def test_reviews_deterministic_and_vocab_fixed() -> None:
    a, b = rv.load_reviews(n=500, seed=4), rv.load_reviews(n=500, seed=4)
    c = rv.load_reviews(n=500, seed=5)
    assert a.sha256() == b.sha256() != c.sha256()
    assert a.text == c.text  # the vocabulary never depends on the seed
