"""Typed payloads of the built-in checks' sections (DESIGN.md §5): one pydantic model per
check, in one module per check, and the registry that maps a section name to its model.

The scan validates what each check returns against its model at the boundary
(:func:`validate_payload`); :meth:`auditkit.results.AuditResult.parse` validates every known
section of a results file on read; :meth:`auditkit.results.AuditResult.payload` gives typed
access. Sections of other names (plugins) stay plain dicts.

The models own the facts derived from their data (a threat model's headline point and
``robust_at``, a masking checklist's statement, whether an attribution beats a random
ranking...), so that :mod:`auditkit.summary`, the checks' findings and every report agree.
No torch here: ``import auditkit.sections`` loads pydantic only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from auditkit.sections.attributions import AttributionsData
from auditkit.sections.baselines import BaselinesData
from auditkit.sections.common import (
    NORM_LABELS,
    Curve,
    CurvePoint,
    Estimate,
    Proportion,
    middle_positive,
    norm_label,
)
from auditkit.sections.defenses import DefensesData
from auditkit.sections.explanation_quality import ExplanationQualityData
from auditkit.sections.gan import GanData
from auditkit.sections.performance import PerformanceData
from auditkit.sections.robustness import RobustnessData

PAYLOADS: dict[str, type[BaseModel]] = {
    "performance": PerformanceData,
    "attributions": AttributionsData,
    "explanation-quality": ExplanationQualityData,
    "gan": GanData,
    "robustness": RobustnessData,
    "defenses": DefensesData,
    "baselines": BaselinesData,
}


class PayloadError(ValueError):
    """A section's data does not match its model: ``section``, the dotted ``field`` inside the
    section's data, and pydantic's message."""

    def __init__(self, section: str, field: str, message: str) -> None:
        self.section, self.field, self.message = section, field, message
        self.path = f"sections.{section}.data" + (f".{field}" if field else "")
        super().__init__(f"{self.path}: {message}")


def payload_model(name: str) -> type[BaseModel] | None:
    """The model of section ``name`` (None for a section no built-in check writes)."""
    return PAYLOADS.get(name)


def validate_payload(name: str, data: Any) -> BaseModel | None:
    """``data`` of section ``name`` as its typed model; None for an unknown name.

    Raises :class:`PayloadError` naming the first field that does not match.
    """
    model = PAYLOADS.get(name)
    if model is None:
        return None
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise PayloadError(name, ".".join(str(p) for p in err["loc"]), err["msg"]) from None


def dump_payload(payload: BaseModel) -> dict[str, Any]:
    """A payload model as the JSON dict stored in ``Section.data``: the fields the check set
    (an optional part it did not write stays absent rather than becoming null)."""
    return payload.model_dump(mode="json", by_alias=True, exclude_unset=True)


__all__ = ["AttributionsData", "BaselinesData", "Curve", "CurvePoint", "DefensesData", "Estimate", "NORM_LABELS",
           "ExplanationQualityData", "GanData", "PAYLOADS", "PayloadError", "PerformanceData", "Proportion",
           "RobustnessData", "dump_payload", "middle_positive", "norm_label", "payload_model", "validate_payload"]
