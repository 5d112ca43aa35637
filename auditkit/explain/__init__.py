"""Attribution methods over captum (:mod:`auditkit.explain.methods`) and their quality metrics."""

from auditkit.explain.methods import (
    METHODS,
    AttributionError,
    MethodSpec,
    attribute,
    available_methods,
    gallery,
    global_importance,
)

__all__ = [
    "METHODS",
    "AttributionError",
    "MethodSpec",
    "attribute",
    "available_methods",
    "gallery",
    "global_importance",
]
