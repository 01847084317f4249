"""Latent structures: how the posterior over the latent variables is computed."""

from ._base import EStep as EStep
from ._categorical import Categorical as Categorical
