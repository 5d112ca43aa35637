"""Bring your own model, through the real CLI: `auditkit scan MODEL --data SPEC` with no card, for
each accepted kind of user model; OUT/card.json reproduces the run; the card commands; the Python
API on objects gives the CLI's figures; bad card values and bad data are refused with one line
and exit 2 (issue 11's card and data cases)."""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch

import auditkit
from auditkit.results import AuditResult, strip_timings
from auditkit.verdict import core_checks
from tests.byom_models import MLP, SmallResNet, TextLSTM, fit
from tests.conftest import run_cli, zoo_model_path

FAST = ["--budget", "quick", "--samples", "8", "--threads", "1", "--only", "performance,attributions,robustness"]
CARD_PROVENANCE = ("card_source", "card_fields", "card_notes")


def _static_batch_pt2_supported() -> bool:
    from auditkit.loading import ExportedProgramModule

    return "max_batch" in inspect.signature(ExportedProgramModule).parameters


@pytest.fixture(scope="module")
def byom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """User models and data files, built here in a few seconds: what a user brings."""
    from sklearn.datasets import load_breast_cancer

    from auditkit.data import load_data

    root = tmp_path_factory.mktemp("byom")
    torch.manual_seed(0)
    digits = load_data("digits")
    x = np.concatenate([digits.x_train, digits.x_test])[:400]
    y = np.concatenate([digits.y_train, digits.y_test])[:400]
    np.savez(root / "digits.npz", x=x, y=y)
    cnn = fit(SmallResNet(), x, y, steps=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(cnn).save(str(root / "cnn.pt"))
    torch.save(cnn.state_dict(), root / "cnn_weights.pt")
    if _static_batch_pt2_supported():
        program = torch.export.export(cnn, (torch.zeros(4, 1, 8, 8),))  # a fixed batch of 4
        torch.export.save(program, str(root / "cnn_static.pt2"))

    cancer = load_breast_cancer(as_frame=True).frame  # real data: 569 rows, 30 features
    cancer.to_csv(root / "cancer.csv", index=False)
    xt = cancer.drop(columns="target").to_numpy(np.float32)
    mlp = fit(MLP(30, 1, xt.mean(0).tolist(), xt.std(0).tolist()), xt, cancer["target"].to_numpy(),
              steps=80, binary_logit=True)  # one logit per sample, as many binary models are trained
    torch.jit.script(mlp).save(str(root / "mlp.pt"))

    rng = np.random.default_rng(0)
    pos, neg = ["good", "great", "fine", "love"], ["bad", "awful", "poor", "hate"]
    filler = ["the", "movie", "was", "a", "plot", "it", "and", "very"]
    rows = []
    for i in range(240):
        words = [*rng.choice(filler, 4), rng.choice(pos if i % 2 else neg)]
        rng.shuffle(words)
        rows.append({"review": " ".join(words), "sentiment": "positive" if i % 2 else "negative"})
    pd.DataFrame(rows).to_csv(root / "reviews.csv", index=False)
    vocab = ["<pad>", "<unk>", *sorted(set(pos + neg + filler))]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.zeros((len(rows), 8), np.int64)
    for i, row in enumerate(rows):
        toks = [index[w] for w in row["review"].split()]
        ids[i, : len(toks)] = toks
    labels = np.asarray([r["sentiment"] == "positive" for r in rows], np.int64)
    lstm = fit(TextLSTM(len(vocab), 2), ids, labels, steps=60)
    torch.jit.script(lstm).save(str(root / "lstm.pt"))
    return {"root": root, "cnn": cnn, "x": x, "y": y}


# The CNN's other formats attack one Linf budget only: the epsilon grid is inferred in the first case.
ONE_EPS = ["--eps", "linf=0.03"]
CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # name: (model and data arguments, task)
    "torchscript cnn on npz": (lambda r: [str(r / "cnn.pt"), "--data", f"npz:{r / 'digits.npz'}"],
                               "image-classification"),
    "static-batch pt2": (lambda r: [str(r / "cnn_static.pt2"), "--data", f"npz:{r / 'digits.npz'}", *ONE_EPS],
                         "image-classification"),
    "state_dict and --arch": (lambda r: [str(r / "cnn_weights.pt"), "--arch", "tests.byom_models:SmallResNet",
                                         "--data", f"npz:{r / 'digits.npz'}", *ONE_EPS], "image-classification"),
    "torchscript mlp on a real csv": (lambda r: [str(r / "mlp.pt"), "--data", f"csv:{r / 'cancer.csv'}?target=target"],
                                      "tabular-classification"),
    "lstm on a text csv": (lambda r: [str(r / "lstm.pt"), "--data",
                                      f"text-csv:{r / 'reviews.csv'}?text=review&label=sentiment&maxlen=8"
                                      f"&vocab={r / 'vocab.txt'}"], "text-classification"),
}


