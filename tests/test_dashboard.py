"""The Streamlit dashboard: its logic functions and the real app under Streamlit's AppTest.

Results come from real scans of the committed zoo models, kept small (8 samples, quick budget,
two Linf radii) and run once per test session (:func:`dashboard_results`, shared with the
browser test). Results reach the app through ``AUDITKIT_DASHBOARD_RESULTS``, as documented.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import sys
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn

from auditkit import dashboard as dash
from auditkit.loading import ModelInputError
from auditkit.results import AuditResult, Section
from auditkit.summary import summarize
from tests.conftest import REPO, zoo_model_path

APP = REPO / "apps" / "dashboard" / "app.py"
TIMEOUT = 120  # seconds AppTest waits for one script run (first runs import torch, captum, foolbox)
_RESULTS: dict[str, Path] = {}


def dashboard_results(root: Path) -> dict[str, Path]:
    """Small real audits, scanned once per test session into ``root``: cnn-digits with Linf
    robustness at two radii, lstm-reviews with word-substitution robustness, fraud-mlp with
    performance, attributions and baselines, gan-digits with its GAN checks and discriminator attack."""
    if not _RESULTS:
        from auditkit.scanning import scan

        specs: dict[str, dict[str, Any]] = {
            "cnn-digits": {"only": ["performance", "attributions", "robustness"], "epsilons": {"linf": [0.1, 0.3]}},
            "lstm-reviews": {"only": ["performance", "attributions", "robustness"]},
            "fraud-mlp": {"only": ["performance", "attributions", "baselines"]},
            "gan-digits": {"only": ["gan", "robustness"]},
        }
        for name, kw in specs.items():
            scan(zoo_model_path(name), budget="quick", samples=8, out=root / name, progress=False, **kw)
            _RESULTS[name] = root / name / "results.json"
    return dict(_RESULTS)


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dashboard_results(tmp_path_factory.mktemp("dashboard-results"))


def run_app(monkeypatch: pytest.MonkeyPatch, *paths: Path, zoo: bool = False, reports: Path | None = None) -> AppTest:
    monkeypatch.setenv(dash.ENV_RESULTS, os.pathsep.join(str(p) for p in paths))
    monkeypatch.setenv(dash.ENV_ZOO, "1" if zoo else "")
    if reports is not None:
        monkeypatch.setenv(dash.ENV_REPORTS, str(reports))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    return at


def assert_clean(at: AppTest) -> None:
    """No Streamlit exception block and no error message on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def view(at: AppTest, name: str) -> AppTest:
    at.sidebar.radio(key="view").set_value(name).run()
    return at


def texts(elements: Any) -> list[str]:
    return [str(e.value) for e in elements]


# ----------------------------------------------------------------------------- rendering


def test_one_results_file_shows_headline_metrics_with_intervals(results, monkeypatch):
    at = run_app(monkeypatch, results["cnn-digits"])
    assert_clean(at)
    r = AuditResult.read(results["cnn-digits"])
    shown = {m.label: m.value for m in at.metric}
    heads = {h.key: h for h in summarize(r).headlines()}
    acc = r.sections["performance"].data["accuracy"]
    assert shown["Clean accuracy"] == f"{100 * acc['value']:.1f}%"
    assert (f"95% CI {100 * acc['ci_low']:.1f}–{100 * acc['ci_high']:.1f}% · n = {acc['n']}"
            in texts(at.caption))
    # Every headline of the summary is a metric, with the summary's label and display.
    assert all(shown[h.label] == h.display for h in heads.values())
    # The headline robust accuracy is the curve's point at the middle positive eps (0.1, 0.3 -> 0.3).
    point = next(p for p in r.sections["robustness"].data["threat_models"]["linf"]["curve"] if p["eps"] == 0.3)
    assert "ε = 0.3" in heads["robustness.linf"].label
    assert shown[heads["robustness.linf"].label] == f"{100 * point['robust_accuracy']:.1f}%"
    assert "Expected calibration error (ECE)" in shown
    assert at.get("plotly_chart"), "the robustness curve is drawn"
    assert any("Gradient-masking checklist" in h.value for h in at.header)


def test_two_results_files_side_by_side(results, monkeypatch):
    at = run_app(monkeypatch, results["cnn-digits"], results["lstm-reviews"])
    assert_clean(at)
    assert {"cnn-digits", "lstm-reviews"} <= set(texts(at.subheader))
    table = at.table[0].value
    assert list(table.columns) == ["cnn-digits", "lstm-reviews"]
    label = next(h.label for h in summarize(AuditResult.read(results["cnn-digits"])).headlines()
                 if h.key == "robustness.linf")
    robust = table.loc[label]
    assert robust["lstm-reviews"] == "—" and robust["cnn-digits"] != "—"
    findings = at.dataframe[0].value
    assert list(findings["audit"]) == ["cnn-digits", "lstm-reviews"]
    assert findings.iloc[0]["total"] == len(AuditResult.read(results["cnn-digits"]).findings)


@pytest.mark.parametrize("name", ["Overview", "Audit details", "Sample explorer", "Compare", "Live", "Zoo"])
def test_every_view_renders_for_every_audit(results, monkeypatch, name):
    at = view(run_app(monkeypatch, *results.values()), name)
    assert_clean(at)
    key = {"Audit details": "details_audit", "Sample explorer": "explorer_audit"}.get(name)
    if key:
        for label in results:
            at.selectbox(key=key).set_value(label).run()
            assert_clean(at)
            charts = len(at.get("plotly_chart"))
            if name == "Audit details":  # confusion matrix, reliability diagram / GAN class histogram, FID...
                assert charts >= 2, label
            elif label == "lstm-reviews":
                assert any("<span" in m.value for m in at.markdown), label
            else:  # image grid / feature bars of the sample / GAN sample grid
                assert charts >= 1, label


# ----------------------------------------------------------------------------- sample explorer


