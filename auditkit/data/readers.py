"""Readers for datasets the user brings as files: images (torchvision layouts), tables, text, npz.

Every reader returns :class:`AuditData` with a seeded, stratified train/test split unless the
files carry their own split, and records the source path and its sha256 in ``meta``. Nothing
here downloads anything. Heavy libraries (pandas, torchvision) are imported on use.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from auditkit.card import AuditCard, FeatureSpec, TextSpec
from auditkit.data.base import AuditData, DataError

if TYPE_CHECKING:
    import pandas as pd

PAD, UNK = "<pad>", "<unk>"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------------------- shared helpers


def file_sha256(*paths: Path) -> str:
    """sha256 over the bytes of ``paths`` in the given order (one file: the file's own hash)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def tokenize(text: str) -> list[str]:
    """Lower-case and split on whitespace (the tokenisation of every text dataset here)."""
    return text.lower().split()


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int, what: str, class_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of class indices ``y`` ``[N]``: returns (train, test) indices.

    Stratified by class when it can be (every class has 2 samples or more and the test split
    can hold one of each); otherwise a plain seeded shuffle split, so that a rare class in a
    user's test set does not stop an audit.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"{what}: test_fraction={test_fraction} must be between 0 and 1")
    if len(y) < 2:
        raise DataError(f"{what}: {len(y)} row(s) cannot be split into train and test; give more rows")
    index = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True)
    if counts.min() >= 2:
        try:
            return train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
        except ValueError:  # the test split is smaller than the number of classes
            pass
    try:
        return train_test_split(index, test_size=test_fraction, random_state=seed)
    except ValueError as exc:
        raise DataError(f"{what}: cannot split {len(y)} rows with test_fraction={test_fraction}: "
                        f"{exc} (use more rows or another test_fraction)") from None


def encode_labels(
    values: np.ndarray, card: AuditCard | None, what: str
) -> tuple[np.ndarray, list[str]]:
    """Map raw labels ``[N]`` to int64 class indices and the class names.

    Strings map to the card's ``class_names`` when a card is given, else to the sorted unique
    strings. Numbers must be integers ``0..K-1``, with ``K = len(card.class_names)`` or
    ``max + 1``; their names are the card's or ``"0".."K-1"``.
    """
    values = np.asarray(values)
    card_names = list(card.class_names) if card is not None and card.class_names else None
    if values.size == 0:
        raise DataError(f"{what}: no labels (the data is empty)")
    if values.dtype.kind in "OUS":
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
            raise DataError(f"{what}: labels contain missing values (fill or drop those rows)")
        strings = [str(v) for v in values]  # plain str: messages show 'a', not np.str_('a')
        names = card_names or sorted(set(strings))
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(set(strings) - set(index))
        if unknown:
            raise DataError(
                f"{what}: labels {unknown[:5]} are not among the card's class_names {names} "
                f"(fix the labels or the card)"
            )
        y = np.asarray([index[s] for s in strings], dtype=np.int64)
    else:
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise DataError(f"{what}: labels contain NaN (fill or drop those rows)")
        if values.dtype.kind not in "biuf" or not np.all(np.mod(values, 1) == 0):
            raise DataError(f"{what}: labels must be integers 0..K-1 or class-name strings, "
                            f"got {values.dtype} values such as {values.ravel()[:3].tolist()}")
        y = values.astype(np.int64).ravel()
        k = len(card_names) if card_names else int(y.max()) + 1
        if y.min() < 0 or y.max() >= k:
            raise DataError(
                f"{what}: labels must be integers 0..{k - 1}, found {int(y.min())}..{int(y.max())} "
                f"(relabel them, or give a card whose class_names cover every label)"
            )
        names = card_names or [str(i) for i in range(k)]
    if len(names) < 2:
        raise DataError(f"{what}: found only one class {names}; a classifier needs at least two")
    return y, names


