"""The gate policy file as pydantic models: every bad policy is reported with the file and the
line of the offending key (all problems at once, one line each), a valid policy reads into the
same :class:`Policy` as the rules documented in auditkit/policy.py, and the published JSON
Schema agrees with the parser. No scan: these read policy files only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from auditkit.policy import (
    SHORTHANDS,
    ModelOverrides,
    Policy,
    PolicyError,
    RegressionPolicy,
    Rule,
    load_policy,
    policy_schema,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "auditkit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[tuple[int | None, str]]:
    """``(line, message)`` of each line of the PolicyError that ``load_policy(path)`` raises."""
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    found = []
    for text in str(info.value).splitlines():
        m = re.fullmatch(rf"{re.escape(str(path))}(?:, line (\d+))?: (.+)", text)
        assert m, f"not 'FILE, line N: message': {text!r}"
        found.append((int(m.group(1)) if m.group(1) else None, m.group(2)))
    return found


# -------------------------------------------------------------------------- bad policies
# (policy text, line of the offending key, words the message must hold)
BAD = {
    "unknown key": ("[gate]\nmax_ece = 0.1\nmin_clean_acuracy = 0.9\n", 3,
                    "unknown key 'min_clean_acuracy' in [gate]; did you mean 'min_clean_accuracy'"),
    "unknown key in a rule": ("[gate]\n[[gate.rule]]\nname = 'x'\nmetric = 'provenance.x'\nmin = 1\nmax_ = 2\n", 6,
                              "unknown key 'max_' in [gate.rule]"),
    "unknown key in regression": ("[gate.regression]\nconfidence = 0.9\ntolerance = 0.1\n", 3,
                                  "unknown key 'tolerance' in [gate.regression]"),
    "string for a number": ("[gate]\nmax_ece = '0.1'\n", 2, "'max_ece' must be a number, got str '0.1'; write a "
                                                             "bare number, e.g. max_ece = 0.1"),
    "boolean for a number": ("[gate]\nmin_pr_auc = true\n", 2, "'min_pr_auc' must be a number, got bool"),
    "number for a boolean": ("[gate]\nfail_on_gradient_masking = 1\n", 2, "must be true or false, got int 1"),
    "string for a rule name": ("[gate]\n[[gate.rule]]\nname = 3\nmetric = 'provenance.x'\nmin = 1\n", 3,
                               "'name' must be a string, got int 3"),
    "blank rule name": ("[gate]\n[[gate.rule]]\nname = ' '\nmetric = 'provenance.x'\nmin = 1\n", 3,
                        "'name' must be a non-empty string"),
    "accuracy above 1": ("[gate]\nmax_ece = 0.1\nmin_clean_accuracy = 1.5\n", 3,
                         "'min_clean_accuracy' = 1.5 is out of range; it must be in [0, 1]"),
    "negative threshold": ("[gate]\nmax_ig_completeness_p95 = -0.01\n", 2, "it must be >= 0"),
    "negative eps": ("[gate]\n[[gate.robust_accuracy]]\nnorm = 'l2'\neps = -0.5\nmin = 0.2\n", 4,
                     "'eps' = -0.5 is out of range; it must be >= 0"),
    "robust minimum above 1": ("[gate]\n[[gate.robust_accuracy]]\nnorm = 'l2'\neps = 0.5\nmin = 20\n", 5,
                               "'min' = 20 is out of range; it must be in [0, 1]"),
    "confidence of 1": ("[gate.regression]\nconfidence = 1.0\n", 2, "it must be in (0, 1)"),
    "tolerance above 1": ("[gate.regression]\nmax_robust_accuracy_drop = 3\n", 2, "it must be in [0, 1]"),
    "NaN threshold": ("[gate]\nmax_ece = nan\n", 2, "'max_ece' must be a finite number, got nan"),
    "infinite rule bound": ("[gate]\n[[gate.rule]]\nname = 'x'\nmetric = 'provenance.x'\nmax = inf\n", 5,
                            "'max' must be a finite number, got inf"),
    "NaN eps": ("[gate]\n[[gate.robust_accuracy]]\nnorm = 'linf'\neps = nan\nmin = 0.2\n", 4, "finite number"),
    "unknown norm": ("[gate]\n[[gate.robust_accuracy]]\nnorm = 'L2'\neps = 0.5\nmin = 0.2\n", 3,
                     "norm 'L2' is not one of 'linf', 'l2'"),
    "missing key": ("[gate]\nmax_ece = 0.1\n\n[[gate.robust_accuracy]]\nnorm = 'linf'\nmin = 0.2\n", 4,
                    "[[gate.robust_accuracy]] entry 1 lacks 'eps'; give norm, eps and min"),
    "both bounds": ("[gate]\n[[gate.rule]]\nname = 'x'\nmetric = 'provenance.x'\nmin = 1\nmax = 2\n", 2,
                    "rule 'x' needs exactly one of 'min' or 'max'"),
    "unknown check": ("[gate]\n[[gate.rule]]\nname = 'x'\nmetric = 'sections.robustnes.data.x'\nmin = 1\n", 4,
                      "did you mean 'robustness'"),
    "a table where an array belongs": ("[gate]\nmax_ece = 0.1\n[gate.rule]\nname = 'x'\n", 3,
                                       "'rule' must be an array of tables: write each entry under [[gate.rule]]"),
    "a number where a table belongs": ("[gate]\nregression = 0.01\n", 2, "'regression' must be a table"),
    "an array entry that is not a table": ("[gate]\nrobust_accuracy = [1]\n", 2,
                                           "entry 1 of [[gate.robust_accuracy]] must be a table"),
    "models in a model section": ("[gate.models.a]\nmax_ece = 0.1\nmodels = 1\n", 3,
                                  "unknown key 'models' in [gate.models.a]"),
    "model section name quoted": ("[gate.models.\"my model\"]\nmin_roc_auc = 2\n", 2,
                                  "'min_roc_auc' = 2 is out of range"),
    "two rules of one name": ("[gate]\nmax_ece = 0.1\n[[gate.rule]]\nname = 'max_ece'\nmetric = 'provenance.x'\n"
                              "max = 1\n", 4, "two rules are named 'max_ece' in [gate]"),
    "two robust rules at one eps": ("[gate.models.m]\n[[gate.models.m.robust_accuracy]]\nnorm = 'l2'\neps = 1\n"
                                    "min = 0.1\n[[gate.models.m.robust_accuracy]]\nnorm = 'l2'\neps = 1.0\n"
                                    "min = 0.3\n", 6, "two rules are named 'min robust accuracy l2 eps=1'"),
    "unknown top-level table": ("[gate]\nmax_ece = 0.1\n[gates]\nmax_ece = 0.1\n", 3,
                                "unknown top-level key 'gates'; auditkit.toml holds only a [gate] table"),
    "a dotted key": ("[gate]\nmax_ece = 0.1\nregression.confidence = 0\n", 3, "'confidence' = 0 is out of range"),
    "an inline table": ("[gate]\nregression = { max_accuracy_drop = 0.01, confidence = 2 }\n", 2,
                        "'confidence' = 2 is out of range"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_every_bad_policy_names_its_line(case: str, tmp_path: Path) -> None:
    text, line, words = BAD[case]
    found = problems(write(tmp_path, text))
    assert len(found) == 1, found
    assert found[0][0] == line, (case, found, text.splitlines()[line - 1] if line else None)
    assert words in found[0][1], found


def test_pyproject_errors_name_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "[project]\nname = 'demo'\n\n[tool.auditkit]\ncolour = 'red'\n\n[tool.auditkit.gate]\n"
                           "min_roc_auc = 'high'\n[tool.auditkit.gate.models.m]\nmax_ece = -1\n", "pyproject.toml")
    found = problems(path)
    assert [line for line, _ in found] == [5, 8, 10], found
    assert "unknown key 'colour' in [tool.auditkit]; allowed keys: gate" in found[0][1]
    assert "'min_roc_auc' must be a number, got str 'high'" in found[1][1]
    assert "'max_ece' = -1 is out of range" in found[2][1]
    # Other tools' tables are theirs: not judged.
    ok = write(tmp_path, "[tool.black]\nline-length = 'x'\n[tool.auditkit.gate]\nmax_ece = 0.1\n", "pyproject.toml")
    assert [r.name for r in load_policy(ok).rules] == ["max_ece"]


def test_all_problems_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, """\
[gate]
max_ece = nan
min_clean_accuracy = "high"
frobnicate = 1