def test_explorer_widgets_rerun_and_follow_the_records(results, monkeypatch):
    at = view(run_app(monkeypatch, results["cnn-digits"], results["lstm-reviews"]), "Sample explorer")
    assert_clean(at)
    at.selectbox(key="explorer_audit").set_value("lstm-reviews").run()
    assert_clean(at)
    assert any("<span" in m.value for m in at.markdown), "text attributions are highlighted tokens"
    at.selectbox(key="explorer_audit").set_value("cnn-digits").run()
    assert_clean(at)

    r = AuditResult.read(results["cnn-digits"])
    tm = r.sections["robustness"].data["threat_models"]["linf"]
    rec, sample_index = tm["records"], r.sections["robustness"].data["sample_index"]
    audit = dash.make_audits([("x", results["cnn-digits"], r)])[0]
    refs = dash.sample_catalogue(audit)
    # A sample that is clean-correct and broken within the grid: robust at eps 0, broken at 0.3.
    row = next(i for i, (ok, n) in enumerate(zip(rec["clean_correct"], rec["min_norm"])) if ok and n is not None and n <= 0.3)
    pos = next(i for i, ref in enumerate(refs) if ref.test_index == sample_index[row])
    at.selectbox(key="sample-cnn-digits").select_index(pos).run()
    assert_clean(at)
    at.select_slider(key="eps-cnn-digits-linf").set_value(0.0).run()
    assert_clean(at)
    assert texts(at.success) == ["robust at ε=0: no adversarial example within ε (smallest found by any attack: "
                                 f"{rec['min_norm'][row]:.4g})"]
    at.select_slider(key="eps-cnn-digits-linf").set_value(0.3).run()
    assert_clean(at)
    assert texts(at.warning) == [f"broken at ε=0.3: {rec['broken_by'][row]} found ‖δ‖ = {rec['min_norm'][row]:.4g} ≤ ε"]
    # One attack alone: its own smallest norm decides.
    at.selectbox(key="attack-cnn-digits-linf").set_value("fgsm").run()
    assert_clean(at)
    own = rec["per_attack"]["fgsm"]["min_norm"][row]
    shown = texts(at.warning) + texts(at.success)
    assert len(shown) == 1 and shown[0].startswith("broken" if own is not None and own <= 0.3 + 1e-6 else "robust")


def test_sample_robustness_verdicts_match_the_records(results):
    r = AuditResult.read(results["cnn-digits"])
    audit = dash.make_audits([("x", results["cnn-digits"], r)])[0]
    tm = r.sections["robustness"].data["threat_models"]["linf"]
    rec, tol = tm["records"], tm["tolerance"]
    refs = [ref for ref in dash.sample_catalogue(audit) if ref.record_row is not None]
    assert len(refs) == len(rec["index"])
    for ref in refs:
        row = ref.record_row
        for eps in tm["epsilons"]:
            info = dash.sample_robustness(audit, ref, "linf", eps, None)
            n = rec["min_norm"][row]
            expected = (not rec["clean_correct"][row]) or (n is not None and n <= (eps + tol if eps > 0 else 0.0))
            assert info["broken"] == expected, (row, eps)
    assert dash.sample_robustness(audit, refs[0], "l2", 0.1, None) is None  # no L2 in these results


def test_tabular_robustness_in_overview_and_explorer(results, monkeypatch, tmp_path):
    """A robustness section as the scan writes it for tabular models (the constrained attack on
    caught positives) gives the evasion headline, its curve and each sample's cheapest evasion."""
    import numpy as np

    from auditkit.attacks.tabular import tabular_attack
    from auditkit.data import load_data
    from auditkit.loading import load_model

    model = load_model(zoo_model_path("fraud-mlp"), device="cpu")
    data = load_data(model.card.dataset, card=model.card)
    pos = model.card.positive_index
    caught = np.flatnonzero((data.y_test == pos) & (model.logits(data.x_test).argmax(1) == pos))[:6]
    attack = tabular_attack(model.module, model.to_input(data.x_test[caught]), torch.as_tensor(data.y_test[caught]),
                            model.card, seed=0)
    r = AuditResult.read(results["fraud-mlp"])
    r.sections["robustness"] = Section(name="robustness", data={"budget": "quick",
                                                                "tabular": {**attack, "sample_index": caught.tolist()}})
    path = r.write(tmp_path / "fraud" / "results.json")

    at = run_app(monkeypatch, path)
    assert_clean(at)
    # The headline point follows the payload's rule (the smallest budget at which half evade).
    head = next(h for h in summarize(AuditResult.read(path)).headlines() if h.key == "robustness.tabular")
    budget = float(re.search(r"cost ≤ ([\d.e+-]+)\)", head.label).group(1))
    point = next(p for p in attack["curve"] if abs(p["budget"] - budget) <= 1e-9)
    assert {m.label: m.value for m in at.metric}[head.label] == f"{100 * point['evasion']['value']:.1f}%"
    series = dash.robustness_series(dash.make_audits([("x", path, AuditResult.read(path))])[0])
    assert series["tabular"]["title"] in texts(at.subheader)  # the curve, titled as in every report
    view(at, "Sample explorer")
    first = attack["cheapest"][0]
    refs = dash.sample_catalogue(dash.make_audits([("x", path, AuditResult.read(path))])[0])
    at.selectbox(key="sample-fraud-mlp").select_index(
        next(i for i, ref in enumerate(refs) if ref.test_index == int(caught[first["index"]]))).run()
    assert_clean(at)
    if first["success"]:
        assert texts(at.warning) == [f"Evades detection with changes costing {first['cost']:.3g} (positive-class "
                                     f"probability {first['score_before']:.3f} → {first['score_after']:.3f})"]
    else:
        assert texts(at.success)[0].startswith("No evasion found")


