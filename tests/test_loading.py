"""Safe loading (DESIGN §4): every accepted format gives the same predictions; pickles are refused."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from auditkit.card import AuditCard, CardError
from auditkit.data import load_data
from auditkit.loading import (
    ModelInputError,
    ModelLoadError,
    UnsafeModelError,
    load_model,
    load_zoo_file,
)
from tests.conftest import run_cli, zoo_model_path

FORMATS = ["zoo", "torchscript", "export", "state_dict-registered", "state_dict-import", "safetensors"]


def _write_format(fmt: str, name: str, tmp: Path) -> tuple[Path, dict]:
    """Write zoo model ``name`` in ``fmt``; returns the path and load_model kwargs."""
    loaded = load_zoo_file(zoo_model_path(name))
    module, card = loaded.module, loaded.card
    card_json = card.to_json()
    example = torch.zeros([2, *card.input_shape])
    if fmt == "zoo":
        return zoo_model_path(name), {}
    if fmt == "torchscript":
        path = tmp / "model.ts.pt"
        torch.jit.save(torch.jit.trace(module, example), str(path), _extra_files={"card.json": card_json})
        return path, {}
    if fmt == "export":
        path = tmp / "model.pt2"
        # The batch axis must be dynamic: the scan feeds batches of any size.
        program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(path), extra_files={"card.json": card_json})
        return path, {}
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    # Weights-only formats carry no card: it goes beside the file.
    card_no_arch = card.model_copy(update={"architecture": None})
    if fmt == "state_dict-registered":
        path = tmp / "weights.pt"
        torch.save(state, path)
        (tmp / "weights.card.json").write_text(card_no_arch.to_json())
        return path, {"arch": card.architecture}
    if fmt == "state_dict-import":
        path = tmp / "weights.pt"
        torch.save(state, path)
        (tmp / "weights.card.json").write_text(card_no_arch.to_json())
        cls = type(module).__name__
        return path, {"arch": f"auditkit.zoo.models:{cls}"}
    if fmt == "safetensors":
        path = tmp / "weights.safetensors"
        save_file(state, str(path))
        (tmp / "weights.card.json").write_text(card_no_arch.to_json())
        return path, {"arch": card.architecture}
    raise AssertionError(fmt)


@pytest.mark.parametrize("name", ["cnn-digits", "fraud-mlp"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_same_predictions(name: str, fmt: str, tmp_path: Path) -> None:
    reference = load_model(zoo_model_path(name), device="cpu")
    data = load_data(reference.card.dataset or "")
    x = data.x_test[:64]
    path, kwargs = _write_format(fmt, name, tmp_path)
    model = load_model(path, device="cpu", **kwargs)
    assert model.card.class_names == reference.card.class_names
    np.testing.assert_allclose(model.logits(x), reference.logits(x), rtol=1e-4, atol=1e-5)
    assert model.eager == (fmt not in ("torchscript", "export"))


def test_zoo_file_loads_with_weights_only() -> None:
    payload = torch.load(zoo_model_path("cnn-digits"), weights_only=True)
    assert payload["format"] == "auditkit/1"
    AuditCard.from_dict(payload["card"])


EVIL_MODULE = textwrap.dedent(
    """
    import pathlib, torch
    pathlib.Path({marker!r}).write_text("code from the model file ran")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))
    """
)


def _make_evil_pickle(tmp: Path) -> tuple[Path, Path]:
    """A whole pickled module whose class lives in a module that writes a marker on import."""
    marker = tmp / "marker"
    pkg = tmp / "evilpkg"
    pkg.mkdir()
    (pkg / "evilnet.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    sys.path.insert(0, str(pkg))
    try:
        import evilnet  # noqa: F401 - importing writes the marker once, here, while building

        model = evilnet.Net()
        path = tmp / "whole.pt"
        torch.save(model, path)
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop("evilnet", None)
    marker.unlink()
    card = AuditCard(task="image-classification", input_shape=[1, 8, 8], bounds=(0.0, 1.0),
                     class_names=[str(i) for i in range(10)], dataset="digits")
    (tmp / "whole.card.json").write_text(card.to_json())
    return path, marker


def test_pickled_module_is_refused_and_its_code_never_runs(tmp_path: Path) -> None:
    path, marker = _make_evil_pickle(tmp_path)
    env = {"PYTHONPATH": str(tmp_path / "evilpkg")}  # the class is importable: refusal must not rely on luck
    proc = run_cli("scan", str(path), "--out", str(tmp_path / "out"), "--quiet", env=env)
    assert proc.returncode == 3, proc.stderr
    assert "pickled" in proc.stderr and "evilnet.Net" in proc.stderr
    assert "state_dict" in proc.stderr and "--trust-pickle" in proc.stderr  # says how to convert
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "results.json").exists()

    # The same file with --trust-pickle is loaded (and its code runs): the marker proves the
    # refusal above was real, not an artefact of a broken file.
    with pytest.raises(UnsafeModelError):
        load_model(path)
    sys.path.insert(0, str(tmp_path / "evilpkg"))
    try:
        model = load_model(path, trust_pickle=True, device="cpu")
    finally:
        sys.path.remove(str(tmp_path / "evilpkg"))
        sys.modules.pop("evilnet", None)
    assert marker.exists()
    assert model.format == "pickle"


def test_python_api_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelInputError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "rand.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="not a model file"):
        load_model(tmp_path / "rand.pt")
    raw = zoo_model_path("cnn-digits").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.pt")
    state = load_zoo_file(zoo_model_path("cnn-digits")).module.state_dict()
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CardError, match="no audit card"):
        load_model(tmp_path / "w.pt", arch="cnn-digits")
    card = json.loads(load_zoo_file(zoo_model_path("cnn-digits")).card.to_json())
    (tmp_path / "w.card.json").write_text(json.dumps({**card, "architecture": None}))
    with pytest.raises(ModelInputError, match="--arch"):
        load_model(tmp_path / "w.pt")
    with pytest.raises(ModelInputError, match="cannot import"):
        load_model(tmp_path / "w.pt", arch="no_such_pkg.mod:Net")
    with pytest.raises(ModelInputError, match="cannot build"):
        load_model(tmp_path / "w.pt", arch="auditkit.zoo.models:ReviewsLSTM")
    (tmp_path / "w.card.json").write_text(
        json.dumps({**card, "architecture": None, "arch_kwargs": {"num_classes": 10, "width": 16}}))
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(tmp_path / "w.pt", arch="cnn-digits")