def check_data(data: AuditData) -> AuditData:
    """Check shapes, dtypes and values of ``data``; raise :class:`DataError` naming the problem."""
    what = data.name
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(x) == 0:
            raise DataError(f"{what}: the {split} split is empty (give more rows)")
        if len(x) != len(y):
            raise DataError(f"{what}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{what}: x_{split} holds NaN or infinite values (fill or drop them)")
        if y.dtype != np.int64 or y.ndim != 1:
            raise DataError(f"{what}: y_{split} must be int64 [N], got {y.dtype} {list(y.shape)}")
        if y.min() < 0 or y.max() >= data.num_classes:
            raise DataError(f"{what}: y_{split} holds labels outside 0..{data.num_classes - 1}")
    if data.x_train.shape[1:] != data.x_test.shape[1:]:
        raise DataError(f"{what}: train samples have shape {list(data.x_train.shape[1:])} but "
                        f"test samples {list(data.x_test.shape[1:])}")
    return data


def _require_file(path: Path, kind: str) -> None:
    if not path.is_file():
        hint = "it is a directory" if path.is_dir() else "no such file"
        raise DataError(f"{kind}: cannot read {path}: {hint} (check the path in '{kind}:PATH')")


def _check_card_task(card: AuditCard | None, task: str, kind: str) -> None:
    if card is not None and card.task != task:
        raise DataError(f"{kind}: the card is for task {card.task!r} but {kind} files give "
                        f"{task!r} data (pass the matching card or data)")


# --------------------------------------------------------------------------- images


def read_torchvision(
    kind: str, root: str | Path, card: AuditCard | None = None
) -> AuditData:
    """MNIST, Fashion-MNIST (via torchvision, ``download=False``) or CIFAR-10 from a local root.

    ``kind`` is ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``. Returns image
    :class:`AuditData` with x ``[N, C, H, W]`` float32 in [0, 1] (uint8 / 255) and the files'
    own train/test split. MNIST-style files go in ``ROOT/MNIST/raw`` or
    ``ROOT/FashionMNIST/raw`` (uncompressed idx files); CIFAR-10 in
    ``ROOT/cifar-10-batches-py``. ``card`` is unused (images need no schema).
    """
    root = Path(root)
    if kind == "cifar10":
        return _read_cifar10(root)
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[kind]
    raw = root / cls.__name__ / "raw"
    files = [raw / Path(name).stem for name, _ in cls.resources]  # names without ".gz"
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{kind}: {', '.join(missing)} not found in {raw}; auditkit never downloads data: "
            f"download the {cls.__name__} idx files yourself and put them, uncompressed, in {raw}"
        )
    splits = {}
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except (AssertionError, TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{kind}: the idx files in {raw} are unreadable or corrupt ({exc!r}); "
                            f"replace them with the original files") from None
        x = ds.data.numpy()[:, None, :, :].astype(np.float32) / 255.0
        splits[train] = (x, ds.targets.numpy().astype(np.int64))
    names = [str(i) for i in range(10)] if kind == "mnist" else list(cls.classes)
    return AuditData(
        name=kind,
        task="image-classification",
        x_train=splits[True][0],
        y_train=splits[True][1],
        x_test=splits[False][0],
        y_test=splits[False][1],
        class_names=names,
        meta={"kind": kind, "source": str(root), "sha256": file_sha256(*files)},
    )


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and NumPy arrays only: a crafted batch cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar10(root: Path) -> AuditData:
    """CIFAR-10 python batches, read by hand.

    torchvision's ``CIFAR10`` accepts only the official files (it checks their md5, so subsets
    and re-packed batches fail) and unpickles them without restriction; this reads the same
    layout (``torchvision.datasets.CIFAR10.train_list`` / ``test_list`` under
    ``ROOT/cifar-10-batches-py``) with an unpickler that admits NumPy arrays only.
    """
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    names = [n for n, _ in CIFAR10.train_list] + [n for n, _ in CIFAR10.test_list]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"cifar10: {', '.join(missing)} not found in {folder}; auditkit never downloads "
            f"data: download cifar-10-python.tar.gz yourself and extract it into {root}"
        )

    def load(name: str) -> dict[str, Any]:
        try:
            with open(folder / name, "rb") as f:
                entry = _ArrayOnlyUnpickler(f, encoding="latin1").load()
            return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
        except Exception as exc:  # any unpickling failure means a corrupt or foreign file
            raise DataError(f"cifar10: {folder / name} is not a CIFAR-10 python batch ({exc}); "
                            f"replace it with the original file") from None

    def split(batch_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in batch_names:
            entry = load(name)
            if "data" not in entry or "labels" not in entry:
                raise DataError(f"cifar10: {folder / name} lacks 'data' or 'labels'; "
                                f"replace it with the original file")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry["labels"], dtype=np.int64))
        return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)

    x_train, y_train = split([n for n, _ in CIFAR10.train_list])
    x_test, y_test = split([n for n, _ in CIFAR10.test_list])
    classes = list(CIFAR10_CLASSES)
    meta_file = folder / CIFAR10.meta["filename"]
    if meta_file.is_file():
        classes = [c.decode() if isinstance(c, bytes) else str(c)
                   for c in load(CIFAR10.meta["filename"])[CIFAR10.meta["key"]]]
    return AuditData(
        name="cifar10",
        task="image-classification",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=classes,
        meta={"kind": "cifar10", "source": str(root),
              "sha256": file_sha256(*(folder / n for n in names))},
    )


# --------------------------------------------------------------------------- tables


def _read_frame(path: Path, kind: str) -> "pd.DataFrame":
    import pandas as pd

    _require_file(path, kind)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{kind}: {path} is empty (it needs a header row and data rows)") from None
    except Exception as exc:  # parser errors of every kind: report, do not crash
        raise DataError(f"{kind}: cannot parse {path}: {exc}") from None
    if len(frame) == 0:
        raise DataError(f"{kind}: {path} has a header but no data rows")
    return frame


def _require_columns(frame: "pd.DataFrame", columns: list[str], kind: str, path: Path,
                     role: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{kind}: {path} has no column(s) {missing} ({role}); "
                        f"its columns are {list(frame.columns)[:20]}")


def _is_text(col: "pd.Series") -> bool:
    """Whether a column holds strings (object, string or categorical dtype), not numbers."""
    import pandas as pd

    return not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def _infer_feature(name: str, col: "pd.Series") -> tuple[FeatureSpec, np.ndarray]:
    """Infer one column's schema; return it and the column as float64 values ``[N]``."""
    if _is_text(col):
        strings = col.astype(str).to_numpy()
        categories = sorted(set(strings))
        codes = np.searchsorted(np.asarray(categories), strings).astype(np.float64)
        spec = FeatureSpec(name=name, kind="categorical", min=0, max=len(categories) - 1,
                           categories=categories)
        return spec, codes
    values = col.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"column {name!r} holds NaN or infinite values; fill or drop those rows")
    lo, hi = float(values.min()), float(values.max())
    if set(np.unique(values)) <= {0.0, 1.0}:
        return FeatureSpec(name=name, kind="binary", min=0, max=1), values
    kind = "integer" if np.all(np.mod(values, 1) == 0) else "continuous"
    return FeatureSpec(name=name, kind=kind, min=lo, max=hi), values