[[gate.rule]]
name = "recall"
metric = "sections.performance.data.recall"

[gate.regression]
confidence = 0

[gate.models."cnn-digits"]
fail_on_gradient_masking = "no"
[[gate.models."cnn-digits".robust_accuracy]]
norm = "linf"
eps = -1
min = 0.5
""")
    found = problems(path)
    assert [line for line, _ in found] == [2, 3, 4, 6, 11, 14, 17], found
    assert all(line is not None for line, _ in found)


def test_one_error_is_one_line_for_the_cli(tmp_path: Path) -> None:
    """The CLI prints a PolicyError on one line of stderr; a single problem has no newline."""
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, "[gate]\nmax_ece = 'low'\n"))
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------- valid policies
def reference_policy(doc: dict[str, Any], source: str) -> Policy:
    """What the rules in auditkit/policy.py's docstring say a parsed [gate] table means, written
    out independently of the pydantic models (the hand-written parser's semantics)."""

    def rules_of(table: dict[str, Any]) -> list[Rule]:
        rules = [Rule(key, metric, op, float(table[key]), label)
                 for key, (metric, op, label) in SHORTHANDS.items() if key in table]
        for entry in table.get("robust_accuracy", []):
            norm, eps = entry["norm"], float(entry["eps"])
            rules.append(Rule(entry.get("name", f"min robust accuracy {norm} eps={eps:g}"),
                              f"sections.robustness.data.threat_models.{norm}.curve", ">=", float(entry["min"]),
                              f"robust accuracy ({norm}, eps={eps:g})", norm, eps))
        for entry in table.get("rule", []):
            key = "min" if "min" in entry else "max"
            rules.append(Rule(entry["name"], entry["metric"], ">=" if key == "min" else "<=", float(entry[key]),
                              entry["metric"]))
        return rules

    gate = doc["gate"]
    reg = {k: float(v) for k, v in gate.get("regression", {}).items()}
    models = {name: ModelOverrides(rules_of(t), {k: float(v) for k, v in t.get("regression", {}).items()},
                                   t.get("fail_on_gradient_masking"))
              for name, t in gate.get("models", {}).items()}
    return Policy(rules=rules_of(gate), regression=RegressionPolicy(**reg) if reg else None,
                  fail_on_masking=gate.get("fail_on_gradient_masking", True), source=source, models=models)


def test_committed_policy_round_trips() -> None:
    path = REPO / "auditkit.toml"
    policy = load_policy(path)
    assert policy == reference_policy(tomllib.loads(path.read_text()), str(path))
    assert policy.models and all(over.rules for over in policy.models.values())


def test_every_key_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path, """\
[gate]
min_clean_accuracy = 0.95
max_ece = 0.1
min_pr_auc = 0.3
min_roc_auc = 0.9
max_ig_completeness_p95 = 2           # an integer is a number
fail_on_gradient_masking = false
[[gate.robust_accuracy]]
norm = "linf"
eps = 0.1
min = 0.2
[[gate.robust_accuracy]]
norm = "l2"
eps = 1
min = 0
name = "l2 at one"
[[gate.rule]]
name = "covered"
metric = "sections.gan.data.coverage.classes_covered"
min = 9
[[gate.rule]]
name = "provenance figure"
metric = "provenance.seconds"
max = -3.5                            # any finite number
[gate.regression]
max_accuracy_drop = 0.01
confidence = 0.9
[gate.models."cnn-digits"]
min_clean_accuracy = 0.97
fail_on_gradient_masking = true
[gate.models."cnn-digits".regression]
max_robust_accuracy_drop = 0.05
[[gate.models."cnn-digits".robust_accuracy]]
norm = "linf"
eps = 0.05
min = 0.5
[gate.models.empty]
""")
    policy = load_policy(path)
    assert policy == reference_policy(tomllib.loads(path.read_text()), str(path))
    assert [r.name for r in policy.rules] == ["min_clean_accuracy", "max_ece", "min_pr_auc", "min_roc_auc",
                                              "max_ig_completeness_p95", "min robust accuracy linf eps=0.1",
                                              "l2 at one", "covered", "provenance figure"]
    assert all(type(r.threshold) is float for r in policy.rules)  # noqa: E721  (ints read as floats)
    assert policy.regression == RegressionPolicy(max_accuracy_drop=0.01, max_robust_accuracy_drop=0.0, confidence=0.9)
    assert policy.models["cnn-digits"].regression == {"max_robust_accuracy_drop": 0.05}  # only what it sets
    assert policy.models["empty"] == ModelOverrides()
    cnn = policy.for_model("cnn-digits")
    assert cnn.fail_on_masking and cnn.regression == RegressionPolicy(0.01, 0.05, 0.9)
    assert next(r for r in cnn.rules if r.name == "min_clean_accuracy").threshold == 0.97


