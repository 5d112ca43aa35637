"""Classical scikit-learn baselines per task, fitted on the same training data as the network.

Every baseline is one plain scikit-learn :class:`~sklearn.pipeline.Pipeline` that takes the
data exactly as auditkit holds it (``x`` ``[N, *input_shape]``: pixels in the card's bounds,
raw tabular units with categorical codes, or int64 token ids), so that the comparison, the
attacks and the timings run every model on the very same arrays:

- **images**: flatten → ``logistic-regression`` / ``random-forest`` /
  ``hist-gradient-boosting``, plus ``dummy-prior``;
- **tabular**: a ColumnTransformer from the card's feature schema (StandardScaler for
  continuous and integer columns, passthrough for binary ones, one-hot for categorical codes)
  → ``logistic-regression`` / ``random-forest``; ``hist-gradient-boosting`` reads the raw
  columns and handles the categorical ones natively; ``dummy-prior``;
- **text**: token ids → the sentences (via the card's vocabulary, pads dropped) → TF-IDF over
  unigrams and bigrams (so "not good" is a feature) → ``tfidf-logistic-regression`` /
  ``tfidf-linear-svm`` (LinearSVC calibrated by CalibratedClassifierCV for probabilities);
  ``dummy-prior``.

All are seeded and single-threaded (``n_jobs=1``), sized to fit 45,000 fraud rows in seconds.
Fitted pipelines are cached on disk (see :func:`default_cache_dir`), keyed by a hash of the
data, the model name, the card's input schema, scikit-learn's version and the seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import joblib
import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from auditkit.card import AuditCard, FeatureSpec
from auditkit.data.base import AuditData

IMAGE, TEXT, TABULAR = "image-classification", "text-classification", "tabular-classification"
TASKS = (IMAGE, TEXT, TABULAR)
CACHE_FORMAT = "auditkit-baselines/2"  # bump when the pipelines or the cached payload change
PAYLOAD_KEYS = ("format", "key", "name", "sklearn", "fit_seconds", "n_train", "size_bytes", "pipeline")
HGB_MAX_CATEGORIES = 255  # HistGradientBoosting's limit on distinct categories per feature
TITLES = {
    "logistic-regression": "Logistic regression",
    "random-forest": "Random forest",
    "hist-gradient-boosting": "HistGradientBoosting",
    "tfidf-logistic-regression": "TF-IDF logistic regression",
    "tfidf-linear-svm": "TF-IDF linear SVM",
    "dummy-prior": "The prior-class dummy",
}


class BaselineError(ValueError):
    """The card and the data do not allow the baselines to be built. The message says the fix."""


# ----------------------------------------------------------------------------- input steps


def flatten(x: np.ndarray) -> np.ndarray:
    """``[N, ...]`` → ``[N, D]`` (a no-op on 2-D input)."""
    x = np.asarray(x)
    return x.reshape(len(x), -1)


def detokenise(x: np.ndarray, vocab: tuple[str, ...], pad_id: int) -> np.ndarray:
    """Token ids ``[N, L]`` → ``[N]`` strings, tokens joined by spaces, pads dropped."""
    words = np.asarray(vocab, dtype=object)
    ids = np.asarray(x, dtype=np.int64)
    return np.array([" ".join(words[row[row != pad_id]]) for row in ids], dtype=object)


# ----------------------------------------------------------------------------- validation


def validate_tabular(features: list[FeatureSpec], x: np.ndarray, split: str = "data") -> None:
    """Check that ``x`` ``[N, F]`` fits the card's feature kinds.

    Raises :class:`BaselineError` when the column count differs from the schema, a ``binary``
    column holds values other than 0/1, a ``categorical`` column holds non-integer codes or codes
    outside ``0..len(categories)-1``, or an ``integer`` column holds fractions.
    """
    if x.ndim != 2 or x.shape[1] != len(features):
        got = x.shape[1] if x.ndim == 2 else list(x.shape[1:])
        raise BaselineError(
            f"{split} has {got} columns but the card's feature schema lists {len(features)} "
            "features; pass the table the card describes (or fix the card's 'features')"
        )
    for j, f in enumerate(features):
        col = x[:, j]
        if not np.isfinite(col).all():
            raise BaselineError(f"feature {f.name!r} ({split}) holds NaN or infinite values; clean them")
        if f.kind == "binary":
            bad = col[(col != 0) & (col != 1)]
            if bad.size:
                raise BaselineError(
                    f"feature {f.name!r} is 'binary' in the card but {split} holds {bad[0]:g} "
                    "(binary columns hold only 0 and 1); fix its kind in the card or encode it as 0/1"
                )
        elif f.kind == "categorical":
            k = len(f.categories or [])
            bad = col[(col != np.round(col)) | (col < 0) | (col > k - 1)]
            if bad.size:
                raise BaselineError(
                    f"feature {f.name!r} is 'categorical' with {k} categories but {split} holds "
                    f"{bad[0]:g} (codes must be integers 0..{k - 1}); fix the card's categories or "
                    "encode the column as category codes"
                )
        elif f.kind == "integer":
            bad = col[col != np.round(col)]
            if bad.size:
                raise BaselineError(
                    f"feature {f.name!r} is 'integer' in the card but {split} holds {bad[0]:g}; "
                    "declare it 'continuous' in the card or round the column"
                )


def _check_task(card: AuditCard) -> None:
    if card.task not in TASKS:
        raise BaselineError(f"no classical baselines for task {card.task!r}; they exist for {', '.join(TASKS)}")


# ----------------------------------------------------------------------------- pipelines


def _column_groups(features: list[FeatureSpec]) -> tuple[list[int], list[int], list[int]]:
    """Column indices of (continuous + integer, binary, categorical) features."""
    numeric = [j for j, f in enumerate(features) if f.kind in ("continuous", "integer")]
    binary = [j for j, f in enumerate(features) if f.kind == "binary"]
    categorical = [j for j, f in enumerate(features) if f.kind == "categorical"]
    return numeric, binary, categorical


def tabular_encoder(features: list[FeatureSpec]) -> ColumnTransformer:
    """The card's schema as a ColumnTransformer: scale numeric, pass binary, one-hot categorical.

    Output columns, in order: the numeric features, the binary ones, then one column per
    category of each categorical feature (categories fixed from the card, so unseen codes in
    the test split are ignored rather than fatal).
    """
    numeric, binary, categorical = _column_groups(features)
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        parts.append(("scale", StandardScaler(), numeric))
    if binary:
        parts.append(("binary", "passthrough", binary))
    if categorical:
        cats = [np.arange(len(features[j].categories or []), dtype=np.float64) for j in categorical]
        parts.append(("onehot", OneHotEncoder(categories=cats, handle_unknown="ignore"), categorical))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def encoded_feature_index(features: list[FeatureSpec]) -> np.ndarray:
    """For each output column of :func:`tabular_encoder`, the index of its original feature."""
    numeric, binary, categorical = _column_groups(features)
    out = list(numeric) + list(binary)
    for j in categorical:
        out += [j] * len(features[j].categories or [])
    return np.asarray(out, dtype=np.int64)


def _dummy() -> DummyClassifier:
    return DummyClassifier(strategy="prior")


def _logreg(seed: int) -> LogisticRegression:
    return LogisticRegression(max_iter=1000, random_state=seed)


def _forest(seed: int) -> RandomForestClassifier:
    # 100 bounded-depth trees on half-size bootstrap samples: seconds on 45k rows with one
    # core, and a size that stays small.
    return RandomForestClassifier(n_estimators=100, max_depth=10, min_samples_leaf=2, max_samples=0.5,
                                  n_jobs=1, random_state=seed)


def _hgb(seed: int, categorical: np.ndarray | str | None = None) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=100, categorical_features=categorical, random_state=seed)


def _image_builders() -> dict[str, Callable[[AuditCard, int], Pipeline]]:
    def flat(model: Any) -> Pipeline:
        return Pipeline([("flatten", FunctionTransformer(flatten)), ("model", model)])

    return {
        "logistic-regression": lambda card, seed: flat(_logreg(seed)),
        "random-forest": lambda card, seed: flat(_forest(seed)),
        "hist-gradient-boosting": lambda card, seed: flat(_hgb(seed)),
        "dummy-prior": lambda card, seed: flat(_dummy()),
    }


def _tabular_builders() -> dict[str, Callable[[AuditCard, int], Pipeline]]:
    def encoded(card: AuditCard, model: Any) -> Pipeline:
        return Pipeline([("encode", tabular_encoder(card.features or [])), ("model", model)])

    def hgb(card: AuditCard, seed: int) -> Pipeline:
        feats = card.features or []
        # Native categorical splits need codes below 255; wider categoricals stay ordinal codes.
        mask = np.array([f.kind == "categorical" and len(f.categories or []) <= HGB_MAX_CATEGORIES
                         for f in feats])
        return Pipeline([("model", _hgb(seed, mask if mask.any() else None))])

    return {
        "logistic-regression": lambda card, seed: encoded(card, _logreg(seed)),
        "random-forest": lambda card, seed: encoded(card, _forest(seed)),
        "hist-gradient-boosting": hgb,
        "dummy-prior": lambda card, seed: Pipeline([("model", _dummy())]),
    }


def _text_builders() -> dict[str, Callable[[AuditCard, int], Pipeline]]:
    def tfidf(card: AuditCard, model: Any) -> Pipeline:
        text = card.text
        if text is None:
            raise BaselineError("a text card needs 'text' (the vocabulary) to turn token ids into words")
        to_text = FunctionTransformer(detokenise, kw_args={"vocab": tuple(text.vocab), "pad_id": text.pad_id})
        # Tokens are already words joined by spaces: split on whitespace, keep one-letter words.
        vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=False, sublinear_tf=True)
        return Pipeline([("detokenise", to_text), ("tfidf", vec), ("model", model)])

    return {
        "tfidf-logistic-regression": lambda card, seed: tfidf(card, LogisticRegression(C=10.0, max_iter=1000,
                                                                                        random_state=seed)),
        "tfidf-linear-svm": lambda card, seed: tfidf(card, CalibratedClassifierCV(
            LinearSVC(random_state=seed), method="sigmoid", cv=3)),
        "dummy-prior": lambda card, seed: Pipeline([("model", _dummy())]),
    }


def _builders(card: AuditCard) -> dict[str, Callable[[AuditCard, int], Pipeline]]:
    _check_task(card)
    if card.task == IMAGE:
        return _image_builders()
    if card.task == TABULAR:
        return _tabular_builders()
    return _text_builders()


def baseline_names(card: AuditCard) -> list[str]:
    """Names of the baselines for the card's task, e.g. ``["logistic-regression", ...]``."""
    return list(_builders(card))