def _apply_feature(spec: FeatureSpec, col: "pd.Series", what: str) -> np.ndarray:
    """Encode a column by the card's schema; return float64 values ``[N]``."""
    if spec.kind == "categorical":
        categories = spec.categories or []  # never empty: FeatureSpec's validator checks it
        if _is_text(col):
            strings = [str(v) for v in col]
            index = {c: i for i, c in enumerate(categories)}
            unknown = sorted(set(strings) - set(index))
            if unknown:
                raise DataError(f"{what}: column {spec.name!r} has values {unknown[:5]} that are "
                                f"not among the card's categories {categories}")
            return np.asarray([index[s] for s in strings], dtype=np.float64)
        values = col.to_numpy(dtype=np.float64)
        bad = values[(np.mod(values, 1) != 0) | (values < 0) | (values >= len(categories))]
        if bad.size:
            raise DataError(f"{what}: column {spec.name!r} has codes {np.unique(bad)[:5].tolist()} "
                            f"outside the card's categories 0..{len(categories) - 1}")
        return values
    if _is_text(col):
        raise DataError(f"{what}: column {spec.name!r} is {spec.kind} in the card but holds "
                        f"{col.dtype} values such as {col.iloc[0]!r}")
    values = col.to_numpy(dtype=np.float64)
    if spec.kind == "binary" and not set(np.unique(values)) <= {0.0, 1.0}:
        raise DataError(f"{what}: column {spec.name!r} is binary in the card but holds values "
                        f"other than 0 and 1")
    if spec.kind == "integer" and not np.all(np.mod(values, 1) == 0):
        raise DataError(f"{what}: column {spec.name!r} is integer in the card but holds fractions")
    return values


def read_tabular(
    path: str | Path,
    kind: str = "csv",
    target: str | None = None,
    card: AuditCard | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> AuditData:
    """A CSV or Parquet table with one target column, as tabular :class:`AuditData`.

    With a card carrying ``features``, those columns are read in the card's order and checked
    against its schema (other columns are ignored); without one, every non-target column
    becomes a feature whose schema is inferred (binary if values are in {0, 1}, integer if
    integral, categorical if strings — codes follow the sorted categories — else continuous;
    ranges from the data; all changeable). Returns x ``[N, F]`` float32 in raw units.
    """
    path = Path(path)
    if not target:
        raise DataError(f"{kind}: name the label column, e.g. '{kind}:{path}?target=label'")
    _check_card_task(card, "tabular-classification", kind)
    frame = _read_frame(path, kind)
    data = tabular_from_frame(frame, target, card, what=f"{kind} {path}", name=path.stem,
                              test_fraction=test_fraction, seed=seed)
    data.meta.update({"kind": kind, "source": str(path), "sha256": file_sha256(path)})
    return data


def tabular_from_frame(
    frame: "pd.DataFrame",
    target: str,
    card: AuditCard | None = None,
    what: str = "table",
    name: str = "table",
    test_fraction: float = 0.25,
    seed: int = 0,
) -> AuditData:
    """A pandas DataFrame with a ``target`` column as tabular :class:`AuditData` (rules of
    :func:`read_tabular`); ``what`` names the table in messages."""
    if len(frame) == 0:
        raise DataError(f"{what}: the table has no rows")
    if target not in frame.columns:
        raise DataError(f"{what}: no column(s) {[target]} (the target); its columns are {list(frame.columns)[:20]}")
    card_features = card.features if card is not None and card.features else None
    if card_features:
        columns = [f.name for f in card_features]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{what}: no column(s) {missing[:10]} (named in the card's features); "
                            f"its columns are {list(frame.columns)[:20]}")
    else:
        columns = [c for c in frame.columns if c != target]
    if not columns:
        raise DataError(f"{what}: no feature columns besides the target {target!r}")
    for col in [*columns, target]:
        n_missing = int(frame[col].isna().sum())
        if n_missing:
            raise DataError(f"{what}: column {col!r} has {n_missing} missing (NaN) "
                            f"values; fill or drop those rows")
    if card_features:
        features = [f.model_copy(deep=True) for f in card_features]
        cols = [_apply_feature(f, frame[f.name], what) for f in card_features]
    else:
        inferred = []
        for col in columns:
            try:
                inferred.append(_infer_feature(str(col), frame[col]))
            except DataError as exc:
                raise DataError(f"{what}: {exc}") from None
        features = [spec for spec, _ in inferred]
        cols = [values for _, values in inferred]
    x = np.stack(cols, axis=1).astype(np.float32)
    y, class_names = encode_labels(frame[target].to_numpy(), card, f"{what} target {target!r}")
    tr, te = stratified_split(y, test_fraction, seed, what, class_names)
    positive = card.positive_class if card is not None else None
    return AuditData(
        name=name,
        task="tabular-classification",
        x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te],
        class_names=class_names,
        positive_class=positive,
        features=features,
        meta={"target": target, "test_fraction": test_fraction, "seed": seed,
              "labels": "strings" if _is_text(frame[target]) else "integers"},
    )


