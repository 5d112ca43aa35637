"""auditkit: audit trained PyTorch models for interpretability and adversarial robustness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AuditCard", "AuditResult", "__version__", "gate", "load_data", "load_model", "scan"]

if TYPE_CHECKING:
    from auditkit.card import AuditCard
    from auditkit.data import load_data
    from auditkit.loading import load_model
    from auditkit.results import AuditResult
    from auditkit.scan import scan


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import auditkit` (and the CLI's --help) fast: torch loads only on use.
    if name == "AuditCard":
        from auditkit.card import AuditCard

        return AuditCard
    if name == "AuditResult":
        from auditkit.results import AuditResult

        return AuditResult
    if name == "load_data":
        from auditkit.data import load_data

        return load_data
    if name == "load_model":
        from auditkit.loading import load_model

        return load_model
    if name == "scan":
        from auditkit.scan import scan

        return scan
    if name == "gate":
        from auditkit.gate import gate

        return gate
    raise AttributeError(f"module 'auditkit' has no attribute {name!r}")
