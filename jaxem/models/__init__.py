"""Prebuilt models: ``LatentModel`` factories with closed-form M-steps."""

from ._binomial import binomial_mixture as binomial_mixture

__all__ = ["binomial_mixture"]
