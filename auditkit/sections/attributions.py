"""The ``attributions`` check's payload: which attribution methods ran on which samples, a
gallery of per-sample maps, and global (tabular) or per-token (text) importance (written by
:mod:`auditkit.explain.check`)."""

from __future__ import annotations

from typing import Any, Literal

from auditkit.sections.common import Strict


class MethodRun(Strict):
    """One attribution method: ``ok`` with its mean |attribution|, or ``skipped`` with why."""

    status: Literal["ok", "skipped"]
    title: str | None = None
    mean_abs: float | None = None
    reason: str | None = None


class GalleryItem(Strict):
    """One explained sample. ``input``/``attributions[method]`` follow the input's layout: an
    image as nested lists, text as a list of tokens (one score each), tabular as
    ``{feature: value}``."""

    index: int
    label: int
    label_name: str | None = None
    prediction: int
    prediction_name: str | None = None
    input: Any
    attributions: dict[str, Any]


class FeatureImportance(Strict):
    """Global importance of one tabular feature for one method (rank 1 = most important)."""

    feature: str
    mean_abs: float | None
    mean_signed: float | None
    rank: int


class TokenImportance(Strict):
    """Mean |attribution| of one vocabulary token over the explained sentences."""

    token: str
    mean_abs: float
    count: int


class AttributionsData(Strict):
    """``n_samples`` explained samples (``sample_index`` into the test split), the target class
    explained, each method's run and the gallery."""

    n_samples: int
    sample_index: list[int]
    target: str
    methods: dict[str, MethodRun]
    gallery: list[GalleryItem]
    global_importance: dict[str, list[FeatureImportance]] | None = None
    token_importance: dict[str, list[TokenImportance]] | None = None

    @property
    def methods_ok(self) -> list[str]:
        return [m for m, r in self.methods.items() if r.status == "ok"]

    @property
    def methods_skipped(self) -> dict[str, str]:
        return {m: r.reason or "no reason given" for m, r in self.methods.items() if r.status != "ok"}
