"""The list of built-in checks: the one place that names the modules defining them.

The registry (:mod:`auditkit.checks`) is a leaf that imports no check; each check module
imports the registry and registers its checks with ``@register_check``. This module sits above
both: importing the modules below registers their checks, in this order, which is the order a
scan runs them (later checks may reuse earlier ones' work through ``ScanContext``).

Adding a check is one module with a ``@register_check`` class plus one line here
(docs/architecture.md). A plugin outside auditkit registers its checks the same way and is
imported before the scan (:func:`auditkit.checks.registered_checks` then lists it too).
"""

from __future__ import annotations

import importlib

from auditkit.checks import Check, registered_checks

# Modules that register the built-in checks, in run order.
BUILTIN_CHECK_MODULES: tuple[str, ...] = (
    "auditkit.performance",
    "auditkit.explain.check",
    "auditkit.generative.check",
    "auditkit.attacks.check",
    "auditkit.defenses.check",
    "auditkit.baselines.check",
)


def all_checks() -> dict[str, type[Check]]:
    """Every check a scan can run, in run order: the built-in ones (their modules imported here),
    then any other registered check (a plugin imported before the scan)."""
    for module in BUILTIN_CHECK_MODULES:
        importlib.import_module(module)  # registers the module's checks
    checks = registered_checks()
    order = {name: i for i, name in enumerate(
        n for module in BUILTIN_CHECK_MODULES for n, cls in checks.items() if cls.__module__ == module)}
    # sorted() is stable: checks of one module keep their registration order
    return dict(sorted(checks.items(), key=lambda kv: order.get(kv[0], len(order))))