# --------------------------------------------------------------------------- text


MAX_TEXT_LEN = 4096  # tokens per text: longer inputs are no text classifier this tool can audit
MAX_TOKEN_IDS = 2**27  # rows x maxlen int64 ids held in memory (1 GiB)


def read_vocab(path: str | Path, pad_token: str = PAD, unk_token: str = UNK) -> TextSpec:
    """A vocabulary file: one token per line (line i is token id i, UTF-8), or a JSON list of
    tokens. ``pad_token`` and ``unk_token`` must be among them."""
    import json

    from auditkit.files import read_user_text

    path = Path(path)
    text = read_user_text(path, "vocabulary file", DataError)
    if text.lstrip().startswith("["):
        try:
            vocab = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"vocabulary file {path} starts with '[' but is not a JSON list: {exc}") from None
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise DataError(f"vocabulary file {path}: the JSON must be a list of token strings")
    else:
        vocab = text.splitlines()
    if len(set(vocab)) != len(vocab):
        dupes = sorted({t for t in vocab if vocab.count(t) > 1})[:5] if len(vocab) < 100_000 else []
        raise DataError(f"vocabulary file {path}: tokens {dupes} appear twice; each id needs its own token")
    missing = [t for t in (pad_token, unk_token) if t not in vocab]
    if missing:
        raise DataError(f"vocabulary file {path} lacks the special token(s) {missing}; add them, or name "
                        f"yours with pad=TOKEN&unk=TOKEN in the data spec")
    return TextSpec(vocab=vocab, pad_token=pad_token, unk_token=unk_token)