def test_empty_regression_table_is_no_regression_policy(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "[gate]\n[gate.regression]\n")).regression is None


def test_documented_policy_examples_load(tmp_path: Path) -> None:
    """Every ```toml block of docs/github-actions.md that holds a [gate] is a valid policy."""
    text = (REPO / "docs" / "github-actions.md").read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[gate" in b]
    assert blocks
    for block in blocks:
        assert load_policy(write(tmp_path, block)).source


# ----------------------------------------------------------------------------- the schema
def test_schema_agrees_with_the_parser(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert "null" not in str(schema)  # TOML has no null: an optional key is left out
    committed = tomllib.loads((REPO / "auditkit.toml").read_text())
    assert not list(validator.iter_errors(committed))
    # Bad cases the schema can see are refused by both (NaN, a check's name and duplicate rule
    # names are beyond JSON Schema: the parser alone refuses those).
    beyond = {"NaN threshold", "infinite rule bound", "NaN eps", "unknown check", "two rules of one name",
              "two robust rules at one eps"}
    for case, (text, _, _) in BAD.items():
        if case not in beyond:
            doc = tomllib.loads(text)
            assert list(validator.iter_errors(doc)), case
            with pytest.raises(PolicyError):
                load_policy(write(tmp_path, text))


def test_schema_bounds_match_the_documented_ranges() -> None:
    defs = policy_schema()["$defs"]
    gate = defs["GateTable"]["properties"]
    assert (gate["min_clean_accuracy"]["minimum"], gate["min_clean_accuracy"]["maximum"]) == (0, 1)
    assert "maximum" not in gate["max_ig_completeness_p95"] and gate["max_ig_completeness_p95"]["minimum"] == 0
    robust = defs["RobustAccuracyTable"]
    assert robust["properties"]["norm"]["enum"] == ["linf", "l2"] and robust["required"] == ["norm", "eps", "min"]
    confidence = defs["RegressionTable"]["properties"]["confidence"]
    assert (confidence["exclusiveMinimum"], confidence["exclusiveMaximum"], confidence["default"]) == (0, 1, 0.95)


def test_published_schema_is_current() -> None:
    published = json.loads((REPO / "docs" / "policy.schema.json").read_text())
    assert published == policy_schema(), (
        "docs/policy.schema.json is out of date; regenerate it: python -c \"import json; from auditkit.policy "
        "import policy_schema; print(json.dumps(policy_schema(), indent=2))\" > docs/policy.schema.json")
