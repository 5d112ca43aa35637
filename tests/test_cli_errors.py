"""Bad input through the real CLI: one-line message naming the fix, the right exit code,
no traceback, nothing half-written (DESIGN §6, issue 3's list)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch

from auditkit.data import load_data
from auditkit.loading import load_zoo_file
from tests.conftest import run_cli, zoo_model_path


def _cnn_weights(tmp: Path, card_update: dict | None = None, drop: str | None = None,
                 nan: bool = False) -> list[str]:
    loaded = load_zoo_file(zoo_model_path("cnn-digits"))
    state = loaded.module.state_dict()
    if nan:
        state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, tmp / "w.pt")
    card = json.loads(loaded.card.to_json())
    card.update(card_update or {})
    if drop:
        card.pop(drop)
    (tmp / "w.card.json").write_text(json.dumps(card))
    return [str(tmp / "w.pt"), "--arch", "cnn-digits"]


def _npz(tmp: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(tmp / "d.npz", x=x, y=y)
    return f"npz:{tmp / 'd.npz'}"


def _digits_like(n: int = 40, shape: tuple[int, ...] = (1, 8, 8)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, *shape), dtype=np.float32), np.arange(n) % 10


def case_missing_file(tmp: Path) -> list[str]:
    return [str(tmp / "nope.pt")]


def case_random_bytes(tmp: Path) -> list[str]:
    (tmp / "rand.pt").write_bytes(np.random.default_rng(1).bytes(2048))
    return [str(tmp / "rand.pt")]


def case_truncated_archive(tmp: Path) -> list[str]:
    raw = zoo_model_path("cnn-digits").read_bytes()
    (tmp / "cut.pt").write_bytes(raw[: len(raw) * 2 // 3])
    return [str(tmp / "cut.pt")]


def case_card_missing_field(tmp: Path) -> list[str]:
    return _cnn_weights(tmp, drop="task")


def case_shape_mismatch(tmp: Path) -> list[str]:
    x, y = _digits_like(shape=(1, 28, 28))
    return [str(zoo_model_path("cnn-digits")), "--data", _npz(tmp, x, y)]


def case_labels_out_of_range(tmp: Path) -> list[str]:
    x, y = _digits_like()
    return [str(zoo_model_path("cnn-digits")), "--data", _npz(tmp, x, y + 5)]


def case_nan_in_data(tmp: Path) -> list[str]:
    x, y = _digits_like()
    x[3, 0, 2, 2] = np.nan
    return [str(zoo_model_path("cnn-digits")), "--data", _npz(tmp, x, y)]


def case_model_returns_nan(tmp: Path) -> list[str]:
    return _cnn_weights(tmp, nan=True)


def case_output_width_mismatch(tmp: Path) -> list[str]:
    return _cnn_weights(tmp, card_update={"class_names": ["a", "b", "c", "d", "e"]})


def case_empty_data(tmp: Path) -> list[str]:
    return [str(zoo_model_path("cnn-digits")), "--data",
            _npz(tmp, np.zeros((0, 1, 8, 8), np.float32), np.zeros(0, np.int64))]


def case_unknown_arch(tmp: Path) -> list[str]:
    args = _cnn_weights(tmp)
    return args[:1] + ["--arch", "nosuchpackage.models:Net"]


def case_token_ids_beyond_vocab(tmp: Path) -> list[str]:
    data = load_data("reviews")
    x = data.x_test[:40].copy()
    x[0, 0] = 10_000
    return [str(zoo_model_path("lstm-reviews")), "--data", _npz(tmp, x, data.y_test[:40])]


def case_missing_tabular_columns(tmp: Path) -> list[str]:
    data = load_data("fraud")
    assert data.features is not None
    names = [f.name for f in data.features]
    frame = pd.DataFrame(data.x_test[:200], columns=names).drop(columns=[names[0]])
    frame["label"] = data.y_test[:200]
    frame.to_csv(tmp / "t.csv", index=False)
    return [str(zoo_model_path("fraud-mlp")), "--data", f"csv:{tmp / 't.csv'}?target=label"]


CASES: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    # name: (builder, exit code, a word the message must contain)
    "missing file": (case_missing_file, 2, "does not exist"),
    "random bytes": (case_random_bytes, 3, "not a model file"),
    "truncated archive": (case_truncated_archive, 3, "truncated"),
    "card missing a field": (case_card_missing_field, 2, "task"),
    "data shape": (case_shape_mismatch, 2, "shape"),
    "labels out of range": (case_labels_out_of_range, 2, "labels"),
    "NaN in data": (case_nan_in_data, 2, "NaN"),
    "model returns NaN": (case_model_returns_nan, 3, "NaN"),
    "output width": (case_output_width_mismatch, 2, "classes"),
    "empty data": (case_empty_data, 2, "empty"),
    "unknown --arch": (case_unknown_arch, 2, "nosuchpackage"),
    "token ids beyond vocabulary": (case_token_ids_beyond_vocab, 2, "vocabulary"),
    "missing tabular column": (case_missing_tabular_columns, 2, "column"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_clear_error_and_writes_nothing(case: str, tmp_path: Path) -> None:
    build, code, word = CASES[case]
    out = tmp_path / "out"
    proc = run_cli("scan", *build(tmp_path), "--out", str(out), "--quiet", "--samples", "16")
    assert proc.returncode == code, f"{case}: exit {proc.returncode}\n{proc.stderr}"
    message = proc.stderr.strip()
    assert "Traceback" not in message
    assert word.lower() in message.lower(), message
    assert len(message.splitlines()) <= 3, message  # one message (rich may wrap a long line)
    assert not (out / "results.json").exists()
    assert not any(out.glob("**/*.tmp")) if out.exists() else True


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli("scan", *case_random_bytes(tmp_path), "--out", str(tmp_path / "o"), "--debug", "--quiet")
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr
