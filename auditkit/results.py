"""AuditResult: the one versioned JSON document every consumer reads (DESIGN.md §5).

Timing fields (``seconds`` of each section, ``provenance.timings``, ``provenance.started_at``)
are the only ones allowed to differ between two runs with the same inputs and seed;
:func:`strip_timings` removes them for comparison.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditkit.errors import ResultsError  # noqa: F401  (re-exported)
from auditkit.sections import PayloadError, validate_payload

if TYPE_CHECKING:  # pragma: no cover
    from auditkit.sections import (
        AttributionsData,
        BaselinesData,
        DefensesData,
        ExplanationQualityData,
        GanData,
        PerformanceData,
        RobustnessData,
    )

SCHEMA_VERSION = "2.0"
Severity = Literal["high", "medium", "low"]
SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
# ok: ran; not-applicable: the check does not apply to this task; skipped: it applies but did not
# run (missing card field, --only/--skip...); failed: it raised, the reason says what.
Status = Literal["ok", "not-applicable", "skipped", "failed"]
# What a finding is about: only findings about the model itself decide the verdict's severity.
Subject = Literal["model", "data", "evaluation", "defense"]
VerdictStatus = Literal["pass", "attention", "fail", "incomplete"]
TIMING_KEYS = ("seconds", "timings", "started_at", "wall_seconds")


class Finding(BaseModel):
    """Something a reader must know first: what, why it matters, what to do next, where the
    evidence is (``evidence_path``: a dotted path into results.json)."""

    severity: Severity
    title: str
    evidence: str
    section: str
    why: str | None = Field(None, description="Why this matters to someone about to ship the model.")
    action: str | None = Field(None, description="What to do next.")
    evidence_path: str | None = Field(None, description="Dotted path of the evidence in results.json.")
    subject: Subject = "model"


class Section(BaseModel):
    """What one check returned. ``data`` is plain JSON (numbers, strings, lists, dicts): for a
    built-in check, the JSON of its typed payload (:mod:`auditkit.sections`), validated when
    the scan builds the section and when a results file is read; :meth:`payload` gives it
    typed. Sections of other checks (plugins) keep plain dicts.

    ``incomplete`` lists what the check could not do although it ran (an attack that raised, a
    method that failed): every figure it reports is then a bound, and the verdict says so.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    status: Status = "ok"
    reason: str | None = Field(None, description="Why the check was skipped or failed.")
    seconds: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    incomplete: list[str] = Field(default_factory=list)

    def payload(self) -> BaseModel | None:
        """``data`` as its check's typed model (:data:`auditkit.sections.PAYLOADS`); None when
        the section did not run (status other than ``ok``) or no built-in check writes it.

        Raises :class:`~auditkit.sections.PayloadError` when the data does not match the model
        (only possible for a result built or edited in memory: files are checked on read).
        """
        if self.status != "ok":
            return None
        return validate_payload(self.name, self.data)


class GateOutcome(BaseModel):
    """The gate's decision as stored with the result (rule names and messages)."""

    passed: bool
    policy: str | None = None
    failed_rules: list[str] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)


class Verdict(BaseModel):
    """The answer first: ``pass`` / ``attention`` / ``fail`` / ``incomplete`` and the (at most
    three) reasons that decide it."""

    status: VerdictStatus
    reasons: list[str] = Field(default_factory=list)
    gate: GateOutcome | None = None


class Provenance(BaseModel):
    auditkit: str
    torch: str
    captum: str | None = None
    foolbox: str | None = None
    python: str
    platform: str
    model_path: str
    model_sha256: str
    model_format: str
    data_spec: str
    data_sha256: str
    card: dict[str, Any]
    card_source: str | None = Field(None, description="Where the card came from: argument, file, embedded, sidecar.")
    card_fields: dict[str, str] = Field(
        default_factory=dict, description="Where each card field came from: file, embedded, sidecar, argument, "
                                          "flag, inferred or default.")
    card_notes: dict[str, str] = Field(
        default_factory=dict, description="For inferred card fields: how each was inferred and what was assumed.")
    config: dict[str, Any]
    seed: int
    device: str
    started_at: str
    wall_seconds: float
    timings: dict[str, float] = Field(default_factory=dict)
    world_size: int = Field(1, description="Processes the scan was sharded over (torchrun); 1 for a single process.")


