"""GAN checks: sample quality (FID in a judge's feature space), class coverage and mode
collapse, memorisation of training images, and attributions of the discriminator and of the
latent space. :mod:`auditkit.generative.metrics` holds the pure functions; importing
:mod:`auditkit.generative.check` registers the ``gan`` scan check."""

from auditkit.generative.metrics import (
    GenerativeInputError,
    class_coverage,
    discriminator_attributions,
    frechet_distance,
    latent_attributions,
    memorisation,
    sample_quality,
)

__all__ = [
    "GenerativeInputError",
    "class_coverage",
    "discriminator_attributions",
    "frechet_distance",
    "latent_attributions",
    "memorisation",
    "sample_quality",
]
