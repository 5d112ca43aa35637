"""The CI gate: a policy of thresholds, a paired regression test against a baseline, and the
gradient-masking flag, applied to an :class:`~auditkit.results.AuditResult` (DESIGN.md §1, §6).

The gate reads results only; it never recomputes an audit figure. It returns a
:class:`GateDecision`; the CLI maps ``passed`` to exit code 0, a failure to 1, and a
:class:`PolicyError` or :class:`~auditkit.results.ResultsError` to 2.

Policy file
===========

``auditkit.toml`` (a ``[gate]`` table) or ``pyproject.toml`` (the same under
``[tool.auditkit.gate]``). The tables are pydantic models (:class:`GateTable` and the models it
holds; :func:`policy_schema` gives their JSON Schema): unknown keys, values of the wrong TOML
type, NaN or infinite thresholds and values out of range are refused, every problem on a line
of its own that names the file and the line of the offending key. Every key is optional::

    [gate]
    min_clean_accuracy = 0.95           # sections.performance.data.accuracy.value >= 0.95
    max_ece = 0.1                       # sections.performance.data.calibration.ece <= 0.1
    min_pr_auc = 0.3                    # sections.performance.data.pr_auc.value >= 0.3
    min_roc_auc = 0.9                   # sections.performance.data.roc_auc.value >= 0.9
    max_ig_completeness_p95 = 0.02      # sections.explanation-quality.data.ig_completeness.p95 <= 0.02
    fail_on_gradient_masking = true     # default true

    [[gate.robust_accuracy]]            # minimum robust accuracy at an eps (from the curve)
    norm = "linf"                       # "linf" or "l2"
    eps = 0.1
    min = 0.2
    # name = "..."                      # optional; default "min robust accuracy linf eps=0.1"

    [[gate.rule]]                       # any number by dotted path into results.json
    name = "fraud pr-auc"
    metric = "sections.performance.data.pr_auc.value"
    min = 0.3                           # exactly one of min / max

    [gate.regression]                   # used when a baseline results.json is given
    max_accuracy_drop = 0.01            # absolute accuracy (0.01 = one point); default 0
    max_robust_accuracy_drop = 0.02     # default 0
    confidence = 0.95                   # of the one-sided paired test; default 0.95

    [gate.models."cnn-digits"]          # for results whose card name is "cnn-digits"
    min_clean_accuracy = 0.97           # any key above; a rule of the same name is replaced
    [[gate.models."cnn-digits".robust_accuracy]]
    norm = "linf"
    eps = 0.1
    min = 0.5

Rule names: a shorthand rule is named by its key (``min_clean_accuracy``), a robust-accuracy
rule by its ``name`` or ``min robust accuracy NORM eps=EPS``, a ``[[gate.rule]]`` by its
``name``. A model section's rule replaces the global rule of the same name and adds the others;
its ``regression`` keys and ``fail_on_gradient_masking`` override the global ones.

A metric path may end at a ``{"value", "ci_low", "ci_high", "n"}`` object (its ``value`` is
read); list items are addressed by index (``...per_class.1.recall``).

Decisions
=========

- A threshold rule whose metric is absent fails, saying which check must run, or that the
  section was skipped and why: a gate never passes on missing evidence.
- A robust-accuracy rule reads the curve point at ``eps`` (within 1e-9); otherwise the
  ``fine_curve`` point at the smallest eps >= the asked one. Robust accuracy only falls as eps
  grows, so that point never overstates robustness at the asked eps (conservative).
- Regression (baseline given): both results must come from the same data (``data_sha256``),
  the same test samples and, for robustness, the same sample indices and attacks, else
  :class:`BaselineError`. Clean accuracy and robust accuracy at each gated eps are compared per
  sample with an exact McNemar test; a rule fails only when the drop exceeds the tolerance AND
  the one-sided test (in the direction of a drop) is significant at ``confidence``, so that a
  few samples flipping both ways do not fail the build.
- Gradient masking: with ``fail_on_gradient_masking``, a robustness section whose masking
  checks are ``suspected`` or include a ``fail`` fails the gate, listing the evidence.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import reprlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema
from scipy import stats as sps

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib  # type: ignore[no-redef]

from auditkit.errors import BaselineResultsError as BaselineError, PolicyError  # noqa: F401  (re-exported)
from auditkit.metrics import broken_at
from auditkit.results import AuditResult, ResultsError, load_result
from auditkit.sections import PayloadError, RobustnessData
from auditkit.stats import mcnemar_exact
from auditkit.summary import AuditSummary, Headline, format_interval, format_value, summarize

Op = Literal[">=", "<="]
Kind = Literal["threshold", "regression", "masking"]

# key -> (dotted metric path, operator, what it is called in messages)
SHORTHANDS: dict[str, tuple[str, Op, str]] = {
    "min_clean_accuracy": ("sections.performance.data.accuracy.value", ">=", "clean accuracy"),
    "max_ece": ("sections.performance.data.calibration.ece", "<=", "expected calibration error"),
    "min_pr_auc": ("sections.performance.data.pr_auc.value", ">=", "PR-AUC"),
    "min_roc_auc": ("sections.performance.data.roc_auc.value", ">=", "ROC-AUC"),
    "max_ig_completeness_p95": ("sections.explanation-quality.data.ig_completeness.p95", "<=",
                                "IG completeness error (p95)"),
}
RESULT_ROOTS = ("sections", "provenance", "findings", "schema_version")


# --------------------------------------------------------------------------------- policy
@dataclass
class Rule:
    """``metric op threshold`` over results. Robust-accuracy rules also carry ``norm``/``eps``
    and read the robustness curve rather than ``metric`` alone."""

    name: str
    metric: str
    op: Op
    threshold: float
    label: str = ""  # what the metric is called in messages (default: the metric path)
    norm: str | None = None
    eps: float | None = None


@dataclass
class RegressionPolicy:
    """Tolerances (absolute accuracy, 0.01 = one point) and the paired test's confidence."""

    max_accuracy_drop: float = 0.0
    max_robust_accuracy_drop: float = 0.0
    confidence: float = 0.95


