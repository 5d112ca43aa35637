"""The ``gan`` check's payload: sample quality (FID against a real-vs-real reference), class
coverage, memorisation, what the discriminator and the latent space respond to (written by
:mod:`auditkit.generative.check`). Quality, coverage and latent need a judge classifier; they
are absent (listed in ``skipped``) without one."""

from __future__ import annotations

from typing import Any

from auditkit.sections.common import Proportion, Strict


class Judge(Strict):
    name: str | None
    available: bool
    reason: str | None


class ClosestPair(Strict):
    sample: int
    train: int
    distance: float | None
    sample_image: list[Any] | None = None
    train_image: list[Any] | None = None


class Memorisation(Strict):
    """Nearest-neighbour distances of generated samples to train vs test images."""

    n_samples: int
    n_train: int
    n_test: int
    median_nn_train: float | None
    median_nn_test: float | None
    ratio: float | None
    ratio_real: float | None
    relative_ratio: float | None
    near_copy_threshold: float | None
    near_copy_fraction: float | None
    closest_pairs: list[ClosestPair]
    memorisation_suspected: bool
    relative_ratio_threshold: float
    near_copy_fraction_threshold: float
    near_copy_quantile: float | None = None

    @property
    def near_copies(self) -> Proportion:
        """Share of samples closer to a training image than the threshold, with its interval."""
        return Proportion.of_fraction(self.near_copy_fraction, self.n_samples)


class Realness(Strict):
    """The discriminator on all real test and all generated images: mean ``sigmoid(d)``, the
    shares it judges real / fake (logit > 0 / <= 0), and the ROC-AUC of ``d`` separating them."""

    mean_on_real: float | None
    mean_on_fake: float | None
    auc_real_vs_fake: float | None
    n_real: int
    n_fake: int
    real_judged_real: float | None = None
    fake_judged_fake: float | None = None

    @property
    def real_called_real(self) -> Proportion | None:
        """Share of real images the discriminator calls real, with its interval."""
        return None if self.real_judged_real is None else Proportion.of_fraction(self.real_judged_real, self.n_real)


class DiscriminatorMaps(Strict):
    n_explained: int
    mean_abs_map: dict[str, Any]
    examples: list[dict[str, Any]]


class DiscriminatorAttributions(Strict):
    realness: Realness
    skipped: dict[str, str] = {}
    real: DiscriminatorMaps | None = None
    fake: DiscriminatorMaps | None = None
    methods: list[str] = []


class Quality(Strict):
    """Fréchet distance of judge features: generated vs test, and train vs test (the
    real-vs-real reference at the same sample count); ``fid_ratio`` = fid / reference."""

    fid: float | None
    fid_real_vs_real: float | None
    fid_real_vs_real_std: float | None
    fid_ratio: float | None
    n_samples: int
    n_train_reference: int
    n_reference_draws: int
    n_test: int
    feature_dim: int
    features: str


class Coverage(Strict):
    """Classes the judge sees in the samples; ``classes_covered`` by confident samples."""

    n_samples: int
    confidence_threshold: float
    histogram: list[int]
    confident_histogram: list[int]
    confident_fraction: float | None
    mean_confidence: float | None
    classes_covered: int
    missing_classes: list[int]
    entropy: float | None
    largest_share: float | None
    largest_class: int
    mode_collapse: bool
    entropy_threshold: float

    @property
    def confident(self) -> Proportion:
        """Share of samples the judge recognises with confidence >= the threshold."""
        return Proportion.of_fraction(self.confident_fraction, self.n_samples)


class Latent(Strict):
    latent_dim: int
    n_samples: int
    method: str
    baseline: str
    mean_abs_attribution: list[float | None]
    mean_attribution: list[float | None]
    top_dims: list[int]
    top_k: int
    step: float
    flip_rate_top: float | None
    flip_rate_random: float | None
    flip_rate_random_draws: list[float | None]
    top_changes_more: bool
    ig_delta_mean_abs: float | None
    predicted_histogram: list[int]


class GridSample(Strict):
    image: list[Any]
    prediction: int | None
    prediction_name: str | None
    confidence: float | None


class GanData(Strict):
    n_samples: int
    seed: int
    latent_dim: int
    judge: Judge
    skipped: dict[str, str | None] = {}
    memorisation: Memorisation
    discriminator: DiscriminatorAttributions
    quality: Quality | None = None
    coverage: Coverage | None = None
    latent: Latent | None = None
    sample_grid: list[GridSample] = []