def test_text_and_gan_robustness_curves_and_examples(results, monkeypatch):
    at = run_app(monkeypatch, results["lstm-reviews"], results["gan-digits"])
    assert_clean(at)
    text = AuditResult.read(results["lstm-reviews"]).sections["robustness"].data["text"]
    head = next(h for h in summarize(AuditResult.read(results["lstm-reviews"])).headlines() if h.key == "robustness.text")
    k = float(re.search(r"k = ([\d.]+)\)", head.label).group(1))
    point = next(p for p in text["label_preserving"]["curve"] if p["k"] == k)
    shown = {m.label: m.value for m in at.metric}
    assert shown[head.label] == f"{100 * point['robust_accuracy']['value']:.1f}%"
    assert "Discriminator AUC (real vs generated)" in shown
    titles = texts(at.subheader)
    assert "Robust accuracy under label-preserving word substitutions" in titles
    assert "Discriminator: real images still judged real" in titles

    view(at, "Sample explorer")
    at.selectbox(key="explorer_audit").set_value("lstm-reviews").run()
    example = text["unconstrained"]["examples"][0]
    test_index = AuditResult.read(results["lstm-reviews"]).sections["robustness"].data["sample_index"][example["index"]]
    audit = dash.make_audits([("x", None, AuditResult.read(results["lstm-reviews"]))])[0]
    pos = next(i for i, ref in enumerate(dash.sample_catalogue(audit)) if ref.test_index == test_index)
    at.selectbox(key="sample-lstm-reviews").select_index(pos).run()
    assert_clean(at)
    first = example["substitutions"][0]
    assert any(f"<s>{first['from']}</s> {first['to']}" in m.value for m in at.markdown)
    assert any(f"prediction {example['prediction_before']} → {example['prediction_after']}" in m.value
               for m in at.markdown)

    at.selectbox(key="explorer_audit").set_value("gan-digits").run()
    assert_clean(at)
    at.radio(key="gan-side-gan-digits").set_value("fake").run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) >= 3  # samples, closest pairs, discriminator maps


# ----------------------------------------------------------------------------- bad input


def test_bad_schema_version_shows_an_error_not_a_crash(results, monkeypatch, tmp_path):
    doc = json.loads(results["cnn-digits"].read_text())
    doc["schema_version"] = "99.0"
    bad = tmp_path / "bad" / "results.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(doc))
    not_json = tmp_path / "notjson.json"
    not_json.write_text("{ nope")
    at = run_app(monkeypatch, bad, not_json, tmp_path / "missing.json", results["lstm-reviews"])
    assert not at.exception
    errors = texts(at.error)
    assert any("schema_version '99.0' is not supported" in e for e in errors)
    assert any("is not a results JSON file" in e for e in errors)
    assert any("does not exist" in e for e in errors)
    assert [m.label for m in at.metric][:1] == ["Clean accuracy"], "the good audit still renders"


def test_uploaded_results_are_checked_too(results, monkeypatch):
    at = run_app(monkeypatch)
    assert_clean(at)
    doc = json.loads(results["lstm-reviews"].read_text())
    at.file_uploader(key="upload_results").set_value([
        ("good.json", json.dumps(doc).encode(), "application/json"),
        ("old.json", json.dumps({**doc, "schema_version": "0.1"}).encode(), "application/json"),
    ]).run()
    assert not at.exception
    assert any("old.json: schema_version '0.1' is not supported" in e for e in texts(at.error))
    assert "lstm-reviews" in texts(at.subheader)