def read_text_csv(
    path: str | Path,
    text: str | None = None,
    label: str | None = None,
    card: AuditCard | None = None,
    maxlen: int | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    vocab: str | None = None,
    pad: str = PAD,
    unk: str = UNK,
) -> AuditData:
    """A CSV with a text column and a label column, as text :class:`AuditData`.

    Text is lower-cased and split on whitespace. The vocabulary is, in this order: the card's
    ``text.vocab``; the file ``vocab`` (one token per line, line i = token id i, or a JSON list;
    ``pad``/``unk`` name its special tokens, default ``<pad>``/``<unk>``); else one built from
    the training split (``<pad>`` = 0, ``<unk>`` = 1, then the words of the truncated training
    texts by falling frequency, ties alphabetical), which fits only a model trained with that
    same vocabulary. x is ``[N, maxlen]`` int64 ids, right-padded with the pad id and
    truncated; ``maxlen`` (at most 4096) defaults to the card's input length, else 32.
    """
    path = Path(path)
    kind = "text-csv"
    if not text or not label:
        raise DataError(
            f"{kind}: name both columns, e.g. '{kind}:{path}?text=review&label=sentiment'"
        )
    _check_card_task(card, "text-classification", kind)
    if maxlen is None:
        maxlen = card.input_shape[0] if card is not None and card.input_shape else 32
    if not 1 <= maxlen <= MAX_TEXT_LEN:
        raise DataError(f"{kind}: maxlen={maxlen} must be between 1 and {MAX_TEXT_LEN} tokens")
    given_vocab = read_vocab(vocab, pad, unk) if vocab else None
    frame = _read_frame(path, "csv")
    if len(frame) * maxlen > MAX_TOKEN_IDS:
        raise DataError(f"{kind}: {len(frame)} rows x maxlen={maxlen} is more than {MAX_TOKEN_IDS} token ids "
                        "to hold in memory; use fewer rows or a smaller maxlen")
    _require_columns(frame, [text, label], kind, path, "the text and label")
    for name in (text, label):
        n_missing = int(frame[name].isna().sum())
        if n_missing:
            raise DataError(f"{kind}: column {name!r} of {path} has {n_missing} missing values; "
                            f"fill or drop those rows")
    what = f"{kind} {path}"
    y, class_names = encode_labels(frame[label].to_numpy(), card, f"{what} label {label!r}")
    tokens = [tokenize(str(t))[:maxlen] for t in frame[text]]
    tr, te = stratified_split(y, test_fraction, seed, what, class_names)
    if card is not None and card.text is not None:  # a text card always has one
        spec = card.text.model_copy(deep=True)
        vocab_source = "card"
    elif given_vocab is not None:
        spec, vocab_source = given_vocab, f"file {vocab}"
    else:
        counts: dict[str, int] = {}
        for i in tr:
            for tok in tokens[i]:
                counts[tok] = counts.get(tok, 0) + 1
        words = sorted((w for w in counts if w not in (PAD, UNK)), key=lambda w: (-counts[w], w))
        spec = TextSpec(vocab=[PAD, UNK, *words], pad_token=PAD, unk_token=UNK)
        vocab_source = "built from the training split"
    index = {w: i for i, w in enumerate(spec.vocab)}
    x = np.full((len(tokens), maxlen), spec.pad_id, dtype=np.int64)
    for i, toks in enumerate(tokens):
        ids = [index.get(t, spec.unk_id) for t in toks]
        x[i, : len(ids)] = ids
    return AuditData(
        name=path.stem,
        task="text-classification",
        x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te],
        class_names=class_names,
        positive_class=card.positive_class if card is not None else None,
        text=spec,
        meta={"kind": kind, "source": str(path), "sha256": file_sha256(path), "text": text,
              "label": label, "maxlen": maxlen, "test_fraction": test_fraction, "seed": seed,
              "vocab": vocab_source, "labels": "strings" if _is_text(frame[label]) else "integers"},
    )


# --------------------------------------------------------------------------- npz


