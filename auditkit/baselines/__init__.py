"""Classical scikit-learn baselines per task and their comparison with the network.

:func:`fit_baselines` fits (or loads from the on-disk cache) the task's baselines;
:mod:`auditkit.baselines.compare` holds the comparison figures; the ``baselines`` check
(:mod:`auditkit.baselines.check`) runs them in a scan.
"""

from auditkit.baselines.models import (
    BaselineError,
    FittedBaseline,
    baseline_names,
    build_pipeline,
    default_cache_dir,
    fit_baselines,
    parameter_count,
    validate_tabular,
)

__all__ = [
    "BaselineError",
    "FittedBaseline",
    "baseline_names",
    "build_pipeline",
    "default_cache_dir",
    "fit_baselines",
    "parameter_count",
    "validate_tabular",
]