class _TouchOnLoad:
    """Pickles as a call to ``Path.touch(marker)``: unpickling it would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_module_path_is_refused(monkeypatch, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(4, 2)), path)  # a whole pickled nn.Module
    at = view(run_app(monkeypatch), "Live")
    at.radio(key="live_source").set_value("Model file on this machine").run()
    at.text_input(key="live_path").input(str(path)).run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("Refused: ")
    assert "a whole pickled nn.Module" in errors[0] and "never loads pickled modules" in errors[0]
    assert "--trust-pickle if you trust" not in errors[0]


def test_uploaded_pickle_is_refused_without_running_it(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _TouchOnLoad(marker)}, evil)
    at = view(run_app(monkeypatch), "Live")
    at.radio(key="live_source").set_value("Upload a model file").run()
    at.file_uploader(key="live_upload").set_value(("evil.pt", evil.read_bytes(), "application/octet-stream")).run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and errors[0].startswith("Refused: evil.pt is a ")
    assert not marker.exists(), "the pickle's code ran"


def test_uploaded_safetensors_with_a_card_loads(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    from auditkit.loading import load_zoo_file

    zoo = load_zoo_file(zoo_model_path("cnn-digits"))
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in zoo.module.state_dict().items()}, str(weights))
    at = view(run_app(monkeypatch), "Live")
    at.radio(key="live_source").set_value("Upload a model file").run()
    at.file_uploader(key="live_upload").set_value(("weights.safetensors", weights.read_bytes(), "application/octet-stream"))
    at.run()
    assert any("carries no audit card" in e for e in texts(at.error)), "weights alone need a card"
    at.file_uploader(key="live_card_upload").set_value(("card.json", zoo.card.to_json().encode(), "application/json"))
    at.selectbox(key="live_arch").set_value(zoo.card.architecture)
    at.run()
    assert_clean(at)
    assert any("format safetensors" in c for c in texts(at.caption))
    assert at.button(key="live_run")  # the recompute controls are offered


# ----------------------------------------------------------------------------- live mode


def test_live_recompute_on_an_image_model(results, monkeypatch):
    at = view(run_app(monkeypatch, results["cnn-digits"]), "Live")
    assert_clean(at)
    at.slider(key="live_n").set_value(2)
    at.selectbox(key="live_method").set_value("saliency")
    at.selectbox(key="live_attack").set_value("fgsm")
    at.select_slider(key="live_eps_linf").set_value(0.1)
    at.run()
    at.button(key="live_run").click().run()
    assert_clean(at)
    table = at.dataframe[0].value
    r = AuditResult.read(results["cnn-digits"])
    assert list(table["test index"]) == r.sections["attributions"].data["sample_index"][:2]
    for _, row in table.iterrows():
        assert row["‖δ‖"] <= 0.1 + 1e-6  # FGSM stays in the eps-ball
        if row["fooled within ε=0.1"]:
            assert row["adversarial prediction"] != row["label"]
    assert len(at.get("plotly_chart")) >= 2, "the curve and the sample's attribution grid"
    # Changing a setting asks for a recomputation instead of showing stale results.
    at.select_slider(key="live_eps_linf").set_value(0.3).run()
    assert "press Recompute" in " ".join(texts(at.info))


def test_live_text_model_highlights_tokens(results, monkeypatch):
    at = view(run_app(monkeypatch, results["lstm-reviews"]), "Live")
    at.slider(key="live_n").set_value(2)
    at.selectbox(key="live_method").set_value("ig")
    at.run()
    at.button(key="live_run").click().run()
    assert_clean(at)
    assert any("<span" in m.value for m in at.markdown)
    assert any("needs the full scan" in c for c in texts(at.caption)), "no live attack on text"


# ----------------------------------------------------------------------------- zoo


def test_zoo_mode_without_reports_says_how_to_create_them(monkeypatch, tmp_path):
    at = run_app(monkeypatch, zoo=True, reports=tmp_path / "reports")
    assert_clean(at)
    assert any("No results loaded" in i for i in texts(at.info))
    view(at, "Zoo")
    assert_clean(at)
    assert any("No zoo reports" in i for i in texts(at.info))
    assert any("make reports" in c.value for c in at.code)


def test_zoo_mode_loads_the_reports_folder(results, monkeypatch, tmp_path):
    target = tmp_path / "reports" / "lstm-reviews" / "results.json"
    target.parent.mkdir(parents=True)
    shutil.copy(results["lstm-reviews"], target)
    at = run_app(monkeypatch, zoo=True, reports=tmp_path / "reports")
    assert_clean(at)
    assert "lstm-reviews" in texts(at.subheader)
    assert "Clean accuracy" in [m.label for m in at.metric]


def test_zoo_quick_scan_adds_its_results(monkeypatch, tmp_path):
    at = view(run_app(monkeypatch, reports=tmp_path), "Zoo")
    at.multiselect(key="zoo_models").set_value(["lstm-reviews"])
    at.number_input(key="zoo_samples").set_value(4)
    at.multiselect(key="zoo_checks").set_value(["performance"])
    at.run()
    at.button(key="zoo_scan").click().run()
    assert_clean(at)
    assert any("Scanned lstm-reviews" in s for s in texts(at.success))
    assert any("lstm-reviews" in c for c in texts(at.sidebar.caption))


# ----------------------------------------------------------------------------- logic


def test_app_arguments_from_argv_and_environment(monkeypatch, tmp_path):
    args = dash.parse_app_args(["a.json", "--zoo", "--reports-dir", str(tmp_path), "b.json", "--unknown"])
    assert args.results == [Path("a.json"), Path("b.json")] and args.zoo and args.reports_dir == tmp_path
    monkeypatch.setenv(dash.ENV_RESULTS, os.pathsep.join(["c.json", "", "d.json"]))
    monkeypatch.setenv(dash.ENV_ZOO, "")
    monkeypatch.setattr(sys, "argv", ["pytest", "tests/test_dashboard.py"])  # another program's argv
    assert dash.app_args(str(APP)).results == [Path("c.json"), Path("d.json")]
    monkeypatch.setattr(sys, "argv", [str(APP), "e.json", "--zoo"])  # as `streamlit run` sets it
    got = dash.app_args(str(APP))
    assert got.results == [Path("e.json"), Path("c.json"), Path("d.json")] and got.zoo


def test_launch_command_binds_loopback_unless_told(results):
    cmd = dash.launch_command([results["cnn-digits"]], port=8600)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == dash.APP_PATH and dash.APP_PATH.is_file()
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--") + 1:] == [str(results["cnn-digits"].resolve())]
    wide = dash.launch_command([], zoo=True, port=8600, host="0.0.0.0")
    assert wide[wide.index("--server.address") + 1] == "0.0.0.0" and wide[-1] == "--zoo"
    for port in (0, 70000, "8501", True):
        with pytest.raises(dash.DashboardError, match="port must be an integer"):
            dash.launch_command([], port=port)  # type: ignore[arg-type]
    with pytest.raises(dash.DashboardError, match="does not exist; run `auditkit scan"):
        dash.launch_command([Path("no/such/results.json")])


def test_robustness_series_read_the_typed_curves(results):
    """Every curve format (eps, k, budget + evasion) reaches the charts as x/y/lo/hi/n points
    read from the typed payload, whatever the threat model."""
    for name in ("cnn-digits", "lstm-reviews"):
        r = AuditResult.read(results[name])
        series = dash.robustness_series(dash.make_audits([("x", None, r)])[0])
        assert series, name
        for key, curve in series.items():
            assert curve["points"] and curve["x_title"] and curve["y_title"], (name, key)
            for p in curve["points"]:
                assert set(p) == {"x", "y", "lo", "hi", "n"} and 0.0 <= p["y"] <= 1.0
                if p["lo"] is not None:
                    assert p["lo"] <= p["y"] + 1e-9 <= p["hi"] + 2e-9
    cnn = AuditResult.read(results["cnn-digits"])
    grid = dash.robustness_series(dash.make_audits([("x", None, cnn)])[0])["linf"]["grid"]
    curve = cnn.sections["robustness"].data["threat_models"]["linf"]["curve"]
    assert [(p["x"], p["y"]) for p in grid] == [(c["eps"], c["robust_accuracy"]) for c in curve]
    assert dash.middle([0.0, 0.1, 0.2, 0.3]) == 0.2 and dash.middle([0.0]) == 0.0


def test_masking_and_baseline_tables(results):
    r = AuditResult.read(results["cnn-digits"])
    checks = r.sections["robustness"].data["masking"]["checks"]
    acc = {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 100}
    baselines = {  # the shape the baselines check writes
        "baselines": {
            "logistic-regression": {"quality": {"accuracy": acc, "vs_network": {"test": "mcnemar-exact",
                                                                                "winner": "network", "p_value": 0.01}},
                                    "cost": {"parameters": 10, "timings": {"fit_seconds": 1.5}},
                                    "interpretability": {"importance": {"amount": 0.3}}},
            "dummy-prior": {"quality": {"accuracy": {**acc, "value": 0.1}}},
        },
        "network": {"quality": {"accuracy": {**acc, "value": 0.98}}, "cost": {"parameters": 100}},
        "verdict": "The network beats every baseline.",
    }
    r.sections["baselines"] = Section(name="baselines", data=baselines)
    audit = dash.make_audits([("x", None, r)])[0]
    table = dash.masking_table([audit])
    assert [row["check"] for row in table] == [c["name"] for c in checks]
    assert [row[audit.label] for row in table] == [dash.STATUS_MARK[c["status"]] for c in checks]
    assert dash.masking_verdicts([audit]) == {audit.label: r.sections["robustness"].data["masking"]["suspected"]}
    assert dash.baseline_table(audit) == [  # timings, per-feature importance and test names left out
        {"figure": "quality.accuracy", "network": "0.980 (95% CI 0.800–0.950, n = 100)",
         "logistic-regression": "0.900 (95% CI 0.800–0.950, n = 100)",
         "dummy-prior": "0.100 (95% CI 0.800–0.950, n = 100)"},
        {"figure": "cost.parameters", "network": "100", "logistic-regression": "10", "dummy-prior": "—"},
        {"figure": "quality.vs_network.winner", "network": "—", "logistic-regression": "network", "dummy-prior": "—"},
        {"figure": "quality.vs_network.p_value", "network": "—", "logistic-regression": "0.01", "dummy-prior": "—"},
    ]
    assert dash.baseline_verdict(audit) == "The network beats every baseline."
    r.sections.pop("baselines")
    assert dash.baseline_table(audit) == [] and dash.baseline_verdict(audit) is None


def test_labels_are_unique_when_two_audits_share_a_model(results, tmp_path):
    copy = tmp_path / "rerun" / "results.json"
    copy.parent.mkdir()
    shutil.copy(results["cnn-digits"], copy)
    audits = dash.make_audits([(str(p), p, AuditResult.read(p)) for p in (results["cnn-digits"], copy)])
    assert audits[0].label == "cnn-digits [cnn-digits]" and audits[1].label == "cnn-digits [rerun]"


def test_model_path_resolution_and_safe_loading(results, tmp_path):
    audit = dash.make_audits([("x", results["cnn-digits"], AuditResult.read(results["cnn-digits"]))])[0]
    path, note = dash.resolve_model_path(audit)
    assert path == zoo_model_path("cnn-digits") and note == ""
    changed = tmp_path / "zoo" / "cnn-digits" / "model.pt"
    changed.parent.mkdir(parents=True)
    changed.write_bytes(zoo_model_path("cnn-digits").read_bytes() + b"\0")
    audit.result.provenance.model_path = str(changed)
    roots = dash.allowed_roots(extra=[tmp_path])
    assert "sha256 changed since the audit" in dash.resolve_model_path(audit, roots)[1]
    audit.result.provenance.model_path = "nowhere/model.pt"
    assert dash.resolve_model_path(audit, roots)[0] is None
    with pytest.raises(ModelInputError, match="only builds registered architectures"):
        dash.load_model_safely(zoo_model_path("cnn-digits"), arch="os:system")
    saved = dash.save_upload(b"x", "../../evil name.safetensors", tmp_path / "up")
    assert saved == tmp_path / "up" / "model.safetensors"
    assert dash.save_upload(b"x", "weird.exe", tmp_path / "up").name == "model.bin"


def test_token_highlighting_escapes_html():
    out = dash.token_highlight_html(["<script>", "ok"], [1.0, -0.5])
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "rgba(178,24,43,1.00)" in out and "rgba(33,102,172,0.50)" in out


# ----------------------------------------------------------------------------- explorer filters


def _audit(path: Path) -> dash.Audit:
    return dash.make_audits([("x", path, AuditResult.read(path))])[0]


def test_every_test_sample_is_in_the_catalogue(results):
    audit = _audit(results["cnn-digits"])
    perf = audit.result.sections["performance"].data
    refs = dash.sample_catalogue(audit)
    assert [r.test_index for r in refs] == list(range(len(perf["labels"])))
    assert all(r.label == y and r.prediction == p and r.correct == (p == y)
               for r, p, y in zip(refs, perf["predictions"], perf["labels"]))
    explained = audit.result.sections["attributions"].data["sample_index"]
    assert [r.test_index for r in refs if r.attribution_item is not None] == sorted(explained)
    wrong = next(r for r in refs if r.correct is False)
    assert f"predicted {wrong.prediction} ✗" in dash.sample_option(audit, wrong)


def test_filter_samples_follow_the_results(results):
    from auditkit.policy import robust_indicator

    audit = _audit(results["cnn-digits"])
    perf = audit.result.sections["performance"].data
    rob = audit.result.sections["robustness"].data
    tm, sample_index = rob["threat_models"]["linf"], rob["sample_index"]
    every = dash.sample_catalogue(audit)
    assert dash.filter_samples(audit, dash.FilterSpec()) == every

    wrong = [i for i, (p, y) in enumerate(zip(perf["predictions"], perf["labels"])) if p != y]
    assert wrong, "the quick cnn-digits audit has misclassified samples"
    assert [r.test_index for r in dash.filter_samples(audit, dash.FilterSpec(correctness="misclassified"))] == wrong
    assert len(dash.filter_samples(audit, dash.FilterSpec(correctness="correct"))) == len(every) - len(wrong)
    fours = dash.filter_samples(audit, dash.FilterSpec(classes=(4,)))
    assert fours and len(fours) == perf["labels"].count(4) and all(r.label == 4 for r in fours)

    for eps in tm["epsilons"]:
        robust = robust_indicator(tm, eps)  # the gate's own per-sample rule
        broken = sorted(sample_index[row] for row, ok in enumerate(robust) if not ok)
        got = dash.filter_samples(audit, dash.FilterSpec(robustness="broken", norm="linf", eps=eps))
        assert [r.test_index for r in got] == broken, eps
        held = dash.filter_samples(audit, dash.FilterSpec(robustness="robust", norm="linf", eps=eps))
        assert len(got) + len(held) == len(sample_index), "samples without records are left out of both"
    # The attack that broke it: one attack judged alone agrees with the explorer's per-sample verdict.
    for attack in tm["attacks"]:
        got = {r.test_index for r in dash.filter_samples(
            audit, dash.FilterSpec(robustness="broken", norm="linf", eps=0.1, attack=attack))}
        for ref in every:
            if ref.record_row is not None:
                info = dash.sample_robustness(audit, ref, "linf", 0.1, attack)
                assert (ref.test_index in got) == info["broken"], (attack, ref.test_index)
    # Filters combine as an intersection.
    both = dash.filter_samples(audit, dash.FilterSpec(correctness="correct", robustness="broken", norm="linf",
                                                      eps=0.3, classes=(4,)))
    assert all(r.correct and r.label == 4 and dash.sample_broken(audit, r, "linf", 0.3) for r in both)
    with pytest.raises(ValueError, match="needs a threat model"):
        dash.filter_samples(audit, dash.FilterSpec(robustness="broken"))
    with pytest.raises(ValueError, match="needs per-sample confidences"):
        dash.filter_samples(audit, dash.FilterSpec(confidence=(0.5, 0.9)))


def test_confidence_filter_with_live_confidences(results):
    from auditkit.loading import load_model

    audit = _audit(results["cnn-digits"])
    stored = dash.stored_confidences(audit)  # the scan keeps each sample's top-class probability
    assert stored is not None and len(stored) == len(audit.result.sections["performance"].data["labels"])
    model = load_model(zoo_model_path("cnn-digits"), device="cpu")
    data = dash.live_data(model, None, audit.result.provenance.data_spec, dash.allowed_roots())
    assert dash.same_test_split(audit, data)
    conf = dash.live_confidences(model, data)
    assert len(conf) == len(data.y_test) and all(0.0 <= c <= 1.0 for c in conf)
    # The live argmax is the audit's prediction: the confidences belong to these samples.
    perf = audit.result.sections["performance"].data
    assert [int(i) for i in model.logits(data.x_test).argmax(1)] == perf["predictions"]
    unsure = dash.filter_samples(audit, dash.FilterSpec(confidence=(0.0, 0.9)), conf)
    assert [r.test_index for r in unsure] == [i for i, c in enumerate(conf) if c <= 0.9]
    assert unsure and len(unsure) < len(conf)
    # The stored confidences are the live ones (4 decimals), so both filter the same samples.
    assert stored == pytest.approx(conf, abs=1e-4)
    older = copy.deepcopy(audit.result)
    older.sections["performance"].data.pop("confidences")  # results written before they were kept
    assert dash.stored_confidences(dash.make_audits([("x", None, older)])[0]) is None


def test_tabular_filter_reads_the_evasions(results, tmp_path):
    r = AuditResult.read(results["fraud-mlp"])
    cheapest = [{"index": 0, "success": True, "cost": 0.5}, {"index": 1, "success": False, "cost": None},
                {"index": 2, "success": True, "cost": 2.0}]
    r.sections["robustness"] = Section(name="robustness", data={"tabular": {"cheapest": cheapest,
                                                                            "sample_index": [5, 9, 11]}})
    audit = dash.make_audits([("x", None, r)])[0]
    got = lambda spec: [x.test_index for x in dash.filter_samples(audit, spec)]  # noqa: E731
    assert got(dash.FilterSpec(robustness="broken", norm="tabular", eps=1.0)) == [5]
    assert got(dash.FilterSpec(robustness="broken", norm="tabular", eps=2.0)) == [5, 11]
    assert got(dash.FilterSpec(robustness="robust", norm="tabular", eps=1.0)) == [9, 11]


def test_explorer_filters_in_the_app_and_any_sample_goes_live(results, monkeypatch):
    at = view(run_app(monkeypatch, results["cnn-digits"]), "Sample explorer")
    assert_clean(at)
    audit = _audit(results["cnn-digits"])
    n = len(dash.sample_catalogue(audit))
    assert f"{n} of {n} samples match the filters" in texts(at.caption)
    at.radio(key="f-correct-cnn-digits").set_value("misclassified").run()
    assert_clean(at)
    wrong = dash.filter_samples(audit, dash.FilterSpec(correctness="misclassified"))
    assert f"{len(wrong)} of {n} samples match the filters" in texts(at.caption)
    box = at.selectbox(key="sample-cnn-digits")
    assert box.options == [dash.sample_option(audit, r) for r in wrong]
    assert any("misclassified" in c for c in texts(at.caption))

    at.radio(key="f-correct-cnn-digits").set_value("all")
    at.select_slider(key="eps-cnn-digits-linf").set_value(0.1)
    at.radio(key="f-robust-cnn-digits-linf").set_value("broken").run()
    assert_clean(at)
    broken = dash.filter_samples(audit, dash.FilterSpec(robustness="broken", norm="linf", eps=0.1))
    assert at.selectbox(key="sample-cnn-digits").options == [dash.sample_option(audit, r) for r in broken]
    assert texts(at.warning)[0].startswith("broken at ε=0.1"), "the verdict follows the same ε"

    # A sample the results keep nothing about: one click opens Live mode on that test index.
    at.radio(key="f-robust-cnn-digits-linf").set_value("all").run()
    plain = next(r for r in dash.sample_catalogue(audit) if not r.where)
    at.selectbox(key="sample-cnn-digits").set_value(dash.sample_option(audit, plain)).run()
    assert_clean(at)
    at.button(key="to-live-attr-cnn-digits").click().run()
    assert_clean(at)
    assert at.sidebar.radio(key="view").value == "Live"
    assert at.number_input(key="live_index").value == plain.test_index
    at.selectbox(key="live_method").set_value("saliency")
    at.selectbox(key="live_attack").set_value("fgsm")
    at.run()
    at.button(key="live_run").click().run()
    assert_clean(at)
    assert list(at.dataframe[0].value["test index"]) == [plain.test_index]
    assert len(at.get("plotly_chart")) >= 2


# ----------------------------------------------------------------------------- live mode on one's own model


def _weights_and_card(tmp_path: Path, dataset: str | None) -> tuple[Path, Path, Any]:
    """cnn-digits as safetensors weights and a card JSON whose ``dataset`` is ``dataset``."""
    from safetensors.torch import save_file

    from auditkit.loading import load_zoo_file

    zoo = load_zoo_file(zoo_model_path("cnn-digits"))
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in zoo.module.state_dict().items()}, str(weights))
    card = zoo.card.model_copy(update={"dataset": dataset})
    card_path = tmp_path / "card.json"
    card_path.write_text(card.to_json())
    return weights, card_path, zoo.card


def test_live_mode_on_own_model_with_a_typed_data_spec(monkeypatch, tmp_path):
    import numpy as np

    from auditkit.data import load_data

    weights, card_path, card = _weights_and_card(tmp_path, None)
    digits = load_data("digits", card=card)
    test_file = tmp_path / "own" / "test.npz"
    test_file.parent.mkdir()
    np.savez(test_file, x_train=digits.x_train, y_train=digits.y_train, x_test=digits.x_test[:20],
             y_test=digits.y_test[:20])
    at = view(run_app(monkeypatch), "Live")
    at.radio(key="live_source").set_value("Model file on this machine").run()
    at.text_input(key="live_path").input(str(weights))
    at.text_input(key="live_card").input(str(card_path))
    at.selectbox(key="live_arch").set_value(card.architecture)
    at.run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and "the card names no dataset" in errors[0] and "Data spec" in errors[0]
    at.text_input(key="live_data_spec").input(f"npz:{test_file}").run()
    assert_clean(at)
    at.radio(key="live_pick").set_value("One test sample").run()
    assert "Test index (0–19)" in [w.label for w in at.number_input]
    at.number_input(key="live_index").set_value(13)
    at.selectbox(key="live_method").set_value("saliency")
    at.selectbox(key="live_attack").set_value("fgsm")
    at.run()
    at.button(key="live_run").click().run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["test index"]) == [13]
    assert table.iloc[0]["label"] == card.class_names[int(digits.y_test[13])]
    at.text_input(key="live_data_spec").input(f"npz:{tmp_path / 'missing.npz'}").run()
    assert any("Cannot load the data for live samples" in e for e in texts(at.error))


# ----------------------------------------------------------------------------- path confinement (issue 11)


def test_results_cannot_point_the_dashboard_at_server_paths(results, tmp_path):
    """resolve_model_path and the recorded data spec only follow paths inside the roots; a
    FIFO outside them is never opened (opening it would hang)."""
    from auditkit.data import DataError

    inside = tmp_path / "inside"
    outside = tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    shutil.copy(zoo_model_path("cnn-digits"), outside / "model.pt")
    os.mkfifo(outside / "fifo.pt")
    (inside / "escape.pt").symlink_to(outside / "model.pt")
    roots = dash.allowed_roots(extra=[inside])
    assert Path("/").resolve() not in dash.allowed_roots(extra=["/"])
    audit = _audit(results["cnn-digits"])
    for bad in ("/etc/passwd", str(outside / "model.pt"), str(outside / "fifo.pt"), str(inside / "escape.pt"),
                str(inside / ".." / "outside" / "model.pt")):
        audit.result.provenance.model_path = bad
        path, note = dash.resolve_model_path(audit, roots)
        assert path is None and "not inside the folders" in note and "--allow-dir" in note, bad
    shutil.copy(zoo_model_path("cnn-digits"), inside / "model.pt")
    audit.result.provenance.model_path = str(inside / "model.pt")
    assert dash.resolve_model_path(audit, roots) == ((inside / "model.pt").resolve(), "")

    (inside / "d.npz").write_bytes(b"")
    (outside / "d.npz").write_bytes(b"")
    assert dash.confine_data_spec("digits", roots) == "digits"
    assert dash.confine_data_spec("fraud?rows=1000", roots) == "fraud?rows=1000"
    assert dash.confine_data_spec(f"npz:{inside / 'd.npz'}", roots) == f"npz:{(inside / 'd.npz').resolve()}"
    assert dash.confine_data_spec("npz:d.npz", roots, base=inside) == f"npz:{(inside / 'd.npz').resolve()}"
    for spec in ("csv:/etc/passwd?target=root", f"npz:{outside / 'd.npz'}", f"npz:{inside}/../outside/d.npz",
                 f"text-csv:{inside / 'd.npz'}?text=t&label=l&vocab=/etc/passwd"):
        with pytest.raises(DataError, match="outside the folders"):
            dash.confine_data_spec(spec, roots)
    from auditkit.loading import load_model

    model = load_model(zoo_model_path("cnn-digits"), device="cpu")
    with pytest.raises(DataError, match="outside the folders"):
        dash.live_data(model, None, "csv:/etc/passwd?target=root", roots)
    with pytest.raises(DataError, match="outside the folders"):  # a card's dataset is confined too
        dash.live_data(model.__class__(**{**model.__dict__, "card": model.card.model_copy(
            update={"dataset": "csv:/etc/passwd?target=root"})}), None, None, roots)


def test_uploaded_results_naming_etc_passwd_are_not_followed(results, monkeypatch):
    doc = json.loads(results["cnn-digits"].read_text())
    doc["provenance"]["model_path"] = "/etc/passwd"
    doc["provenance"]["data_spec"] = "csv:/etc/passwd?target=root"
    at = view(run_app(monkeypatch), "Live")
    at.file_uploader(key="upload_results").set_value([("evil.json", json.dumps(doc).encode(), "application/json")])
    at.run()
    at.radio(key="live_source").set_value("Model of a loaded audit").run()
    assert not at.exception and not at.error
    warnings = texts(at.warning)
    assert any("/etc/passwd is not inside the folders" in w for w in warnings), warnings
    assert not [b for b in at.button if b.key == "live_run"], "no model was loaded, so nothing can be recomputed"
    # The zoo's model is inside the allowed folders; the recorded data spec still is not.
    doc["provenance"]["model_path"] = str(zoo_model_path("cnn-digits"))
    at.file_uploader(key="upload_results").set_value([("evil.json", json.dumps(doc).encode(), "application/json")])
    at.run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and "names /etc/passwd, outside the folders" in errors[0], errors
    at.text_input(key="live_data_spec").input("digits").run()  # typed by the user: used as given
    assert_clean(at)
    assert at.button(key="live_run")


def test_launch_and_arguments_carry_allowed_folders(results, monkeypatch, tmp_path):
    args = dash.parse_app_args(["a.json", "--allow-dir", str(tmp_path), f"--allow-dir={tmp_path / 'b'}"])
    assert args.allow_dirs == [tmp_path, tmp_path / "b"]
    monkeypatch.setenv(dash.ENV_ALLOW, str(tmp_path / "c"))
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert dash.app_args(str(APP)).allow_dirs == [tmp_path / "c"]
    roots = dash.allowed_roots(dash.AppArgs(results=[results["cnn-digits"]], reports_dir=tmp_path / "r",
                                            allow_dirs=[tmp_path / "c"]))
    assert results["cnn-digits"].parent.resolve() in roots and (tmp_path / "c").resolve() in roots
    cmd = dash.launch_command([results["cnn-digits"]], port=8600, allow_dirs=[tmp_path])
    assert cmd[-2:] == ["--allow-dir", str(tmp_path.resolve())]


# ----------------------------------------------------------------------------- comparison


def _before_after(results: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """Two versions of cnn-digits' results. Before: the audit plus an extra finding that after
    fixes. After: the first finding's figure moved, one new finding, and one sample that the
    records now say resists every attack."""
    doc = json.loads(results["cnn-digits"].read_text())
    findings = doc["findings"]
    assert findings, "the quick cnn-digits audit has findings"
    old = {**findings[0], "title": "An old problem", "section": "performance", "severity": "medium"}
    before = {**doc, "findings": findings + [old]}
    moved = {**findings[0], "title": re.sub(r"\d+\.\d+%", "12.5%", findings[0]["title"])}
    after = json.loads(json.dumps(doc))
    after["findings"] = [moved, *findings[1:], {**findings[0], "title": "A brand new problem", "section": "performance",
                                                "severity": "low"}]
    rec = after["sections"]["robustness"]["data"]["threat_models"]["linf"]["records"]
    rec["min_norm"][0], rec["broken_by"][0] = None, None
    paths = []
    for name, d in (("before", before), ("after", after)):
        out = tmp_path / name / "results.json"
        out.parent.mkdir()
        out.write_text(json.dumps(d))
        paths.append(out)
    return paths[0], paths[1]


def test_compare_findings_and_paired_robustness(results, tmp_path):
    before, after = _before_after(results, tmp_path)
    a, b = _audit(before), _audit(after)
    first = json.loads(results["cnn-digits"].read_text())["findings"][0]["title"]
    diff = dash.compare_findings(a, b)
    assert [f.title for f in diff.new] == ["A brand new problem"]
    assert [f.title for f in diff.fixed] == ["An old problem"]
    assert len(diff.unchanged) == len(b.result.findings) - 1
    if "%" in first:  # the moved figure pairs on the key and reads A -> B
        (x, y), = diff.changed
        assert x.title == first and y.title != first and dash.finding_key(x) == dash.finding_key(y)
    rows = dash.findings_diff_rows(diff)
    assert [r["change"] for r in rows][:2] == ["new", "fixed"]
    same = dash.compare_findings(a, a)
    assert not same.new and not same.fixed and len(same.unchanged) == len(a.result.findings) and not same.changed

    heads = {h["key"]: h for h in dash.headline_diff(a, b)}
    ha = summarize(a.result).headline("robustness.linf")
    hb = summarize(b.result).headline("robustness.linf")
    assert heads["robustness.linf"]["a"] == ha.text and heads["robustness.linf"]["b"] == hb.text
    assert heads["robustness.linf"]["change"] == f"{100 * (hb.value - ha.value):+.1f} points"

    (pr,) = dash.paired_robustness(a, b)
    rob = a.result.payload("robustness")
    assert pr.eps == rob.threat_model_curve("linf").headline.x == 0.3
    n = len(a.result.sections["robustness"].data["sample_index"])
    robust_a = robust_indicator_at(a, 0.3)
    if robust_a[0]:
        pytest.skip("sample 0 already resists at 0.3 in this audit")
    assert (pr.n, pr.broken_only_a, pr.broken_only_b) == (n, 1, 0), "sample 0 now resists in B only"
    assert pr.broken_both + pr.robust_both == n - 1 and pr.p_value == 1.0
    assert pr.robust_b - pr.robust_a == pytest.approx(1 / n)
    assert pr.robust_a == pytest.approx(sum(robust_a) / n)
    assert dash.paired_robustness(a, _audit(results["lstm-reviews"])) == [], "no norm ball in both"


def robust_indicator_at(audit: dash.Audit, eps: float) -> list[bool]:
    from auditkit.policy import robust_indicator

    return [bool(v) for v in robust_indicator(audit.result.sections["robustness"].data["threat_models"]["linf"], eps)]


def test_compare_view(results, monkeypatch, tmp_path):
    before, after = _before_after(results, tmp_path)
    at = view(run_app(monkeypatch, before, after), "Compare")
    assert_clean(at)
    shown = {m.label: m.value for m in at.metric}
    assert shown["New in B"] == "1" and shown["Fixed (only in A)"] == "1"
    assert shown["Broken only in A"] == "1" and shown["Broken only in B"] == "0"
    findings = at.dataframe[0].value
    assert "A brand new problem" in list(findings["finding"])
    at.selectbox(key="cmp_b").set_value(at.selectbox(key="cmp_a").value).run()
    assert "Choose two different audits." in texts(at.info)


# ----------------------------------------------------------------------------- details = report blocks


def test_details_show_the_report_blocks(results, monkeypatch):
    audit = _audit(results["fraud-mlp"])
    page = dash.section_report_html(audit, "baselines")
    assert 'id="sec-baselines"' in page and "display: none" in page
    assert 'id="sec-performance"' not in page, "only the chosen section"
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page), "offline: nothing fetched"
    whole = dash.section_report_html(audit)
    assert 'id="sec-summary"' in whole and 'id="sec-baselines"' in whole
    with pytest.raises(KeyError):
        dash.section_report_html(audit, "defenses")

    at = view(run_app(monkeypatch, results["fraud-mlp"]), "Audit details")
    assert_clean(at)
    frames = at.get("iframe")
    assert len(frames) == 1 and 'id="sec-baselines"' in frames[0].proto.srcdoc
    assert not at.json or all("baselines" not in str(j.value)[:200] for j in at.json)
    at.toggle(key="details-fraud-mlp-whole").set_value(True).run()
    assert_clean(at)
    assert any('id="sec-summary"' in f.proto.srcdoc for f in at.get("iframe"))
