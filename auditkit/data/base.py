"""AuditData: a dataset in memory, split into train and test, with what it knows about itself."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auditkit.errors import DataError  # noqa: F401  (re-exported)
from auditkit.card import FeatureSpec, Task, TextSpec



@dataclass
class AuditData:
    """A train/test split held as NumPy arrays.

    Shapes: ``x_*`` is ``[N, *input_shape]`` (float32 for images in [0, 1] and for tabular
    features in raw units, with categoricals as integer codes; int64 token ids, right-padded,
    for text); ``y_*`` is ``[N]`` int64 class indices.

    ``ground_truth`` holds what synthetic data knows about its own causes, e.g.
    ``{"causal_features": [...]}`` for fraud or ``{"token_relevance_test": bool[N_test, L]}``
    for reviews, and ``{"sentiment_words": [...]}`` where the words that carry the label are
    known. ``subsets`` holds boolean masks over the test split (``"negation"``, ...).

    ``substitution_roles`` (text only) says which word substitutions keep the label, for data
    whose labelling rule is known: ``word -> role``; a word may only become another word of the
    same role, words without an entry share the role ``"other"``, and words of the role
    ``"protected"`` are never replaced (:func:`auditkit.attacks.text.role_preserving`). The text
    attack uses it instead of guessing from the data's name; ``None`` (the default, e.g. for a
    user's corpus) means no rule is known and the attack reports an upper bound.
    """

    name: str
    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    features: list[FeatureSpec] | None = None
    text: TextSpec | None = None
    positive_class: str | None = None
    ground_truth: dict[str, Any] = field(default_factory=dict)
    subsets: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    substitution_roles: dict[str, str] | None = None

    @property
    def input_shape(self) -> list[int]:
        return list(self.x_test.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sha256(self) -> str:
        """Content hash of both splits (provenance and baseline caches)."""
        h = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_test, self.y_test):
            a = np.ascontiguousarray(arr)
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()