@dataclass
class ModelOverrides:
    """What a ``[gate.models."NAME"]`` table sets; ``None`` / empty means "as the global policy"."""

    rules: list[Rule] = field(default_factory=list)
    regression: dict[str, float] = field(default_factory=dict)
    fail_on_masking: bool | None = None


@dataclass
class Policy:
    """A whole gate policy. ``models`` hold per-model overrides keyed by the card's ``name``;
    :meth:`for_model` applies them. ``model`` names the section applied, if any."""

    rules: list[Rule] = field(default_factory=list)
    regression: RegressionPolicy | None = None
    fail_on_masking: bool = True
    source: str = "default policy (no policy file found)"
    models: dict[str, ModelOverrides] = field(default_factory=dict)
    model: str | None = None

    def for_model(self, name: str | None) -> "Policy":
        """This policy with the ``[gate.models."name"]`` overrides applied (itself if none)."""
        over = self.models.get(name) if name else None
        if over is None:
            return self
        rules = list(self.rules)
        for rule in over.rules:
            same = [i for i, r in enumerate(rules) if r.name == rule.name]
            if same:
                rules[same[0]] = rule
            else:
                rules.append(rule)
        regression = self.regression
        if over.regression:
            regression = replace(regression or RegressionPolicy(), **over.regression)
        masking = self.fail_on_masking if over.fail_on_masking is None else over.fail_on_masking
        return Policy(rules=rules, regression=regression, fail_on_masking=masking, source=self.source,
                      models=self.models, model=name)


# ----------------------------------------------------------------------- the policy file
# The file's tables as pydantic models: they validate the TOML and are the published schema
# (policy_schema). Validation is strict because TOML values are typed already: the string "0.9"
# is not a number and "yes" is not a boolean. TOML also spells nan and inf: no threshold is.
Number = Annotated[float, Field(allow_inf_nan=False)]
Proportion = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
OpenUnit = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]
Name = Annotated[str, Field(pattern=r"\S")]  # not empty, not blank


class _Table(BaseModel):
    """A table of the policy file: no unknown keys, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RobustAccuracyTable(_Table):
    """One ``[[gate.robust_accuracy]]`` entry: a minimum robust accuracy at ``eps`` for ``norm``,
    read from the robustness curve."""

    norm: Literal["linf", "l2"] = Field(description="threat model: the L-infinity or the L2 ball")
    eps: NonNegative = Field(description="radius of the ball, in the model's input units")
    min: Proportion = Field(description="minimum robust accuracy at eps, in [0, 1]")
    name: Name | None = Field(None, description="rule name (default 'min robust accuracy NORM eps=EPS')")

    def to_rule(self) -> Rule:
        eps = float(self.eps)
        return Rule(name=self.name or f"min robust accuracy {self.norm} eps={eps:g}",
                    metric=f"sections.robustness.data.threat_models.{self.norm}.curve", op=">=",
                    threshold=float(self.min), label=f"robust accuracy ({self.norm}, eps={eps:g})",
                    norm=self.norm, eps=eps)


class MetricRuleTable(_Table):
    """One ``[[gate.rule]]`` entry: any number in results.json by dotted path, with exactly one
    of ``min`` / ``max``."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["min"]}, {"required": ["max"]}]})

    name: Name = Field(description="rule name, as the gate's messages and reports show it")
    metric: str = Field(description="dotted path into results.json; list items by index; a path ending at "
                                    "a {value, ci_low, ci_high, n} object reads its value",
                        examples=["sections.performance.data.per_class.3.recall"])
    min: Number | None = Field(None, description="the metric must be >= min")
    max: Number | None = Field(None, description="the metric must be <= max")

    @field_validator("metric")
    @classmethod
    def _dotted_path(cls, metric: str) -> str:
        problem = _metric_problem(metric)
        if problem is not None:
            raise PydanticCustomError("metric_path", "{problem}", {"problem": problem})
        return metric

    @model_validator(mode="after")
    def _one_bound(self) -> "MetricRuleTable":
        if (self.min is None) == (self.max is None):
            raise PydanticCustomError("one_bound", "rule '{name}' needs exactly one of 'min' or 'max'",
                                      {"name": self.name})
        return self

    def to_rule(self) -> Rule:
        op: Op = ">=" if self.min is not None else "<="
        threshold = self.min if self.min is not None else self.max
        assert threshold is not None
        return Rule(name=self.name, metric=self.metric, op=op, threshold=float(threshold), label=self.metric)


class RegressionTable(_Table):
    """``[gate.regression]``: used when a baseline results.json is given."""

    max_accuracy_drop: Proportion = Field(0.0, description="tolerated drop of clean accuracy (0.01 = one point)")
    max_robust_accuracy_drop: Proportion = Field(0.0, description="tolerated drop of robust accuracy")
    confidence: OpenUnit = Field(0.95, description="confidence of the one-sided paired McNemar test")

    def overrides(self) -> dict[str, float]:
        """The keys the file sets (a model's table overrides only those)."""
        return {k: float(getattr(self, k)) for k in type(self).model_fields if k in self.model_fields_set}


def _shorthand(key: str, bounds: str) -> Any:
    metric, op, label = SHORTHANDS[key]
    return Field(None, description=f"{label}: {metric} {op} this ({bounds})")


