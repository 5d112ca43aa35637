"""File readers: torchvision image layouts, CSV/Parquet tables, text CSV and npz, and bad inputs."""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torchvision import datasets

from auditkit.card import AuditCard, FeatureSpec, TextSpec
from auditkit.data import DataError, load_data

# --------------------------------------------------------------------------- images


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the big-endian idx format of the MNIST files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(
    root: Path, folder: str, n_train: int = 20, n_test: int = 10
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    # The names torchvision looks for, taken from the installed source rather than hard-coded.
    cls = datasets.MNIST if folder == "MNIST" else datasets.FashionMNIST
    assert sorted(Path(name).stem for name, _ in cls.resources) == sorted(arrays)
    for name, array in arrays.items():
        _write_idx(root / folder / "raw" / name, array)
    return arrays


@pytest.mark.parametrize("kind, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_style_round_trip(tmp_path: Path, kind: str, folder: str) -> None:
    arrays = _write_mnist(tmp_path, folder)
    d = load_data(f"{kind}:{tmp_path}")
    assert d.task == "image-classification"
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert d.x_train.dtype == np.float32 and 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    train_images = arrays["train-images-idx3-ubyte"]
    np.testing.assert_allclose(d.x_train[:, 0] * 255.0, train_images, atol=1e-3)
    assert d.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert len(d.class_names) == 10
    if kind == "fashion-mnist":
        assert d.class_names[0] == "T-shirt/top"
    raw = tmp_path / folder / "raw"
    expected = hashlib.sha256(b"".join((raw / Path(n).stem).read_bytes()
                                       for n, _ in datasets.MNIST.resources)).hexdigest()
    assert d.meta["sha256"] == expected and d.meta["source"] == str(tmp_path)


def test_mnist_missing_root_says_no_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_data(f"mnist:{tmp_path / 'nowhere'}")
    msg = str(info.value)
    assert "never downloads" in msg and str(tmp_path / "nowhere" / "MNIST" / "raw") in msg


def test_mnist_corrupt_file(tmp_path: Path) -> None:
    _write_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\xff")
    with pytest.raises(DataError, match="unreadable or corrupt"):
        load_data(f"mnist:{tmp_path}")


def _write_cifar(root: Path, per_batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python batches in torchvision's layout; returns the test images and labels."""
    folder = root / datasets.CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = [n for n, _ in datasets.CIFAR10.train_list] + [n for n, _ in datasets.CIFAR10.test_list]
    for i, name in enumerate(names):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f)
    with open(folder / datasets.CIFAR10.meta["filename"], "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return data.reshape(-1, 3, 32, 32), np.asarray(labels)


def test_cifar10_round_trip(tmp_path: Path) -> None:
    x_test, y_test = _write_cifar(tmp_path)
    d = load_data(f"cifar10:{tmp_path}")
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(d.x_test * 255.0, x_test, atol=1e-3)
    assert d.y_test.tolist() == y_test.tolist()
    assert d.class_names == [f"class{i}" for i in range(10)]
    assert len(d.meta["sha256"]) == 64


class _Exploit:
    """Unpickling this runs a shell command (what a crafted "batch" file could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / datasets.CIFAR10.base_folder / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": _Exploit(marker), "labels": [0]}))
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        load_data(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_cifar10_missing_root_says_no_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="never downloads"):
        load_data(f"cifar10:{tmp_path}")


# --------------------------------------------------------------------------- tables


def _table(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        {
            "amount": np.round(rng.uniform(1.0, 100.0, n), 2),
            "count": rng.integers(0, 7, n),
            "flag": rng.integers(0, 2, n),
            "city": rng.choice(["paris", "berlin", "rome"], n),
            "label": np.where(np.arange(n) % 3 == 0, "fraud", "legit"),
        }
    )


def test_csv_round_trip_infers_schema(tmp_path: Path) -> None:
    df = _table()
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    d = load_data(f"csv:{path}?target=label")
    assert d.task == "tabular-classification"
    assert [(f.name, f.kind) for f in d.features or []] == [
        ("amount", "continuous"), ("count", "integer"), ("flag", "binary"), ("city", "categorical")
    ]
    city = (d.features or [])[3]
    assert city.categories == ["berlin", "paris", "rome"] and (city.min, city.max) == (0, 2)
    features = d.features or []
    assert features[0].min == df["amount"].min() and features[1].max == df["count"].max()
    assert all(f.changeable for f in d.features or [])
    assert d.class_names == ["fraud", "legit"]
    assert len(d.y_train) + len(d.y_test) == 60 and len(d.y_test) == 15
    assert d.meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # Every row comes back, encoded: match rows by their unique amount.
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    order = np.argsort(x[:, 0])
    ref = df.sort_values("amount").reset_index(drop=True)
    np.testing.assert_allclose(x[order, 0], ref["amount"], rtol=1e-6)
    assert [city.categories[int(c)] for c in x[order, 3]] == ref["city"].tolist()
    assert [d.class_names[i] for i in y[order]] == ref["label"].tolist()


def test_parquet_matches_csv(tmp_path: Path) -> None:
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    a = load_data(f"csv:{tmp_path / 't.csv'}?target=label&seed=3")
    b = load_data(f"parquet:{tmp_path / 't.parquet'}?target=label&seed=3")
    assert a.sha256() == b.sha256() and a.features == b.features
    c = load_data(f"parquet:{tmp_path / 't.parquet'}?target=label&seed=4")
    assert c.sha256() != b.sha256()


def _card(features: list[FeatureSpec], class_names: list[str]) -> AuditCard:
    return AuditCard(task="tabular-classification", input_shape=[len(features)],
                     class_names=class_names, positive_class=class_names[-1], features=features)


_CARD_FEATURES = [
    FeatureSpec(name="city", kind="categorical", min=0, max=3,
                categories=["rome", "paris", "berlin", "oslo"]),
    FeatureSpec(name="amount", kind="continuous", min=0, max=1000, unit="EUR", changeable=False),
]


def test_csv_with_card_uses_its_schema_and_class_order(tmp_path: Path) -> None:
    df = _table()
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    d = load_data(f"csv:{path}?target=label", card=_card(_CARD_FEATURES, ["legit", "fraud"]))
    assert d.features == _CARD_FEATURES  # card order, card ranges; other columns ignored
    assert d.class_names == ["legit", "fraud"] and d.positive_class == "fraud"
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    order = np.argsort(x[:, 1])
    ref = df.sort_values("amount").reset_index(drop=True)
    categories = _CARD_FEATURES[0].categories or []
    assert [categories[int(c)] for c in x[order, 0]] == ref["city"].tolist()
    assert [["legit", "fraud"][i] for i in y[order]] == ref["label"].tolist()


def test_csv_card_errors(tmp_path: Path) -> None:
    df = _table()
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    spec = f"csv:{path}?target=label"
    extra = FeatureSpec(name="merchant", kind="integer", min=0, max=9)
    with pytest.raises(DataError, match=r"no column\(s\) \['merchant'\]"):
        load_data(spec, card=_card([*_CARD_FEATURES, extra], ["legit", "fraud"]))
    narrow = FeatureSpec(name="city", kind="categorical", min=0, max=1,
                         categories=["rome", "paris"])
    with pytest.raises(DataError, match=r"values \['berlin'\] that are not among"):
        load_data(spec, card=_card([narrow], ["legit", "fraud"]))
    codes = FeatureSpec(name="count", kind="categorical", min=0, max=2, categories=["a", "b", "c"])
    with pytest.raises(DataError, match="outside the card's categories 0..2"):
        load_data(spec, card=_card([codes], ["legit", "fraud"]))
    with pytest.raises(DataError, match=r"labels \['fraud'\] are not among the card's class_names"):
        load_data(spec, card=_card(_CARD_FEATURES, ["legit", "chargeback"]))
    image_card = AuditCard(task="image-classification", input_shape=[1, 8, 8],
                           class_names=["a", "b"])
    with pytest.raises(DataError, match="card is for task 'image-classification'"):
        load_data(spec, card=image_card)


def test_integer_labels_and_bad_labels(tmp_path: Path) -> None:
    df = _table().drop(columns="label")
    df["y"] = np.arange(len(df)) % 3
    df.to_csv(tmp_path / "ok.csv", index=False)
    d = load_data(f"csv:{tmp_path / 'ok.csv'}?target=y")
    assert d.class_names == ["0", "1", "2"]
    df["y"] = (np.arange(len(df)) % 2) * 0.5  # 0.0 / 0.5 are not class indices
    df.to_csv(tmp_path / "frac.csv", index=False)
    with pytest.raises(DataError, match="labels must be integers"):
        load_data(f"csv:{tmp_path / 'frac.csv'}?target=y")
    df["y"] = np.arange(len(df)) % 2 - 1  # -1 / 0
    df.to_csv(tmp_path / "neg.csv", index=False)
    with pytest.raises(DataError, match="found -1..0"):
        load_data(f"csv:{tmp_path / 'neg.csv'}?target=y")
    df["y"] = 0
    df.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError, match="only one class"):
        load_data(f"csv:{tmp_path / 'one.csv'}?target=y")


@pytest.mark.parametrize(
    "content, query, needle",
    [
        (None, "target=label", "no such file"),
        ("", "target=label", "is empty"),
        ("a,b,label\n", "target=label", "no data rows"),
        ("a,b,label\n1,2,x\n3,4,y\n", "target=class",
         "no column(s) ['class'] (the target); its columns are ['a', 'b', 'label']"),
        ("a,b,label\n1,,x\n3,4,y\n", "target=label", "column 'b'"),
        ("a,b,label\n1,2,x\n3,4,y\n", "", "name the label column"),
        ("a,b,label\n1,2,x\n3,4,y\n", "target=label&sep=;", "unknown argument(s) ['sep']"),
    ],
)
def test_csv_bad_inputs(tmp_path: Path, content: str | None, query: str, needle: str) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as info:
        load_data(f"csv:{path}?{query}" if query else f"csv:{path}")
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_a_class_with_one_sample_falls_back_to_a_plain_split(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{'rare' if i == 0 else 'ab'[i % 2]}" for i in range(40))
    (tmp_path / "t.csv").write_text("a,label\n" + rows + "\n")
    data = load_data(f"csv:{tmp_path / 't.csv'}?target=label")
    assert data.class_names == ["a", "b", "rare"] and len(data.y_train) + len(data.y_test) == 40
    again = load_data(f"csv:{tmp_path / 't.csv'}?target=label")
    assert (again.y_test == data.y_test).all()  # still seeded


def test_nan_message_names_count_and_fix(tmp_path: Path) -> None:
    df = _table()
    df.loc[[3, 7], "amount"] = np.nan
    df.to_parquet(tmp_path / "t.parquet")
    needle = "column 'amount'.* has 2 missing \\(NaN\\) values; fill or drop"
    with pytest.raises(DataError, match=needle):
        load_data(f"parquet:{tmp_path / 't.parquet'}?target=label")


# --------------------------------------------------------------------------- text


def _text_frame() -> pd.DataFrame:
    texts = ["Good movie", "great film", "bad movie", "awful film"] * 6
    return pd.DataFrame({"review": texts, "sentiment": ["pos", "pos", "neg", "neg"] * 6})


@pytest.mark.parametrize("seed", [0, 4])  # the long row lands in train with seed 0, test with 4
def test_text_csv_round_trip(tmp_path: Path, seed: int) -> None:
    df = _text_frame()
    df.loc[len(df)] = ["a truly unique phrase here", "pos"]  # its words can only be in one split
    df.to_csv(tmp_path / "r.csv", index=False)
    d = load_data(f"text-csv:{tmp_path / 'r.csv'}?text=review&label=sentiment&maxlen=3&seed={seed}")
    assert d.text is not None and d.text.vocab[:2] == ["<pad>", "<unk>"]
    assert d.class_names == ["neg", "pos"]
    assert d.x_train.shape[1] == 3 and d.x_train.dtype == np.int64
    vocab = d.text.vocab
    assert "good" in vocab and "Good" not in vocab  # lower-cased
    rows = [[vocab[i] for i in r if i != 0] for r in np.concatenate([d.x_train, d.x_test])]
    assert ["good", "movie"] in rows and all(len(r) <= 3 for r in rows)
    # The vocabulary holds the train split's words as the model sees them (truncated to maxlen):
    long_row = ["a", "truly", "unique"]
    if seed == 0:  # the long row fell into train
        assert long_row in rows
        assert "phrase" not in vocab and "here" not in vocab
    else:  # it fell into test: none of its words are in the train-built vocabulary
        assert not set(long_row) & set(vocab)
        assert [1, 1, 1] in d.x_test.tolist()


def test_text_csv_uses_card_vocab(tmp_path: Path) -> None:
    _text_frame().to_csv(tmp_path / "r.csv", index=False)
    vocab = ["<unk>", "movie", "good", "<pad>", "bad"]  # ids deliberately not in the usual order
    card = AuditCard(task="text-classification", input_shape=[4], input_dtype="int64",
                     class_names=["pos", "neg"], text=TextSpec(vocab=vocab))
    d = load_data(f"text-csv:{tmp_path / 'r.csv'}?text=review&label=sentiment", card=card)
    assert d.text == card.text and d.x_test.shape[1] == 4
    x = np.concatenate([d.x_train, d.x_test]).tolist()
    assert [2, 1, 3, 3] in x  # good movie <pad> <pad>
    assert [0, 0, 3, 3] in x  # great film are unknown
    y = np.concatenate([d.y_train, d.y_test])
    assert d.class_names == ["pos", "neg"] and set(y.tolist()) == {0, 1}


def test_text_csv_bad_inputs(tmp_path: Path) -> None:
    _text_frame().to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match=r"no column\(s\) \['body'\]"):
        load_data(f"text-csv:{tmp_path / 'r.csv'}?text=body&label=sentiment")
    with pytest.raises(DataError, match="name both columns"):
        load_data(f"text-csv:{tmp_path / 'r.csv'}?text=review")
    with pytest.raises(DataError, match="maxlen='x' is not a valid whole number"):
        load_data(f"text-csv:{tmp_path / 'r.csv'}?text=review&label=sentiment&maxlen=x")


# --------------------------------------------------------------------------- npz


def test_npz_tabular_split_here(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(size=40), rng.integers(0, 2, 40)]).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(40) % 2)
    d = load_data(f"npz:{tmp_path / 'a.npz'}")
    assert d.task == "tabular-classification"
    assert d.x_train.shape == (30, 2) and d.x_test.shape == (10, 2)
    assert [f.kind for f in d.features or []] == ["continuous", "binary"]
    assert d.class_names == ["0", "1"]
    first = np.concatenate([d.x_train, d.x_test])[:, 0]
    np.testing.assert_array_equal(np.sort(first), np.sort(x[:, 0]))


def test_npz_images_with_own_split_and_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x_train = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "i.npz", x_train=x_train, y_train=np.array(["dog", "cat"] * 3),
             x=x_test, y=np.array(["cat", "cat", "dog", "dog"]))
    d = load_data(f"npz:{tmp_path / 'i.npz'}")
    assert d.task == "image-classification" and d.x_train.shape == (6, 1, 28, 28)
    np.testing.assert_allclose(d.x_test[:, 0] * 255.0, x_test, atol=1e-3)  # file order kept
    assert d.class_names == ["cat", "dog"] and d.y_test.tolist() == [0, 0, 1, 1]
    assert d.meta["split"] == "file"


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ({"x": np.zeros((4, 2))}, "missing array(s) ['y']"),
        ({"x": np.array([[np.nan, 1.0]] * 4), "y": np.array([0, 1, 0, 1])}, "NaN"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 2, -1])}, "labels must be integers"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0])}, "x has 4 rows but y has 3"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, dtype=int)}, "array 'x' is empty"),
        ({"x": np.array([[{}]] * 4, dtype=object), "y": np.array([0, 1, 0, 1])}, "without pickles"),
    ],
)
def test_npz_bad_inputs(tmp_path: Path, arrays: dict[str, np.ndarray], needle: str) -> None:
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(DataError) as info:
        load_data(f"npz:{tmp_path / 'b.npz'}")
    assert needle in str(info.value)


def test_npz_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_data(f"npz:{tmp_path / 'none.npz'}")
