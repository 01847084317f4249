"""Latent structures: how the posterior over the latent variables is computed."""

from ._base import EStep as EStep
from ._categorical import Categorical as Categorical
from ._gaussian import Gaussian as Gaussian
from ._gaussian import GaussianPosterior as GaussianPosterior
from ._gaussian_chain import GaussianChain as GaussianChain
from ._gaussian_chain import GaussianChainPosterior as GaussianChainPosterior
from ._markov_chain import ChainFactors as ChainFactors
from ._markov_chain import ChainPosterior as ChainPosterior
from ._markov_chain import MarkovChain as MarkovChain
from ._markov_chain import viterbi as viterbi
