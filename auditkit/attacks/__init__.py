"""Adversarial attacks: the registry over foolbox and native attacks, and the ensemble runner.

``get_attack(name).run(...)`` runs one registered attack; :func:`run_ensemble` runs the
AutoAttack-style worst-case ensemble of a budget and keeps per-sample records. Randomised models
(``masking.forward_determinism``) are run under :class:`EOT` (``eot_protocol(budget)``).
"""

from auditkit.attacks.apgd import APGD, APGDTargeted
from auditkit.attacks.common import EOT, AttackOutput, is_adversarial, norm_of, project
from auditkit.attacks.ensemble import BUDGETS, EnsembleResult, ensemble_attacks, eot_protocol, run_ensemble
from auditkit.attacks.registry import (
    AttackSpec,
    UnknownAttackError,
    all_attacks,
    get_attack,
    list_attacks,
    register_attack,
)
from auditkit.attacks.square import SquareAttack

__all__ = [
    "APGD",
    "APGDTargeted",
    "AttackOutput",
    "AttackSpec",
    "BUDGETS",
    "EOT",
    "EnsembleResult",
    "SquareAttack",
    "UnknownAttackError",
    "all_attacks",
    "ensemble_attacks",
    "eot_protocol",
    "get_attack",
    "is_adversarial",
    "list_attacks",
    "norm_of",
    "project",
    "register_attack",
    "run_ensemble",
]