class ModelGateTable(_Table):
    """``[gate.models."NAME"]``: for results whose card name is NAME, every key of ``[gate]`` but
    ``models``. Its rules replace the global rules of the same name and add the others."""

    min_clean_accuracy: Proportion | None = _shorthand("min_clean_accuracy", "in [0, 1]")
    max_ece: Proportion | None = _shorthand("max_ece", "in [0, 1]")
    min_pr_auc: Proportion | None = _shorthand("min_pr_auc", "in [0, 1]")
    min_roc_auc: Proportion | None = _shorthand("min_roc_auc", "in [0, 1]")
    max_ig_completeness_p95: NonNegative | None = _shorthand("max_ig_completeness_p95", ">= 0")
    fail_on_gradient_masking: bool | None = Field(
        None, description="fail when the gradient-masking checks fail or are suspected (default true)")
    robust_accuracy: list[RobustAccuracyTable] = Field(default_factory=list)
    rule: list[MetricRuleTable] = Field(default_factory=list)
    regression: RegressionTable | None = None

    def to_rules(self) -> list[Rule]:
        """Shorthands (in :data:`SHORTHANDS` order), then robust-accuracy rules, then ``rule``s."""
        rules = []
        for key, (metric, op, label) in SHORTHANDS.items():
            threshold = getattr(self, key)
            if threshold is not None:
                rules.append(Rule(name=key, metric=metric, op=op, threshold=float(threshold), label=label))
        rules += [entry.to_rule() for entry in self.robust_accuracy]
        rules += [entry.to_rule() for entry in self.rule]
        return rules

    def rule_locations(self) -> list[tuple[str, tuple[str | int, ...]]]:
        """Each rule's name and where it is written (relative to this table), in :meth:`to_rules` order."""
        found: list[tuple[str, tuple[str | int, ...]]] = [(k, (k,)) for k in SHORTHANDS if getattr(self, k) is not None]
        # A robust-accuracy rule without a name is named by its norm and eps: point at its entry.
        found += [(e.to_rule().name, ("robust_accuracy", i) + (("name",) if e.name else ()))
                  for i, e in enumerate(self.robust_accuracy)]
        found += [(e.name, ("rule", i, "name")) for i, e in enumerate(self.rule)]
        return found

    def to_overrides(self) -> ModelOverrides:
        return ModelOverrides(rules=self.to_rules(),
                              regression=self.regression.overrides() if self.regression else {},
                              fail_on_masking=self.fail_on_gradient_masking)


class GateTable(ModelGateTable):
    """``[gate]`` (``[tool.auditkit.gate]`` in pyproject.toml). Every key is optional."""

    models: dict[str, ModelGateTable] = Field(
        default_factory=dict, description='per-model sections: [gate.models."NAME"], NAME being the card\'s name')


class PolicyFile(_Table):
    """An ``auditkit.toml``: a ``[gate]`` table and nothing else."""

    model_config = ConfigDict(title="auditkit gate policy")

    gate: GateTable | None = None


class _AuditkitTool(_Table):
    gate: GateTable | None = None


class _Tool(BaseModel):  # other tools' tables are theirs
    model_config = ConfigDict(extra="allow", strict=True)

    auditkit: _AuditkitTool | None = None


