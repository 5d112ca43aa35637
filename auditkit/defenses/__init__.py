"""Defenses, evaluated honestly (Athalye et al. 2018): adversarial training, input purification
(reported with both the non-adaptive and the adaptive number) and randomized smoothing.

>>> from auditkit.defenses import adversarial_train, evaluate_defense, SmoothedClassifier
"""

from auditkit.defenses.adversarial_training import (
    PerturbationSet,
    PGDTrainingTask,
    TradesTask,
    adversarial_train,
    pgd_attack,
    tabular_perturbation,
)
from auditkit.defenses.purification import (
    BitDepthReduction,
    GANProjection,
    MedianFilter,
    PurifiedModel,
    bpda,
    evaluate_defense,
    list_purifiers,
    make_purifier,
    transfer_attack,
)
from auditkit.defenses.smoothing import ABSTAIN, SmoothedClassifier, certified_accuracy

__all__ = [
    "ABSTAIN",
    "BitDepthReduction",
    "GANProjection",
    "MedianFilter",
    "PGDTrainingTask",
    "PerturbationSet",
    "PurifiedModel",
    "SmoothedClassifier",
    "TradesTask",
    "adversarial_train",
    "bpda",
    "certified_accuracy",
    "evaluate_defense",
    "list_purifiers",
    "make_purifier",
    "pgd_attack",
    "tabular_perturbation",
    "transfer_attack",
]