@pytest.fixture(scope="module")
def cnn_scan(byom: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The TorchScript CNN scanned from the CLI with no card (shared by the tests that need it)."""
    out = tmp_path_factory.mktemp("cnn-scan")
    proc = run_cli("scan", *CASES["torchscript cnn on npz"][0](byom["root"]), "--out", str(out), *FAST, "--no-report")
    return out, proc


def _comparable(path: Path) -> dict[str, Any]:
    doc = strip_timings(json.loads(path.read_text()))
    for key in CARD_PROVENANCE:
        doc["provenance"].pop(key)
    return doc


@pytest.mark.parametrize("case", list(CASES))
def test_scan_without_a_card_and_its_card_reproduces_the_run(case: str, byom: dict[str, Any], tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    if case == "static-batch pt2" and not _static_batch_pt2_supported():
        pytest.skip("static-batch .pt2 loading (chunking and padding to the exported batch) has not landed in "
                    "auditkit.loading yet")
    args, task = CASES[case]
    out1, out2 = tmp_path / "inferred", tmp_path / "from-card"
    if case == "torchscript cnn on npz":
        out1, proc = request.getfixturevalue("cnn_scan")
    else:
        proc = run_cli("scan", *args(byom["root"]), "--out", str(out1), *FAST, "--no-report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "audit card (inferred" in proc.stderr  # the short table of what was inferred
    result = AuditResult.read(out1 / "results.json")
    prov = result.provenance
    assert prov.card["task"] == task and prov.card_source.startswith("inferred")
    assert prov.card_fields["task"] == "inferred" and prov.card_notes["task"]
    assert set(prov.card_fields.values()) <= {"inferred", "default", "flag"}
    for name in core_checks(task):  # every core check ran, or a high finding says why not
        section = result.sections[name]
        ran = section.status == "ok" and not section.incomplete
        assert ran or any(f.severity == "high" and f.section == name for f in result.findings), (name, section)

    again_args = [a for a in args(byom["root"]) if a not in ONE_EPS]  # the card holds the flags' values
    proc = run_cli("scan", *again_args, "--card", str(out1 / "card.json"), "--out", str(out2), *FAST,
                   "--no-report", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.strip() == "" and proc.stdout.strip() == ""  # --quiet: no card table either
    again = AuditResult.read(out2 / "results.json").provenance
    assert set(again.card_fields.values()) == {"file"} and again.card_notes == {}
    assert _comparable(out1 / "results.json") == _comparable(out2 / "results.json")
    assert (out2 / "card.json").read_text() == (out1 / "card.json").read_text()


def test_inferred_card_of_each_model_says_what_was_assumed(byom: dict[str, Any], tmp_path: Path) -> None:
    """The card init draft of the binary MLP (one logit, imbalanced real labels), checked and read back."""
    root = byom["root"]
    draft = tmp_path / "mlp.card.json"
    proc = run_cli("card", "init", str(root / "mlp.pt"), "--data", f"csv:{root / 'cancer.csv'}?target=target",
                   "--out", str(draft))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(draft.read_text())
    assert doc["output"] == "binary-logit" and "logit of class 1" in doc["_output"]
    assert doc["positive_class"] == "0" and "37.3%" in doc["_positive_class"]  # malignant: the minority
    assert len(doc["features"]) == 30 and doc["task"] == "tabular-classification"
    assert "changeable" in doc["_features"]
    proc = run_cli("card", "init", str(root / "mlp.pt"), "--data", f"csv:{root / 'cancer.csv'}?target=target",
                   "--out", str(draft))
    assert proc.returncode == 2 and "--force" in proc.stderr  # never overwrites silently
    proc = run_cli("card", "check", str(draft))
    assert proc.returncode == 0 and "valid card" in proc.stdout

    doc.update({"bounds": [0, float("nan")], "class_names": ["only"], "positive_class": "x", "typo": 1})
    bad = tmp_path / "bad.card.json"
    bad.write_text(json.dumps(doc))
    proc = run_cli("card", "check", str(bad))
    assert proc.returncode == 2
    reported = proc.stdout.strip().splitlines()
    assert len(reported) >= 4 and all(line.startswith(str(bad)) for line in reported)  # all at once
    for word in ("bounds", "class_names", "positive_class", "typo"):
        assert any(word in line for line in reported), (word, reported)
    assert len(proc.stderr.strip().splitlines()) == 1 and f"{len(reported)} problems" in proc.stderr

    proc = run_cli("card", "schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["title"] == "AuditCard" and "epsilons" in schema["properties"]


def test_python_api_on_objects_matches_the_cli(byom: dict[str, Any], cnn_scan: tuple[Path, Any]) -> None:
    """The same CNN scanned as a TorchScript file from the CLI and as an nn.Module object from Python,
    on the same arrays (written to npz for the CLI): same figures."""
    out, proc = cnn_scan
    assert proc.returncode == 0, proc.stderr
    cli = AuditResult.read(out / "results.json")
    api = auditkit.scan(byom["cnn"], data=(byom["x"], byom["y"]), budget="quick", samples=8, threads=1,
                        only=["performance", "attributions", "robustness"], progress=False)
    assert api.provenance.model_format == "module" and api.provenance.data_sha256 == cli.provenance.data_sha256
    assert api.provenance.card == {**cli.provenance.card, "name": api.provenance.card["name"], "dataset": None}
    assert api.sections["performance"].data == cli.sections["performance"].data
    for norm in ("linf", "l2"):
        a = api.sections["robustness"].data["threat_models"][norm]
        c = cli.sections["robustness"].data["threat_models"][norm]
        assert a["curve"] == c["curve"], norm
    # The eager module runs the hook-based methods TorchScript cannot; the others agree.
    a_methods = api.sections["attributions"].data["methods"]
    c_methods = cli.sections["attributions"].data["methods"]
    both = [m for m in c_methods if c_methods[m]["status"] == "ok"]
    assert both and all(a_methods[m]["status"] == "ok" for m in c_methods)
    for m in both:
        assert a_methods[m]["mean_abs"] == pytest.approx(c_methods[m]["mean_abs"], rel=1e-3), m


def test_python_api_takes_tensors_datasets_loaders_and_dataframes(byom: dict[str, Any], tmp_path: Path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x, y = byom["x"], byom["y"]
    kwargs: dict[str, Any] = dict(budget="quick", samples=8, threads=1, only=["performance"], progress=False)
    arrays = auditkit.scan(byom["cnn"], data=(x, y), **kwargs).sections["performance"].data["accuracy"]
    dataset = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    for data in ((torch.as_tensor(x), torch.as_tensor(y)), dataset, DataLoader(dataset, batch_size=64)):
        got = auditkit.scan(byom["cnn"], data=data, **kwargs).sections["performance"].data["accuracy"]
        assert got == arrays, type(data).__name__
    frame = pd.read_csv(byom["root"] / "cancer.csv")
    module = torch.jit.load(str(byom["root"] / "mlp.pt"))
    result = auditkit.scan(module, data=(frame, "target"), out=tmp_path, **kwargs)
    assert result.provenance.card["output"] == "binary-logit" and result.provenance.model_format == "torchscript"
    assert AuditResult.read(tmp_path / "results.json") == result and (tmp_path / "card.json").is_file()
    overridden = auditkit.scan(module, data=(frame, "target"), overrides={"positive_class": "1"}, **kwargs)
    assert overridden.provenance.card["positive_class"] == "1"
    assert overridden.provenance.card_fields["positive_class"] == "flag"


def test_a_core_check_that_cannot_run_is_a_high_finding_and_gates_as_incomplete(
        byom: dict[str, Any], cnn_scan: tuple[Path, Any], tmp_path: Path) -> None:
    root = byom["root"]
    card = json.loads((cnn_scan[0] / "card.json").read_text())
    card["bounds"], card["epsilons"] = None, {}  # a card without bounds: robustness cannot run
    (tmp_path / "nobounds.card.json").write_text(json.dumps(card))
    out = tmp_path / "gated"
    proc = run_cli("scan", str(root / "cnn.pt"), "--data", f"npz:{root / 'digits.npz'}", "--card",
                   str(tmp_path / "nobounds.card.json"), "--out", str(out), "--budget", "quick", "--samples", "8",
                   "--threads", "1", "--only", "performance,attributions,robustness", "--gate", "--quiet")
    assert proc.returncode == 4, proc.stderr  # incomplete under --gate, never a silent pass
    result = AuditResult.read(out / "results.json")
    assert result.verdict.status == "incomplete"
    finding = next(f for f in result.findings if f.section == "robustness")
    assert finding.severity == "high" and "bounds" in finding.evidence
    assert finding.why and "--bounds" in (finding.action or "")
    assert "0 high" not in (out / "summary.md").read_text()


# --------------------------------------------------------------------------- bad values, refused cleanly


def _card_with(update: dict[str, Any]) -> Callable[[Path, Path], list[str]]:
    def build(root: Path, tmp: Path) -> list[str]:
        card = {"task": "image-classification", "input_shape": [1, 8, 8], "class_names": [str(i) for i in range(10)],
                "bounds": [0.0, 1.0], **update}
        (tmp / "c.card.json").write_text(json.dumps(card))
        return [str(root / "cnn.pt"), "--data", f"npz:{root / 'digits.npz'}", "--card", str(tmp / "c.card.json")]
    return build


def _flags(*flags: str) -> Callable[[Path, Path], list[str]]:
    return lambda root, tmp: [str(root / "cnn.pt"), "--data", f"npz:{root / 'digits.npz'}", *flags]


def _y_2d(root: Path, tmp: Path) -> list[str]:
    np.savez(tmp / "d.npz", x=np.zeros((40, 1, 8, 8), np.float32), y=np.eye(10)[np.arange(40) % 10])
    return [str(root / "cnn.pt"), "--data", f"npz:{tmp / 'd.npz'}"]


def _out_of_bounds(root: Path, tmp: Path) -> list[str]:
    data = np.load(root / "digits.npz")
    np.savez(tmp / "raw.npz", x=data["x"] * 255.0, y=data["y"])  # 0..255 pixels for a [0, 1] model
    return [str(zoo_model_path("cnn-digits")), "--data", f"npz:{tmp / 'raw.npz'}"]


def _huge_maxlen(root: Path, tmp: Path) -> list[str]:
    return [str(root / "lstm.pt"), "--data", f"text-csv:{root / 'reviews.csv'}?text=review&label=sentiment&maxlen=1e9"]


BAD: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    # name: (arguments, a word the one-line message must contain); every one exits 2
    "card NaN bounds": (_card_with({"bounds": [float("nan"), 1.0]}), "finite"),
    "card infinite bounds": (_card_with({"bounds": [0.0, float("inf")]}), "finite"),
    "card NaN epsilon": (_card_with({"epsilons": {"linf": [float("nan")]}}), "finite"),
    "card negative epsilon": (_card_with({"epsilons": {"linf": [-0.1]}}), ">= 0"),
    "card 1e308 epsilon": (_card_with({"epsilons": {"l2": [1e308]}}), "diameter"),
    "card Linf eps beyond the bounds": (_card_with({"epsilons": {"linf": [2.0]}}), "bounds' width"),
    "flag NaN bounds": (_flags("--bounds", "nan,1"), "--bounds"),
    "flag huge eps": (_flags("--eps", "linf=1e308"), "--eps"),
    "flag unknown task": (_flags("--task", "regression"), "--task"),
    "npz with a 2-D y": (_y_2d, "1-D"),
    "data outside the card's bounds": (_out_of_bounds, "bounds"),
    "text-csv maxlen=1e9": (_huge_maxlen, "maxlen"),
    "fraud rows=1e11": (lambda root, tmp: [str(zoo_model_path("fraud-mlp")), "--data", "fraud?rows=1e11"], "rows"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_card_values_and_data_exit_2_with_one_line(case: str, byom: dict[str, Any], tmp_path: Path) -> None:
    build, word = BAD[case]
    out = tmp_path / "out"
    proc = run_cli("scan", *build(byom["root"], tmp_path), "--out", str(out), "--quiet", "--samples", "8",
                   "--threads", "1")
    message = proc.stderr.strip()
    assert proc.returncode == 2, f"{case}: exit {proc.returncode}\n{message}"
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert word.lower() in message.lower(), message
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())  # nothing written


def test_data_outside_bounds_names_the_samples_and_both_fixes(byom: dict[str, Any], tmp_path: Path) -> None:
    proc = run_cli("scan", *_out_of_bounds(byom["root"], tmp_path), "--out", str(tmp_path / "o"), "--quiet")
    assert proc.returncode == 2
    assert "samples (first:" in proc.stderr and "rescale" in proc.stderr and "--bounds" in proc.stderr
    assert "weights" not in proc.stderr  # bad input, not a broken model
