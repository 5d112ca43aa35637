"""Attribution methods over captum (:mod:`auditkit.explain.methods`) and their quality metrics."""

from auditkit.explain.methods import (
    METHODS,
    QUALITY_TESTS,
    AttributionError,
    Chunk,
    MethodSpec,
    attribute,
    available_methods,
    gallery,
    global_importance,
    register_method,
    unregister_method,
)

__all__ = [
    "METHODS",
    "QUALITY_TESTS",
    "AttributionError",
    "Chunk",
    "MethodSpec",
    "attribute",
    "available_methods",
    "gallery",
    "global_importance",
    "register_method",
    "unregister_method",
]