def build_pipeline(name: str, card: AuditCard, seed: int = 0) -> Pipeline:
    """An unfitted baseline pipeline for ``card``'s task; raises BaselineError for unknown names."""
    builders = _builders(card)
    if name not in builders:
        raise BaselineError(f"unknown baseline {name!r} for {card.task}; known: {', '.join(builders)}")
    return builders[name](card, seed)


# ----------------------------------------------------------------------------- fitted baselines


@dataclass
class FittedBaseline:
    """A fitted baseline pipeline and where it came from.

    ``fit_seconds`` is the wall time of the original fit (also when loaded from the cache);
    ``from_cache`` says whether this run loaded it instead of training it; ``size_bytes`` is the
    size of the fitted pipeline's joblib dump, measured right after the fit (a pipeline loaded
    back from disk can pickle to a slightly different size).
    """

    name: str
    pipeline: Pipeline
    num_classes: int
    fit_seconds: float
    from_cache: bool
    n_train: int
    size_bytes: int
    cache_path: Path | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, C]`` for inputs ``[N, *input_shape]`` (all C card classes,
        zeros for a class the training data never showed)."""
        p = self.pipeline.predict_proba(x)
        classes = np.asarray(self.pipeline.classes_, dtype=np.int64)
        if len(classes) == self.num_classes and (classes == np.arange(self.num_classes)).all():
            return p
        out = np.zeros((len(p), self.num_classes), dtype=p.dtype)
        out[:, classes] = p
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class indices ``[N]`` (argmax of :meth:`predict_proba`)."""
        return self.predict_proba(x).argmax(1)