class _Pyproject(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    tool: _Tool | None = None


class _TomlSchema(GenerateJsonSchema):
    """JSON Schema of TOML: no null, so an optional key is one that may be left out, not ``null``."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if "default" in schema and schema["default"] is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of an ``auditkit.toml`` policy (generated from :class:`PolicyFile`): the
    published contract; in ``pyproject.toml`` the ``gate`` table sits under ``tool.auditkit``."""
    schema = PolicyFile.model_json_schema(schema_generator=_TomlSchema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://auditkit.invalid/schemas/policy.json"
    schema["description"] = ("auditkit gate policy: thresholds, robust-accuracy minima, rules by dotted path into "
                             "results.json, regression tolerances against a baseline, per-model sections. "
                             "In pyproject.toml the same [gate] table is [tool.auditkit.gate]. "
                             "See docs/github-actions.md.")
    return schema


def _metric_problem(metric: str) -> str | None:
    """Why ``metric`` is not a dotted path into results.json naming a registered check, if it is
    not (typos fail at load time rather than as a missing metric in every run)."""
    parts = metric.split(".")
    if parts[0] not in RESULT_ROOTS or any(not p for p in parts):
        return (f"metric {metric!r} is not a dotted path into results.json; start it with one of "
                f"{', '.join(RESULT_ROOTS)}, e.g. sections.performance.data.accuracy.value")
    if parts[0] == "sections":
        known = _known_checks()
        if len(parts) < 2 or parts[1] not in known:
            got = parts[1] if len(parts) > 1 else ""
            close = difflib.get_close_matches(got, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return f"metric {metric!r} names no known check '{got}'; {hint}checks: {', '.join(known)}"
    return None


class _Lines:
    """Finds the line of a table or key in the policy text, for error messages (tomllib reports
    lines only for syntax errors, pydantic only the key path)."""

    _HEADER = re.compile(r"^\s*(\[\[|\[)\s*([^\[\]]+?)\s*(\]\]|\])\s*(#.*)?$")
    _TOKEN = re.compile(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)')

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, tuple[str, ...], bool]] = []
        for i, line in enumerate(self.lines):
            m = self._HEADER.match(line)
            if m:
                parts = tuple(a or b or c for a, b, c in self._TOKEN.findall(m.group(2)))
                self.headers.append((i, parts, m.group(1) == "[["))

    def find(self, table: tuple[str, ...], key: str | None = None, index: int | None = None) -> int | None:
        """1-based line of ``key`` in ``table`` (the ``index``-th entry of an array of tables),
        else of the table's header, else of ``key`` anywhere."""
        matches = [(i, k) for k, (i, parts, is_array) in enumerate(self.headers)
                   if parts == table and (index is None or is_array)]
        if index is not None:
            matches = matches[index : index + 1]
        key_re = re.compile(rf"(^|[{{,.\s])(\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})\s*=") if key else None
        if matches:
            start, k = matches[0]
            end = self.headers[k + 1][0] if k + 1 < len(self.headers) else len(self.lines)
            if key_re is not None:
                for i in range(start + 1, end):
                    if key_re.search(self.lines[i].split("#")[0]):
                        return i + 1
            return start + 1
        if key_re is not None:
            for i, line in enumerate(self.lines):
                if key_re.search(line.split("#")[0]):
                    return i + 1
        return None

    def of(self, loc: tuple[str | int, ...], missing: bool = False) -> int | None:
        """The line of the key or table at a pydantic error ``loc`` (string keys, integer indices
        into arrays of tables); with ``missing``, the key is absent: the line of its table."""
        parts = list(loc)
        key = parts.pop() if parts and isinstance(parts[-1], str) else None  # None: a loc ending at an entry
        index = parts.pop() if parts and isinstance(parts[-1], int) else None
        table = tuple(str(p) for p in parts)
        if missing:
            key = None
        if key is not None and index is None:
            line = self.find(table + (key,))  # a table written as [its.header]
            if line is not None:
                return line
        line = self.find(table, key, index)
        if line is None and table:  # an inline table or array: the line of its key
            line = self.find(table[:-1], table[-1])
        return line


def _quote(part: str) -> str:
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'


def _table_name(loc: tuple[str | int, ...]) -> str:
    return ".".join(_quote(str(p)) for p in loc if not isinstance(p, int))


def _known_checks() -> list[str]:
    from auditkit.builtin_checks import all_checks

    return list(all_checks())


def _at(root: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[type[BaseModel] | None, Any]:
    """The model whose field the last key of ``loc`` is (``None`` if the key is not a model's
    field) and the annotation there (``Optional`` removed), by walking ``root``'s annotations."""
    ann: Any = root
    owner: type[BaseModel] | None = None
    for part in loc:
        ann = _unwrap(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(part, str):
            owner = ann
            info = ann.model_fields.get(part)
            ann = info.annotation if info is not None else None
            if info is not None and info.metadata:  # constraints given beside Field(...): keep them
                ann = Annotated[(ann, *info.metadata)]
        elif get_origin(ann) is list and isinstance(part, int):
            owner, ann = None, get_args(ann)[0]
        elif get_origin(ann) is dict:
            owner, ann = None, get_args(ann)[1]
        else:
            return None, None
    return owner, _unwrap(ann)


def _unwrap(ann: Any) -> Any:
    """``X`` from ``X | None``."""
    if get_origin(ann) in (Union, UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        return args[0] if len(args) == 1 else ann
    return ann


def _bounds(ann: Any) -> str:
    """The range an ``Annotated`` float allows, as ``in [0, 1]``, ``in (0, 1)`` or ``>= 0``."""
    found: dict[str, float] = {}
    for meta in get_args(ann)[1:] if get_origin(ann) is Annotated else ():
        for item in [meta, *getattr(meta, "metadata", [])]:
            for k in ("ge", "gt", "le", "lt"):
                if getattr(item, k, None) is not None:
                    found[k] = float(getattr(item, k))
    lo = f"[{found['ge']:g}" if "ge" in found else f"({found['gt']:g}" if "gt" in found else None
    hi = f"{found['le']:g}]" if "le" in found else f"{found['lt']:g})" if "lt" in found else None
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + lo[1:]
    if hi:
        return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
    return "in range"


def _short(value: Any) -> str:
    return reprlib.repr(value)


def _problem(error: ErrorDetails, root: type[BaseModel]) -> str:
    """One pydantic error as a sentence that says what is wrong and how to fix it."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    if kind in ("metric_path", "one_bound"):  # ours: already a sentence
        return error["msg"]
    key = str(loc[-1]) if loc else ""
    parent = loc[:-1]
    if kind == "extra_forbidden":
        owner, _ = _at(root, parent + ("",))
        if root is PolicyFile and len(loc) == 1:
            return f"unknown top-level key '{key}'; auditkit.toml holds only a [gate] table"
        allowed = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key '{key}' in [{_table_name(parent)}]; {hint}allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        owner, _ = _at(root, loc)
        required = [k for k, f in owner.model_fields.items() if f.is_required()] if owner is not None else []
        give = f"; give {', '.join(required[:-1])} and {required[-1]}" if len(required) > 1 else ""
        if parent and isinstance(parent[-1], int):
            return f"[[{_table_name(parent)}]] entry {parent[-1] + 1} lacks '{key}'{give}"
        return f"[{_table_name(parent)}] lacks '{key}'{give}"
    if isinstance(loc[-1] if loc else None, int):  # an entry of an array of tables
        return f"entry {loc[-1] + 1} of [[{_table_name(loc)}]] must be a table, got {_short(value)}"
    _, ann = _at(root, loc)
    if kind == "float_type":
        try:
            example = f"{float(value):g}" if isinstance(value, str) and math.isfinite(float(value)) else "0.1"
        except ValueError:
            example = "0.1"
        return (f"'{key}' must be a number, got {type(value).__name__} {_short(value)}; write a bare number, "
                f"e.g. {key} = {example}")
    if kind == "finite_number":
        return f"'{key}' must be a finite number, got {value}; a threshold cannot be nan or inf"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"'{key}' = {value:g} is out of range; it must be {_bounds(ann)}"
    if kind == "bool_type":
        return f"'{key}' must be true or false, got {type(value).__name__} {_short(value)}"
    if kind == "literal_error":
        options = get_args(_unwrap(get_args(ann)[0] if get_origin(ann) is Annotated else ann))
        return f"{key} {_short(value)} is not one of {', '.join(map(repr, options))}"
    if kind == "string_type":
        return f"'{key}' must be a string, got {type(value).__name__} {_short(value)}"
    if kind == "string_pattern_mismatch":
        return f"'{key}' must be a non-empty string, got {_short(value)}"
    if kind == "list_type":
        return f"'{key}' must be an array of tables: write each entry under [[{_table_name(loc)}]]"
    if kind == "dict_type" and key == "models":
        return f"'models' must hold one table per model: [{_table_name(loc)}.\"NAME\"]"
    if kind in ("model_type", "dict_type"):
        return f"'{key}' must be a table: write it as [{_table_name(loc)}], got {_short(value)}"
    return f"'{key}': {error['msg']}" if key else error["msg"]


def load_policy(path: str | Path | None = None, search_from: Path | None = None) -> Policy:
    """Read a gate policy.

    ``path``: an ``auditkit.toml`` (``[gate]``) or a ``pyproject.toml``
    (``[tool.auditkit.gate]``; any file named ``pyproject.toml`` is read that way). With
    ``None``, look in ``search_from`` (default: the working directory) for ``auditkit.toml``
    with a ``[gate]`` table, then ``pyproject.toml`` with ``[tool.auditkit.gate]``; when neither
    exists, return the default policy (no thresholds; gradient masking fails; regression with
    zero tolerances when a baseline is given). Raises :class:`PolicyError` naming the file and
    the line of every problem (one line each).
    """
    if path is None:
        here = Path.cwd() if search_from is None else Path(search_from)
        for candidate in (here / "auditkit.toml", here / "pyproject.toml"):
            if candidate.is_file():
                policy = _load_file(candidate, required=False)
                if policy is not None:
                    return policy
        return Policy()
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist; pass an auditkit.toml with a [gate] table "
                          "(see docs/github-actions.md) or leave --policy out")
    policy = _load_file(path, required=True)
    if policy is None:  # unreachable: required=True raises instead
        raise PolicyError(f"{path} holds no gate policy")
    return policy


def _load_file(path: Path, required: bool) -> Policy | None:
    from auditkit.files import read_user_text

    text = read_user_text(path, "policy file", PolicyError)
    try:
        doc = tomllib.loads(text)
    except RecursionError:
        raise PolicyError(f"{path}: nested too deeply to be a gate policy; see docs/github-actions.md") from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        where = f"{path}, line {m.group(1)}" if m else str(path)
        raise PolicyError(f"{where}: invalid TOML: {exc}; fix the syntax there") from None
    pyproject = path.name == "pyproject.toml"
    root: type[BaseModel] = _Pyproject if pyproject else PolicyFile
    gate_loc: tuple[str, ...] = ("tool", "auditkit", "gate") if pyproject else ("gate",)
    if pyproject and not required and _dig(doc, gate_loc) is None:
        return None  # a project's pyproject.toml without a gate policy: not ours to judge
    lines = _Lines(text)
    try:
        parsed = root.model_validate(doc)
    except RecursionError:
        raise PolicyError(f"{path}: nested too deeply to be a gate policy; see docs/github-actions.md") from None
    except ValidationError as exc:
        raise _policy_error(path, lines, [(tuple(e["loc"]), _problem(e, root), e["type"] == "missing")
                                          for e in exc.errors()]) from None
    body: GateTable | None = _dig(parsed, gate_loc)
    if body is None:
        if required:
            table = "[tool.auditkit.gate]" if pyproject else "[gate]"
            how = "add one or pass an auditkit.toml" if pyproject else "add one, e.g. [gate] min_clean_accuracy = 0.9"
            raise PolicyError(f"{path} has no {table} table; {how}")
        return None
    # Rule names must be unique within a table: a model's rule replaces the global one by name.
    clashes = []
    for loc, table in [(gate_loc, body), *(((*gate_loc, "models", n), t) for n, t in body.models.items())]:
        seen: set[str] = set()
        for name, where in table.rule_locations():
            if name in seen:
                clashes.append(((*loc, *where), f"two rules are named '{name}' in [{_table_name(loc)}]; "
                                                "give each rule its own name", False))
            seen.add(name)
    if clashes:
        raise _policy_error(path, lines, clashes)
    regression = body.regression.overrides() if body.regression else {}
    return Policy(rules=body.to_rules(), regression=RegressionPolicy(**regression) if regression else None,
                  fail_on_masking=True if body.fail_on_gradient_masking is None else body.fail_on_gradient_masking,
                  source=str(path), models={name: table.to_overrides() for name, table in body.models.items()})


def _dig(node: Any, loc: tuple[str, ...]) -> Any:
    """``node[a][b]...`` (dicts or models) along ``loc``, ``None`` where a step is missing."""
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return None
    return node


def _policy_error(path: Path, lines: _Lines, problems: list[tuple[tuple[str | int, ...], str, bool]]) -> PolicyError:
    """One :class:`PolicyError` for all ``(loc, message, missing)`` problems: one line each,
    ``FILE, line N: message``, in the order of the file."""
    located = [(lines.of(loc, missing), message) for loc, message, missing in problems]
    located.sort(key=lambda item: (item[0] is None, item[0] or 0))
    return PolicyError("\n".join(f"{path}, line {line}: {message}" if line else f"{path}: {message}"
                                 for line, message in located))


# ------------------------------------------------------------------------------- decision
@dataclass
class RuleOutcome:
    """One rule's verdict. ``value``/``threshold``: the figure and its limit (for regression
    rules, the drop and the tolerance, in absolute accuracy)."""

    name: str
    passed: bool
    message: str
    value: float | None = None
    threshold: float | None = None
    kind: Kind = "threshold"
    p_value: float | None = None


@dataclass
class GateDecision:
    """The gate's verdict: ``passed`` iff every rule passed."""

    passed: bool
    rules: list[RuleOutcome]
    policy: str = ""
    model: str | None = None
    baseline: str | None = None

    @property
    def failed(self) -> list[RuleOutcome]:
        return [r for r in self.rules if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``passed``, ``policy``, ``model``, ``baseline``, counts and ``rules``."""
        return {"passed": self.passed, "policy": self.policy, "model": self.model, "baseline": self.baseline,
                "n_rules": len(self.rules), "n_failed": len(self.failed), "rules": [asdict(r) for r in self.rules]}

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON atomically (e.g. ``OUT/gate.json``)."""
        from auditkit.files import atomic_write_bytes

        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        atomic_write_bytes(path, lambda tmp: tmp.write_text(text))
        return path

    def _headline(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        who = f" for {self.model}" if self.model else ""
        if not self.rules:
            counts = "no rules to check"
        elif self.passed:
            counts = f"all {len(self.rules)} rules passed"
        else:
            counts = f"{len(self.failed)} of {len(self.rules)} rules failed"
        base = f"; baseline {self.baseline}" if self.baseline else ""
        return f"gate {verdict}{who}: {counts} (policy {self.policy}{base})"

    def summary(self) -> str:
        """Plain text: the verdict, then failed rules first, one line each."""
        ordered = self.failed + [r for r in self.rules if r.passed]
        lines = [self._headline()]
        lines += [f"  {'PASS' if r.passed else 'FAIL'}  {r.name}: {r.message}" for r in ordered]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A Markdown table of the rules (for ``$GITHUB_STEP_SUMMARY`` or ``summary.md``)."""
        ordered = self.failed + [r for r in self.rules if r.passed]
        lines = [f"**{self._headline()}**", ""]
        if ordered:
            lines += ["| result | rule | detail |", "|---|---|---|"]
            for r in ordered:
                msg = r.message.replace("|", "\\|")
                lines.append(f"| {'pass' if r.passed else '**FAIL**'} | {r.name} | {msg} |")
        return "\n".join(lines) + "\n"


def gate(
    result: AuditResult | str | Path,
    policy: Policy | str | Path | None = None,
    baseline: AuditResult | str | Path | None = None,
) -> GateDecision:
    """Apply ``policy`` (a :class:`Policy`, a policy file, or ``None`` to look for one in the
    working directory) to ``result`` (an :class:`AuditResult`, a results.json or its folder),
    and, when ``baseline`` is given, test for a regression against it.

    Raises :class:`PolicyError` (bad policy), :class:`~auditkit.results.ResultsError` (unreadable
    results) or :class:`BaselineError` (a baseline that cannot be compared). A failing rule is
    not an exception: it is in the returned decision.
    """
    current = load_result(result)
    base = load_result(baseline) if baseline is not None else None
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    name = current.provenance.card.get("name")
    pol = pol.for_model(name)
    doc = current.model_dump(mode="json")
    summary = summarize(current)  # figures and labels as every report shows them
    outcomes = [_threshold(rule, doc, current, summary) for rule in pol.rules]
    if pol.fail_on_masking:
        outcomes.append(_masking(doc, current))
    if base is not None:
        robust_points = [(r.norm, r.eps) for r in pol.rules if r.norm is not None and r.eps is not None]
        outcomes += _regression(doc, base.model_dump(mode="json"), pol.regression or RegressionPolicy(),
                                robust_points, _label(baseline))
    source = pol.source + (f' [{_section_name(pol.source, name)}]' if pol.model is not None else "")
    return GateDecision(passed=all(o.passed for o in outcomes), rules=outcomes, policy=source, model=name,
                        baseline=_label(baseline) if baseline is not None else None)


def _section_name(source: str, model: str | None) -> str:
    prefix = "tool.auditkit.gate" if Path(source).name == "pyproject.toml" else "gate"
    return f"{prefix}.models.{_quote(model or '')}"


def _label(value: AuditResult | str | Path | None) -> str:
    if value is None or isinstance(value, AuditResult):
        return "baseline (in memory)"
    path = Path(value)
    return str(path / "results.json" if path.is_dir() else path)


# --------------------------------------------------------------------------- thresholds
def _lookup(doc: dict[str, Any], metric: str) -> tuple[Any, str | None]:
    """The value at ``metric`` in the results dict, or ``(None, why it is not there)``."""
    parts = metric.split(".")
    node: Any = doc
    if parts[0] == "sections" and len(parts) > 1:
        section = doc["sections"].get(parts[1])
        if section is None:
            return None, (f"metric {metric} is missing: the '{parts[1]}' check did not run; run it "
                          f"(leave it out of --skip, or add it to --only)")
        if section["status"] == "skipped":
            return None, f"metric {metric} is missing: the '{parts[1]}' check was skipped: {section['reason']}"
        if section["status"] == "failed":
            return None, f"metric {metric} is missing: the '{parts[1]}' check failed: {section['reason']}"
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the results"
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            have = ", ".join(list(node)[:12]) if isinstance(node, dict) else (
                f"a list of {len(node)}" if isinstance(node, list) else repr(node))
            return None, f"metric {metric} is missing from the results: {where} has no '{part}' (it has: {have})"
    return node, None


def _number(node: Any, metric: str) -> tuple[float | None, str | None]:
    if isinstance(node, dict) and "value" in node:
        node = node["value"]
    if node is None:
        return None, f"metric {metric} is null in the results (undefined, e.g. NaN)"
    if isinstance(node, bool):
        return float(node), None
    if isinstance(node, (int, float)):
        return float(node), None
    return None, f"metric {metric} is not a number (it is a {type(node).__name__})"


def _interval(doc: dict[str, Any], metric: str) -> str:
    """', 95% CI [lo, hi], n=N' when the metric is the ``value`` of an interval object."""
    parts = metric.split(".")
    parent, _ = _lookup(doc, ".".join(parts[:-1])) if parts[-1] == "value" else _lookup(doc, metric)
    if isinstance(parent, dict) and parent.get("ci_low") is not None and parent.get("ci_high") is not None:
        n = f", n={parent['n']}" if "n" in parent else ""
        return f" (95% CI [{parent['ci_low']:.4g}, {parent['ci_high']:.4g}]{n})"
    return ""


def _verdict(rule: Rule, value: float, label: str, extra: str = "") -> RuleOutcome:
    ok = value >= rule.threshold if rule.op == ">=" else value <= rule.threshold
    if ok:
        text = f"{label} {value:.4g} {rule.op} {rule.threshold:g}"
    else:
        limit = "below the minimum" if rule.op == ">=" else "above the maximum"
        text = f"{label} {value:.4g} is {limit} {rule.threshold:g}"
    return RuleOutcome(rule.name, ok, text + extra, value, rule.threshold, "threshold")


def _headline_of(summary: AuditSummary, metric: str) -> Headline | None:
    """The summary's headline whose evidence is ``metric`` (a path ending at an interval's
    ``value`` matches the interval), if any."""
    base = metric[: -len(".value")] if metric.endswith(".value") else metric
    return next((h for h in summary.headlines(primary_only=False) if h.evidence in (metric, base)), None)


def _threshold(rule: Rule, doc: dict[str, Any], result: AuditResult, summary: AuditSummary) -> RuleOutcome:
    if rule.norm is not None:
        return _robust_threshold(rule, doc, result)
    head = _headline_of(summary, rule.metric)
    if head is not None and head.value is not None:
        # The figure, its label and its interval exactly as the reports show them.
        extra = ", ".join(t for t in (head.display, f"95% CI {head.ci_display}" if head.ci_display else "",
                                      f"n = {head.n}" if head.n is not None else "") if t)
        return _verdict(rule, head.value, head.label, f" ({extra})")
    node, why = _lookup(doc, rule.metric)
    value = None
    if why is None:
        value, why = _number(node, rule.metric)
    if why is not None or value is None:
        return RuleOutcome(rule.name, False, str(why), None, rule.threshold, "threshold")
    return _verdict(rule, value, rule.label or rule.metric, _interval(doc, rule.metric))


def _threat_model(doc: dict[str, Any], norm: str) -> tuple[dict[str, Any] | None, str | None]:
    """The ensemble dict of ``norm`` in the robustness section, or why there is none."""
    data, why = _lookup(doc, "sections.robustness.data")
    if why is not None:
        return None, why.replace("metric sections.robustness.data", f"robust accuracy ({norm})")
    models = data.get("threat_models") or {}
    if norm in models:
        return models[norm], None
    reason = (data.get("skipped") or {}).get(norm) if isinstance(data.get("skipped"), dict) else None
    if reason:
        return None, f"robust accuracy ({norm}) is missing: the {norm} threat model was skipped: {reason}"
    have = ", ".join(models) or "none"
    return None, (f"robust accuracy ({norm}) is missing: the robustness section has no {norm} threat model "
                  f"(it has: {have}); norm-ball curves exist for image classifiers with epsilons in the card "
                  f"or --epsilons")


def _robust_threshold(rule: Rule, doc: dict[str, Any], result: AuditResult) -> RuleOutcome:
    assert rule.norm is not None and rule.eps is not None
    tm, why = _threat_model(doc, rule.norm)
    if tm is None:
        return RuleOutcome(rule.name, False, str(why), None, rule.threshold, "threshold")
    try:
        rob = result.payload("robustness")
    except PayloadError as exc:  # only for a result edited in memory: files are checked on read
        return RuleOutcome(rule.name, False, f"robust accuracy ({rule.norm}) cannot be read: {exc}", None,
                           rule.threshold, "threshold")
    assert isinstance(rob, RobustnessData)
    curve = rob.threat_model_curve(rule.norm)
    assert curve is not None
    eps = rule.eps
    # The curve's lookup: the grid point at eps, else the nearest evaluated point above (robust
    # accuracy never rises with eps, so it never overstates robustness at eps).
    found = curve.lookup(eps)
    if found is None:
        top = max((p.x for p in curve.points), default=float("nan"))
        return RuleOutcome(rule.name, False,
                           f"robust accuracy ({rule.norm}) at eps={eps:g} was not evaluated: the largest eps "
                           f"attacked is {top:g}; add {eps:g} to the card's epsilons or pass --epsilons",
                           None, rule.threshold, "threshold")
    point, exact = found
    source = "curve point" if exact else (f"fine_curve point at eps={point.x:.4g}, the nearest evaluated above "
                                          f"{eps:g} (conservative)")
    p = point.robust
    if p.value is None:
        return RuleOutcome(rule.name, False, f"robust accuracy ({rule.norm}) at eps={eps:g} is undefined (no "
                                             "samples)", None, rule.threshold, "threshold")
    ci = (f"95% CI {format_interval(p.ci_low, p.ci_high, 'proportion')}, " if p.has_ci else "") + f"n = {p.n}"
    return _verdict(rule, p.value, curve.label_at(point.x),
                    f" ({format_value(p.value, 'proportion')}; {source}; {ci})")


# ------------------------------------------------------------------------------ masking
def _masking(doc: dict[str, Any], result: AuditResult) -> RuleOutcome:
    name = "gradient masking"
    data, why = _lookup(doc, "sections.robustness.data")
    if why is not None or not isinstance(data, dict) or "masking" not in data:
        reason = "no robustness section" if why is None else why.split(": ", 1)[-1]
        if why is None and isinstance(data, dict):
            reason = "the robustness section has no gradient-masking checks (they run on norm-ball threat models)"
        return RuleOutcome(name, True, f"not checked: {reason}", None, None, "masking")
    try:
        rob = result.payload("robustness")
    except PayloadError as exc:  # never pass on evidence that cannot be read
        return RuleOutcome(name, False, f"the gradient-masking checklist cannot be read: {exc}", None, 0.0, "masking")
    assert isinstance(rob, RobustnessData) and rob.masking is not None
    masking = rob.masking
    failed, warned = masking.with_status("fail"), masking.with_status("warn")
    if failed or masking.suspected:
        listed = "; ".join(f"{c.name}: {c.evidence}" for c in failed) or "suspected flag set"
        head = "gradient masking suspected" if masking.suspected else f"{len(failed)} masking check(s) failed"
        return RuleOutcome(name, False, f"{head}; robustness figures may be overstated — {listed}",
                           float(len(failed)), 0.0, "masking")
    text = masking.statement.rstrip(".")
    if warned:
        text += " — warnings: " + "; ".join(f"{c.name}: {c.evidence}" for c in warned)
    return RuleOutcome(name, True, text, 0.0, 0.0, "masking")


# --------------------------------------------------------------------------- regression
def _one_sided_drop(base_ok: np.ndarray, cur_ok: np.ndarray) -> dict[str, float | int]:
    """Exact McNemar on paired correctness, one-sided towards a drop: under H0 the samples only
    the baseline gets right (``lost``) are Binomial(lost + gained, 1/2); p = P(X >= lost)."""
    test = mcnemar_exact(base_ok, cur_ok)
    lost, gained = int(test["a_only"]), int(test["b_only"])
    n = lost + gained
    p = 1.0 if n == 0 or lost == 0 else float(sps.binom.sf(lost - 1, n, 0.5))
    return {"lost": lost, "gained": gained, "p_value": p, "p_two_sided": float(test["p_value"])}


def _paired_outcome(name: str, what: str, base_ok: np.ndarray, cur_ok: np.ndarray, tolerance: float,
                    confidence: float) -> RuleOutcome:
    n = len(base_ok)
    b, c = float(base_ok.mean()), float(cur_ok.mean())
    drop = b - c
    t = _one_sided_drop(base_ok, cur_ok)
    alpha = 1.0 - confidence
    significant = t["p_value"] < alpha
    exceeds = drop > tolerance + 1e-12
    facts = (f"{what} {b:.4f} (baseline) -> {c:.4f}: {'drop' if drop >= 0 else 'gain'} of "
             f"{abs(drop) * 100:.2f} points (tolerance {tolerance * 100:.2f}); {t['lost']} sample(s) lost, "
             f"{t['gained']} gained of {n}; one-sided McNemar p={t['p_value']:.3g}")
    if exceeds and significant:
        message = f"regression: {facts} < {alpha:.3g}, significant at {confidence:.0%}"
    elif exceeds:
        message = f"{facts} >= {alpha:.3g}: within noise at {confidence:.0%}, not a significant drop"
    else:
        message = f"{facts}: within tolerance"
    return RuleOutcome(name, not (exceeds and significant), message, drop, tolerance, "regression", t["p_value"])


def _section_data(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    section = doc["sections"].get(name)
    return section["data"] if section is not None and section["status"] == "ok" else None


def _regression(cur: dict[str, Any], base: dict[str, Any], reg: RegressionPolicy,
                robust_points: list[tuple[str, float]], base_label: str) -> list[RuleOutcome]:
    pc, pb = cur["provenance"], base["provenance"]
    if pc["data_sha256"] != pb["data_sha256"]:
        raise BaselineError(
            f"baseline {base_label} was made on different data (data_sha256 {pb['data_sha256'][:12]}… for "
            f"{pb['data_spec']!r}, now {pc['data_sha256'][:12]}… for {pc['data_spec']!r}); a paired comparison "
            "needs the same data: re-scan the baseline model on this data")
    outcomes = [_accuracy_regression(cur, base, reg, base_label)]
    outcomes += _robust_regression(cur, base, reg, robust_points, base_label)
    return outcomes


def _accuracy_regression(cur: dict[str, Any], base: dict[str, Any], reg: RegressionPolicy,
                         base_label: str) -> RuleOutcome:
    name = "regression: clean accuracy"
    perf_b = _section_data(base, "performance")
    perf_c = _section_data(cur, "performance")
    if not (perf_b or {}).get("predictions") and not (perf_c or {}).get("predictions"):
        # Neither has predictions (e.g. a GAN, where the check does not apply): nothing to pair.
        _, why = _lookup(cur, "sections.performance.data.predictions")
        return RuleOutcome(name, True, f"not checked: neither result has clean predictions ({why})", None,
                           reg.max_accuracy_drop, "regression")
    if perf_b is None or "predictions" not in perf_b:
        raise BaselineError(f"baseline {base_label} has no performance predictions; re-scan the baseline "
                            "with the 'performance' check")
    if perf_c is None or "predictions" not in perf_c:
        _, why = _lookup(cur, "sections.performance.data.predictions")
        return RuleOutcome(name, False, f"cannot compare with the baseline: {why}", None,
                           reg.max_accuracy_drop, "regression")
    labels_b, labels_c = np.asarray(perf_b["labels"]), np.asarray(perf_c["labels"])
    if labels_b.shape != labels_c.shape or not np.array_equal(labels_b, labels_c):
        raise BaselineError(f"baseline {base_label} was evaluated on other test samples ({len(labels_b)} labels, "
                            f"now {len(labels_c)}); re-scan the baseline on the same data")
    base_ok = np.asarray(perf_b["predictions"]) == labels_b
    cur_ok = np.asarray(perf_c["predictions"]) == labels_c
    return _paired_outcome(name, "clean accuracy", base_ok, cur_ok, reg.max_accuracy_drop, reg.confidence)


def robust_indicator(threat_model: dict[str, Any], eps: float) -> np.ndarray:
    """bool ``[N]`` from a threat model's per-sample records: clean-correct and no adversarial
    point of norm <= eps found (the ensemble's rule, with its rounding ``tolerance``)."""
    rec = threat_model["records"]
    correct = np.asarray(rec["clean_correct"], bool)
    norms = np.array([np.inf if v is None else float(v) for v in rec["min_norm"]])
    tol = float(threat_model.get("tolerance") or 0.0)
    return correct & ~broken_at(norms, eps, tol)


def _robust_regression(cur: dict[str, Any], base: dict[str, Any], reg: RegressionPolicy,
                       points: list[tuple[str, float]], base_label: str) -> list[RuleOutcome]:
    rob_c, rob_b = _section_data(cur, "robustness"), _section_data(base, "robustness")
    tms_c = (rob_c or {}).get("threat_models") or {}
    tms_b = (rob_b or {}).get("threat_models") or {}
    explicit = bool(points)
    if not explicit:
        # No robust-accuracy rules: compare every attacked eps > 0 of the norms both results have.
        points = [(norm, e) for norm, tm in tms_c.items() if norm in tms_b for e in tm.get("epsilons", []) if e > 0]
    outcomes: list[RuleOutcome] = []
    checked: set[str] = set()
    for norm, eps in points:
        name = f"regression: robust accuracy {norm} eps={eps:g}"
        if norm not in tms_c:
            _, why = _threat_model(cur, norm)
            outcomes.append(RuleOutcome(name, False, f"cannot compare with the baseline: {why}", None,
                                        reg.max_robust_accuracy_drop, "regression"))
            continue
        if norm not in tms_b:
            raise BaselineError(f"baseline {base_label} has no {norm} robustness records; re-scan the baseline "
                                "with the 'robustness' check and the same epsilons")
        tc, tb = tms_c[norm], tms_b[norm]
        if norm not in checked:
            _same_attack_setup(rob_c or {}, rob_b or {}, tc, tb, norm, base_label)
            checked.add(norm)
        outcomes.append(_paired_outcome(name, f"robust accuracy ({norm}, eps={eps:g})", robust_indicator(tb, eps),
                                        robust_indicator(tc, eps), reg.max_robust_accuracy_drop, reg.confidence))
    if not explicit and tms_c and not outcomes:
        outcomes.append(RuleOutcome("regression: robust accuracy", True,
                                    f"not checked: baseline {base_label} has no robustness records for "
                                    f"{', '.join(tms_c)}; re-scan the baseline to compare robustness", None,
                                    reg.max_robust_accuracy_drop, "regression"))
    return outcomes


def _same_attack_setup(rob_c: dict[str, Any], rob_b: dict[str, Any], tc: dict[str, Any], tb: dict[str, Any],
                       norm: str, base_label: str) -> None:
    """Paired robust comparisons need the same samples and equally strong attacks."""
    if rob_c.get("sample_index") != rob_b.get("sample_index") or len(tc["records"]["index"]) != len(tb["records"]["index"]):
        raise BaselineError(f"baseline {base_label} attacked other test samples than this scan; re-run both with "
                            "the same --samples and --seed on the same data")
    for key in ("budget", "attacks"):
        if tc.get(key) != tb.get(key):
            raise BaselineError(f"baseline {base_label} used {key} {tb.get(key)!r} for {norm}, this scan "
                                f"{tc.get(key)!r}; compare scans run with the same --budget and auditkit version")
