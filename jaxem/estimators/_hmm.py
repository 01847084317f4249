"""hmmlearn-style HMM estimators: ``GaussianHMM``, ``CategoricalHMM``, ``PoissonHMM``.

One module per concept: ``_hmm_sequences`` (hmmlearn's concatenated
sequences and ``lengths``, ``ConvergenceMonitor``), ``_hmm_base`` (the shared
scikit-learn estimator), ``_gaussian_hmm``, ``_categorical_hmm`` and
``_poisson_hmm``. This module gathers them, so files saved before the split
(which name ``jaxem.estimators._hmm``) still load.
"""

from ._categorical_hmm import CategoricalHMM as CategoricalHMM
from ._gaussian_hmm import GaussianHMM as GaussianHMM
from ._hmm_base import BaseHMM as BaseHMM
from ._hmm_sequences import ConvergenceMonitor as ConvergenceMonitor
from ._hmm_sequences import check_lengths as check_lengths
from ._hmm_sequences import to_padded as to_padded
from ._poisson_hmm import PoissonHMM as PoissonHMM

__all__ = ["CategoricalHMM", "ConvergenceMonitor", "GaussianHMM", "PoissonHMM"]