class AuditResult(BaseModel):
    """A whole audit. ``sections`` are keyed by check name, in the order they ran."""

    schema_version: str = SCHEMA_VERSION
    verdict: Verdict
    provenance: Provenance
    sections: dict[str, Section] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)

    def section(self, name: str) -> Section | None:
        return self.sections.get(name)

    @overload
    def payload(self, name: Literal["performance"]) -> "PerformanceData | None": ...
    @overload
    def payload(self, name: Literal["attributions"]) -> "AttributionsData | None": ...
    @overload
    def payload(self, name: Literal["explanation-quality"]) -> "ExplanationQualityData | None": ...
    @overload
    def payload(self, name: Literal["robustness"]) -> "RobustnessData | None": ...
    @overload
    def payload(self, name: Literal["defenses"]) -> "DefensesData | None": ...
    @overload
    def payload(self, name: Literal["baselines"]) -> "BaselinesData | None": ...
    @overload
    def payload(self, name: Literal["gan"]) -> "GanData | None": ...
    @overload
    def payload(self, name: str) -> BaseModel | None: ...

    def payload(self, name: str) -> BaseModel | None:
        """The typed payload of section ``name`` (e.g. ``result.payload("robustness")`` ->
        :class:`~auditkit.sections.RobustnessData`); None when the section is absent, did not
        run, or is not a built-in check's (see :meth:`Section.payload`)."""
        section = self.sections.get(name)
        return None if section is None else section.payload()

    def to_json(self) -> str:
        return json.dumps(to_jsonable(self.model_dump(mode="json")), indent=1, sort_keys=False) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file, then rename)."""
        from auditkit.files import atomic_write_bytes

        path = Path(path)
        text = self.to_json()
        atomic_write_bytes(path, lambda tmp: tmp.write_text(text))
        return path

    @classmethod
    def read(cls, path: str | Path) -> "AuditResult":
        path = Path(path)
        from auditkit.files import read_user_text

        text = read_user_text(path, "results file", ResultsError)
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str | bytes, source: str = "results") -> "AuditResult":
        """Validate results JSON ``text``; :class:`ResultsError` naming ``source`` otherwise."""
        path = source
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{path} is not a results JSON file: {exc}") from None
        except RecursionError:
            raise ResultsError(f"{path} is nested too deeply to be a results file") from None
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if version is None or str(version).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ResultsError(
                f"{path}: schema_version {version!r} is not supported (this auditkit reads "
                f"{SCHEMA_VERSION}); re-run the scan with this version"
            )
        try:
            result = cls.model_validate(raw)
        except RecursionError:
            raise ResultsError(f"{path} is nested too deeply to be a results file") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ResultsError(f"{path}: field '{where}': {err['msg']}") from None
        # Every built-in check's data against its typed model: a file a consumer can read is
        # one every consumer can render.
        for section in result.sections.values():
            try:
                section.payload()
            except PayloadError as exc:
                raise ResultsError(f"{path}: field '{exc.path}': {exc.message}") from None
        return result


def load_result(results: AuditResult | str | Path) -> AuditResult:
    """An AuditResult from itself, a results.json path, or a folder holding results.json.

    Raises :class:`ResultsError` for a missing file, a file that is not results JSON, or an
    unknown ``schema_version``.
    """
    if isinstance(results, AuditResult):
        return results
    path = Path(results)
    if path.is_dir():
        path = path / "results.json"
    return AuditResult.read(path)


def to_jsonable(obj: Any, ndigits: int = 6) -> Any:
    """Plain JSON types from NumPy/torch scalars and arrays; floats rounded to ``ndigits``
    significant-enough decimals so that JSON is stable; NaN/inf become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, ndigits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, ndigits) for v in obj]
    if hasattr(obj, "detach"):  # torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), ndigits)
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        if math.isnan(f) or math.isinf(f):
            return None
        return round(f, ndigits)
    return obj


def strip_timings(doc: Any) -> Any:
    """A copy of a results dict without timing fields (for run-to-run comparison)."""
    if isinstance(doc, dict):
        return {k: strip_timings(v) for k, v in doc.items() if k not in TIMING_KEYS}
    if isinstance(doc, list):
        return [strip_timings(v) for v in doc]
    return doc