def _as_images(x: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` or ``[N, C, H, W]`` / ``[N, H, W, C]`` → float32 ``[N, C, H, W]``."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # channels-last to channels-first
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def read_npz(
    path: str | Path, card: AuditCard | None = None, test_fraction: float = 0.25, seed: int = 0
) -> AuditData:
    """A NumPy ``.npz`` archive (read with ``allow_pickle=False``).

    Arrays: ``x`` ``[N, ...]`` and ``y`` ``[N]``, split here; or, if ``x_train``/``y_train``
    are present too, those are the training split and ``x``/``y`` (or ``x_test``/``y_test``)
    the test split. Rules of :func:`data_from_arrays`.
    """
    path = Path(path)
    kind = "npz"
    _require_file(path, kind)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:
        raise DataError(f"{kind}: cannot read {path} as a NumPy .npz archive without pickles "
                        f"({exc}); save it with numpy.savez and plain arrays") from None
    what = f"{kind} {path}"
    if "x_train" in arrays or "y_train" in arrays:
        test_key = "x_test" if "x_test" in arrays else "x"
        needed = ["x_train", "y_train", test_key, "y" + test_key[1:]]
    else:
        needed = ["x", "y"]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise DataError(f"{what}: missing array(s) {missing}; it holds {sorted(arrays)} "
                        f"(save x and y, or x_train, y_train, x_test and y_test)")
    data = data_from_arrays({k: arrays[k] for k in needed}, card, what=what, name=path.stem,
                            test_fraction=test_fraction, seed=seed)
    data.meta.update({"kind": kind, "source": str(path), "sha256": file_sha256(path)})
    if len(needed) == 4:
        data.meta["split"] = "file"
    return data


def data_from_arrays(
    arrays: dict[str, np.ndarray],
    card: AuditCard | None = None,
    what: str = "arrays",
    name: str = "arrays",
    test_fraction: float = 0.25,
    seed: int = 0,
) -> AuditData:
    """:class:`AuditData` from ``{"x", "y"}`` (split here, stratified and seeded) or
    ``{"x_train", "y_train", "x_test"|"x", "y_test"|"y"}`` (the given split).

    ``x`` is ``[N, ...]`` numeric, ``y`` ``[N]`` integer labels ``0..K-1`` or class-name
    strings. The task is the card's; without a card, ``[N, F]`` arrays are tabular (schema
    inferred as for CSV, columns named ``f0``...) and arrays of 3 or more axes are images
    (uint8 scaled to [0, 1], channels first; ``[N, H, W]`` gets a channel axis). Token ids
    ``[N, L]`` are text with a text card (:func:`as_text_data` converts without one).
    """
    keys = list(arrays)
    for key, arr in arrays.items():
        if arr.ndim == 0 or len(arr) == 0:
            raise DataError(f"{what}: array {key!r} is empty")
        if key.startswith("x") and arr.dtype.kind not in "biuf":
            raise DataError(f"{what}: array {key!r} must be numeric, got {arr.dtype}")
        if key.startswith("y") and arr.ndim != 1:
            hint = " (one-hot? pass y.argmax(1))" if arr.ndim == 2 and arr.shape[1] > 1 else " (pass y.ravel())"
            raise DataError(f"{what}: labels {key!r} must be 1-D class indices [N], got shape "
                            f"{list(arr.shape)}{hint}")
    for xk, yk in zip(keys[::2], keys[1::2]):
        if len(arrays[xk]) != len(arrays[yk]):
            raise DataError(
                f"{what}: {xk} has {len(arrays[xk])} rows but {yk} has {len(arrays[yk])}"
            )
    parts = list(arrays.values())
    n_train = len(parts[0]) if len(parts) == 4 else None
    if n_train is not None and parts[0].shape[1:] != parts[2].shape[1:]:
        raise DataError(f"{what}: {keys[0]} samples have shape {list(parts[0].shape[1:])} but {keys[2]} "
                        f"samples {list(parts[2].shape[1:])}")
    x_all = np.concatenate([parts[0], parts[2]]) if n_train is not None else parts[0]
    y_all = np.concatenate([parts[1], parts[3]]) if n_train is not None else parts[1]
    if x_all.dtype.kind == "f" and not np.isfinite(x_all).all():
        bad = np.flatnonzero(~np.isfinite(x_all.reshape(len(x_all), -1)).all(1))
        raise DataError(f"{what}: x contains NaN or infinite values in {len(bad)} samples (first: "
                        f"{bad[:5].tolist()}); fill or drop those rows")
    y, class_names = encode_labels(y_all, card, f"{what} labels")
    task = card.task if card is not None else ("tabular-classification" if x_all.ndim == 2
                                               else "image-classification")
    features, text = None, None
    if task in ("image-classification", "gan"):
        if x_all.ndim < 3:
            raise DataError(f"{what}: images must be [N, H, W] or [N, C, H, W], got shape {list(x_all.shape)}")
        x = _as_images(x_all)
    elif task == "tabular-classification":
        import pandas as pd

        if x_all.ndim != 2:
            raise DataError(f"{what}: tabular x must be [N, F], got shape {list(x_all.shape)}")
        if card is not None and card.features:
            if x_all.shape[1] != len(card.features):
                raise DataError(f"{what}: x has {x_all.shape[1]} columns but the card has "
                                f"{len(card.features)} features")
            features = [f.model_copy(deep=True) for f in card.features]
            cols = [_apply_feature(f, pd.Series(x_all[:, i]), what) for i, f in enumerate(features)]
        else:
            inferred = [
                _infer_feature(f"f{i}", pd.Series(x_all[:, i])) for i in range(x_all.shape[1])
            ]
            features = [spec for spec, _ in inferred]
            cols = [values for _, values in inferred]
        x = np.stack(cols, axis=1).astype(np.float32)
    elif task == "text-classification" and card is not None and card.text is not None:
        x, text = _token_ids(x_all, len(card.text.vocab), what), card.text.model_copy(deep=True)
    else:
        raise DataError(f"{what}: the card's task {task!r} has no labelled data to read")
    if n_train is not None:
        tr, te = np.arange(n_train), np.arange(n_train, len(y))
    else:
        tr, te = stratified_split(y, test_fraction, seed, what, class_names)
    return AuditData(
        name=name,
        task=task,
        x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te],
        class_names=class_names,
        positive_class=card.positive_class if card is not None else None,
        features=features,
        text=text,
        meta={"split": "given" if n_train is not None else f"stratified seed={seed}",
              "test_fraction": test_fraction, "seed": seed,
              "labels": "strings" if y_all.dtype.kind in "OUS" else "integers",
              "x_integral": bool(x_all.dtype.kind in "biu" or np.all(np.mod(x_all, 1) == 0))},
    )


def _token_ids(x: np.ndarray, vocab_size: int, what: str) -> np.ndarray:
    """Integer-valued ``[N, L]`` ids in ``[0, vocab_size)`` as int64 (DataError otherwise)."""
    if x.ndim != 2 or x.dtype.kind not in "biuf" or (x.dtype.kind == "f" and not np.all(np.mod(x, 1) == 0)):
        raise DataError(f"{what}: text x must be integer token ids [N, L], got {x.dtype} {list(x.shape)}")
    ids = x.astype(np.int64)
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise DataError(f"{what}: token ids range over {int(ids.min())}..{int(ids.max())}, outside the "
                        f"vocabulary 0..{vocab_size - 1}; encode the text with the model's vocabulary")
    return ids


def as_text_data(data: AuditData, text: TextSpec) -> AuditData:
    """Tabular-read integer arrays ``[N, L]`` as text :class:`AuditData` over ``text``'s vocabulary
    (what :func:`data_from_arrays` gives with a text card)."""
    what = data.name
    out = copy.copy(data)
    out.x_train = _token_ids(data.x_train, len(text.vocab), what)
    out.x_test = _token_ids(data.x_test, len(text.vocab), what)
    out.task, out.features, out.text = "text-classification", None, text
    return out


def check_fits_card(data: AuditData, card: AuditCard) -> None:
    """Refuse data a model with ``card`` cannot be audited on: values outside the card's
    ``bounds`` (attacks and attributions work inside them). Raises :class:`DataError` naming
    the samples and values and the two fixes (rescale the data, or fix ``bounds``)."""
    if card.bounds is None or card.task not in ("image-classification", "gan"):
        return
    lo, hi = card.bounds
    tol = 1e-6 * (hi - lo)
    for split in ("test", "train"):
        x = getattr(data, f"x_{split}")
        if x.dtype.kind != "f" or x.size == 0:
            continue
        flat = x.reshape(len(x), -1)
        bad = np.flatnonzero((flat.min(1) < lo - tol) | (flat.max(1) > hi + tol))
        if bad.size:
            raise DataError(
                f"{data.name}: {bad.size} {split} samples (first: {bad[:5].tolist()}) hold values outside the "
                f"card's bounds [{lo:g}, {hi:g}] (data range [{float(x.min()):.4g}, {float(x.max()):.4g}]); "
                f"rescale the data into [{lo:g}, {hi:g}] (e.g. divide 0..255 pixels by 255), or fix 'bounds' in "
                f"the card or with --bounds LO,HI"
            )
