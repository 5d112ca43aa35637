"""The zoo: a meta-schema test over every entry (in the spirit of torchvision's), the CLI,
and retraining from the recipe reproducing the committed metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from auditkit.card import AuditCard
from auditkit.data import load_data
from auditkit.zoo import get_model, list_architectures, list_models, zoo_dir
from auditkit.zoo.recipes import get_recipe, train_zoo_model
from tests.conftest import run_cli

MODELS = list_models()  # the registry: adding a zoo model adds its tests
README_SECTIONS = ["## Data", "## Recipe", "## Metrics", "## Intended use", "## Known weaknesses"]


def test_the_zoo_lists_its_models() -> None:
    """The registry and the committed artifacts agree: every zoo/<name>/model.pt is a registered
    model and every registered model is trained and committed."""
    assert {"cnn-digits", "lstm-reviews", "fraud-mlp", "gan-digits"} <= set(MODELS)
    assert sorted(p.parent.name for p in zoo_dir().glob("*/model.pt")) == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_zoo_entry_meta_schema(name: str) -> None:
    folder = zoo_dir() / name
    payload = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    assert set(payload) == {"format", "card", "state_dict"}
    assert payload["format"] == "auditkit/1"
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    card = AuditCard.from_dict(payload["card"])
    assert card.name == name
    assert card.architecture in list_architectures()
    assert card.dataset and card.description
    module, loaded_card = get_model(name)
    assert loaded_card == card and not module.training
    data = load_data(card.dataset)
    assert data.input_shape == card.input_shape
    if card.task != "gan":
        assert card.class_names == data.class_names
        logits = module(torch.as_tensor(data.x_test[:4]))
        assert logits.shape == (4, card.num_classes)

    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("model", "epochs", "seed", "train_seconds", "n_params", "data_sha256"):
        assert key in metrics, key
    assert metrics["data_sha256"] == data.sha256(), "artifact trained on different data than the loader gives"
    assert metrics["n_params"] == sum(p.numel() for p in module.parameters())
    readme = (folder / "README.md").read_text()
    for section in README_SECTIONS:
        assert section in readme, f"{name} model card lacks {section}"


def test_committed_metrics_meet_the_targets() -> None:
    m = {n: json.loads((zoo_dir() / n / "metrics.json").read_text()) for n in MODELS}
    assert m["cnn-digits"]["test_accuracy"] >= 0.97
    assert m["lstm-reviews"]["test_accuracy"] >= 0.95
    assert "negation_accuracy" in m["lstm-reviews"] and m["lstm-reviews"]["n_negation"] > 100
    fraud = m["fraud-mlp"]
    # "Beats the all-legit baseline by a wide margin": ten times its PR-AUC, ROC-AUC well above 0.5.
    assert fraud["pr_auc"] >= 10 * fraud["baseline_all_legit"]["pr_auc"]
    assert fraud["roc_auc"] >= 0.9
    gan = m["gan-digits"]
    assert gan["confident_fraction"] >= 0.8
    assert gan["classes_covered"] == 10
    # Adversarial training: more robust than the undefended model at every eps up to its
    # training eps (0.1), under the standard suite on the same samples.
    at = m["cnn-digits-at"]
    for eps, value in at["robust_accuracy_linf"].items():
        if 0 < float(eps) <= 0.1:
            assert value >= at["undefended_robust_accuracy_linf"][eps], eps
    assert at["robust_accuracy_linf"]["0.1"] >= at["undefended_robust_accuracy_linf"]["0.1"] + 0.1
    assert at["training_cost"]["ratio"] > 1


def test_zoo_cli_list_and_info() -> None:
    proc = run_cli("zoo", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    infos = json.loads(proc.stdout)
    assert [i["name"] for i in infos] == MODELS
    assert all(i["trained"] and i["metrics"] for i in infos)
    proc = run_cli("zoo", "list")
    assert proc.returncode == 0 and "test_accuracy=0.98" in proc.stdout
    proc = run_cli("zoo", "info", "fraud-mlp")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["card"]["positive_class"] == "fraud"
    proc = run_cli("zoo", "info", "no-such-model")
    assert proc.returncode == 2 and "unknown zoo model" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_zoo_train_on_missing_cuda_is_bad_usage(tmp_path: Path) -> None:
    proc = run_cli("zoo", "train", "fraud-mlp", "--device", "cuda", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 2
    assert "cuda" in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert not (tmp_path / "model.pt").exists()


def _retrain_matches(name: str, tmp_path: Path, keys: dict[str, float]) -> None:
    committed = json.loads((zoo_dir() / name / "metrics.json").read_text())
    fresh = train_zoo_model(name, out_dir=tmp_path, progress=False)
    for key, tol in keys.items():
        assert abs(fresh[key] - committed[key]) <= tol, (key, fresh[key], committed[key])
    assert (tmp_path / "model.pt").exists() and (tmp_path / "README.md").exists()
    assert not (tmp_path / "train.ckpt").exists()


def test_retraining_cnn_reproduces_committed_metrics(tmp_path: Path) -> None:
    _retrain_matches("cnn-digits", tmp_path, {"test_accuracy": 0.01})


def test_retraining_fraud_reproduces_committed_metrics(tmp_path: Path) -> None:
    _retrain_matches("fraud-mlp", tmp_path, {"roc_auc": 0.01, "pr_auc": 0.05})


@pytest.mark.slow
def test_retraining_lstm_and_gan_reproduces_committed_metrics(tmp_path: Path) -> None:
    _retrain_matches("lstm-reviews", tmp_path / "lstm", {"test_accuracy": 0.01, "negation_accuracy": 0.01})
    _retrain_matches("gan-digits", tmp_path / "gan", {"confident_fraction": 0.05, "classes_covered": 0})


def test_cli_resume_after_a_kill_gives_the_same_model(tmp_path: Path) -> None:
    """Kill `zoo train` once a checkpoint exists, resume it: same weights as a straight run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "auditkit.cli", "zoo", "train", "fraud-mlp", "--epochs", "4", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "train.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the run ended"
    assert not (tmp_path / "killed" / "model.pt").exists()
    resumed = subprocess.run([*args, "--out", str(tmp_path / "killed"), "--resume"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess.run([*args, "--out", str(tmp_path / "straight")], env=env,
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    a = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