def _dump_size(obj: Any) -> int:
    """Bytes of ``obj`` as a joblib dump."""
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getbuffer().nbytes


def default_cache_dir() -> Path:
    """``$AUDITKIT_CACHE_DIR/baselines`` if that variable is set, else ``~/.cache/auditkit/baselines``."""
    root = os.environ.get("AUDITKIT_CACHE_DIR")
    return Path(root) / "baselines" if root else Path.home() / ".cache" / "auditkit" / "baselines"


def cache_key(name: str, card: AuditCard, data_sha256: str, seed: int, n_train: int) -> str:
    """sha256 of everything a fitted baseline depends on."""
    schema = {
        "format": CACHE_FORMAT, "name": name, "sklearn": sklearn.__version__, "seed": seed,
        "data": data_sha256, "n_train": n_train, "task": card.task, "input_shape": card.input_shape,
        "classes": card.class_names,
        "features": [f.model_dump(mode="json") for f in card.features] if card.features else None,
        "vocab": list(card.text.vocab) if card.text else None,
        "pad": card.text.pad_token if card.text else None,
    }
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def _load_cached(path: Path, key: str) -> dict[str, Any] | None:
    """The cached payload at ``path`` if it is auditkit's and carries ``key``; else None."""
    if not path.is_file():
        return None
    try:
        # joblib uses pickle. Safe here: auditkit itself wrote these files, under a name derived
        # from the sha256 key, in auditkit's own cache folder; never point this at other files.
        payload = joblib.load(path)
    except Exception:  # truncated or written by another version: refit and overwrite
        return None
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT or payload.get("key") != key:
        return None
    if any(k not in payload for k in PAYLOAD_KEYS) or not isinstance(payload["pipeline"], Pipeline):
        return None
    return payload


def _store(path: Path, payload: dict[str, Any]) -> bool:
    """Write ``payload`` atomically; False (no cache) when the folder is not writable."""
    from auditkit.files import atomic_write_bytes

    try:
        atomic_write_bytes(path, lambda tmp: joblib.dump(payload, tmp))
    except OSError:
        return False
    return True


def training_subset(y: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``max_rows`` training rows, stratified by class and seeded (all rows,
    in order, when ``max_rows`` is None or not smaller than ``len(y)``)."""
    n = len(y)
    if max_rows is None or max_rows >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = max(1, int(round(len(rows) * max_rows / n)))
        keep.append(rng.choice(rows, min(k, len(rows)), replace=False))
    return np.sort(np.concatenate(keep))


def fit_baselines(
    card: AuditCard,
    data: AuditData,
    *,
    seed: int = 0,
    names: list[str] | None = None,
    max_train: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> dict[str, FittedBaseline]:
    """Fit (or load from the cache) every baseline of ``card``'s task on ``data``'s train split.

    Args:
        card: the network's card (task, feature schema, vocabulary, class names).
        data: the same data the network is audited on; only ``x_train``/``y_train`` are fitted.
        seed: seeds every estimator and the training subsample.
        names: a subset of :func:`baseline_names` (default: all).
        max_train: fit on at most this many training rows (stratified sample); None: all.
        cache_dir: where fitted pipelines are kept (default :func:`default_cache_dir`).
        use_cache: False fits afresh and writes nothing.

    Returns:
        ``{name: FittedBaseline}`` in the order of ``names``.

    Raises:
        BaselineError: task without baselines, unknown name, or (tabular) data whose columns do
            not match the card's feature kinds.
    """
    _check_task(card)
    names = baseline_names(card) if names is None else list(names)
    for name in names:
        build_pipeline(name, card, seed)  # unknown names fail before any work
    if card.task == TABULAR:
        validate_tabular(card.features or [], data.x_train, "the training split")
        validate_tabular(card.features or [], data.x_test, "the test split")
    rows = training_subset(data.y_train, max_train, seed)
    x, y = data.x_train[rows], data.y_train[rows]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    data_sha = data.sha256() if use_cache else ""
    out: dict[str, FittedBaseline] = {}
    for name in names:
        key = cache_key(name, card, data_sha, seed, len(rows))
        path = folder / f"{name}-{key[:40]}.joblib"
        payload = _load_cached(path, key) if use_cache else None
        from_cache = payload is not None
        if payload is None:
            pipe = build_pipeline(name, card, seed)
            t0 = time.perf_counter()
            pipe.fit(x, y)
            fit_seconds = time.perf_counter() - t0
            payload = {"format": CACHE_FORMAT, "key": key, "name": name, "sklearn": sklearn.__version__,
                       "fit_seconds": fit_seconds, "n_train": len(rows), "size_bytes": _dump_size(pipe),
                       "pipeline": pipe}
            if not (use_cache and _store(path, payload)):
                path = None  # type: ignore[assignment]
        out[name] = FittedBaseline(name=name, pipeline=payload["pipeline"], num_classes=card.num_classes,
                                   fit_seconds=float(payload["fit_seconds"]), from_cache=from_cache,
                                   n_train=int(payload["n_train"]), size_bytes=int(payload["size_bytes"]),
                                   cache_path=path)
    return out


# ----------------------------------------------------------------------------- size


def parameter_count(pipeline: Pipeline) -> int:
    """Learned numbers in a fitted pipeline: coefficients and intercepts of linear models, tree
    nodes of forests and boosted trees, class priors of the dummy, plus what the preprocessing
    learned (scaler means and scales, TF-IDF idf weights). One-hot category lists are not counted."""
    total = 0
    for _, step in pipeline.steps:
        total += _count(step)
    return total


def _count(est: Any) -> int:
    if isinstance(est, ColumnTransformer):
        return sum(_count(t) for _, t, _ in est.transformers_ if not isinstance(t, str))
    if isinstance(est, StandardScaler):
        return int(est.mean_.size + est.scale_.size)
    if isinstance(est, TfidfVectorizer):
        return int(est.idf_.size)
    if isinstance(est, (LogisticRegression, LinearSVC)):
        return int(est.coef_.size + np.size(est.intercept_))
    if isinstance(est, RandomForestClassifier):
        return int(sum(t.tree_.node_count for t in est.estimators_))
    if isinstance(est, HistGradientBoostingClassifier):
        # One predictor per class per boosting iteration; scikit-learn keeps them privately.
        return int(sum(len(p.nodes) for it in est._predictors for p in it))
    if isinstance(est, CalibratedClassifierCV):
        # Each fold: the fitted SVM plus a sigmoid (slope, offset) per calibrated class.
        return int(sum(_count(cc.estimator) + 2 * len(cc.calibrators) for cc in est.calibrated_classifiers_))
    if isinstance(est, DummyClassifier):
        return int(np.size(est.class_prior_))
    return 0
