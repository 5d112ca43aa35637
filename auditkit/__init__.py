"""auditkit: audit trained PyTorch models for interpretability and adversarial robustness.

The public API is small: :func:`scan`, :func:`load_model`, :func:`load_data`, :func:`gate`,
:class:`AuditCard`, :class:`AuditResult`. They are imported on first use, so that
``import auditkit.errors`` or ``import auditkit.results`` does not load torch, and a Ctrl-C
while the CLI starts is handled by the CLI rather than by the import machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it. No module of the package is named after one of these
# functions, so importing a submodule never shadows them.
_EXPORTS = {
    "AuditCard": "auditkit.card",
    "AuditResult": "auditkit.results",
    "gate": "auditkit.policy",
    "load_data": "auditkit.data",
    "load_model": "auditkit.loading",
    "scan": "auditkit.scanning",
}

__all__ = ["AuditCard", "AuditResult", "__version__", "gate", "load_data", "load_model", "scan"]

if TYPE_CHECKING:  # pragma: no cover
    from auditkit.card import AuditCard
    from auditkit.data import load_data
    from auditkit.loading import load_model
    from auditkit.policy import gate
    from auditkit.results import AuditResult
    from auditkit.scanning import scan


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'auditkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
