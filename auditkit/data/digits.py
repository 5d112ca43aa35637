"""scikit-learn's bundled 8x8 handwritten digits (1,797 images; ships with sklearn, no download)."""

from __future__ import annotations

import numpy as np

from auditkit.data.base import AuditData
from auditkit.data.readers import stratified_split


def load_digits(seed: int = 0, test_fraction: float = 0.25) -> AuditData:
    """The digits as image-classification data with a seeded, stratified train/test split.

    Returns :class:`AuditData` with ``x_*`` ``[N, 1, 8, 8]`` float32 in [0, 1] (sklearn's 0..16
    grey levels divided by 16), ``y_*`` ``[N]`` int64 digit labels, class names ``"0".."9"``.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits  # imported on use: slow

    bunch = sklearn_load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    tr, te = stratified_split(y, test_fraction, seed, "digits")
    return AuditData(
        name="digits",
        task="image-classification",
        x_train=x[tr],
        y_train=y[tr],
        x_test=x[te],
        y_test=y[te],
        class_names=[str(i) for i in range(10)],
        meta={"source": "sklearn.datasets.load_digits", "seed": seed,
              "test_fraction": test_fraction},
    )
