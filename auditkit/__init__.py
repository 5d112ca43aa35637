"""auditkit: audit trained PyTorch models for interpretability and adversarial robustness."""

from __future__ import annotations

__version__ = "0.1.0"

# Imported eagerly: `scan` is both a submodule and the function; binding the function here
# keeps `auditkit.scan(...)` the function whatever is imported later.
from auditkit.card import AuditCard  # noqa: E402
from auditkit.data import load_data  # noqa: E402
from auditkit.gate import gate  # noqa: E402
from auditkit.loading import load_model  # noqa: E402
from auditkit.results import AuditResult  # noqa: E402
from auditkit.scan import scan  # noqa: E402

__all__ = ["AuditCard", "AuditResult", "__version__", "gate", "load_data", "load_model", "scan"]
