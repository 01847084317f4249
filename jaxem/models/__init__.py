"""Prebuilt models: ``LatentModel`` factories with closed-form M-steps."""

from ._binomial import binomial_mixture as binomial_mixture
from ._gmm import collapsed_components as collapsed_components
from ._gmm import gaussian_mixture as gaussian_mixture
from ._gmm import reg_covar_allowance as reg_covar_allowance
from ._gmm_missing import missing_data as missing_data

__all__ = [
    "binomial_mixture",
    "collapsed_components",
    "gaussian_mixture",
    "missing_data",
    "reg_covar_allowance",
]

from ._hmm import hmm_closed_form as hmm_closed_form  # noqa: E402
from ._hmm import hmm_factors as hmm_factors  # noqa: E402
from ._hmm_categorical import categorical_hmm as categorical_hmm  # noqa: E402
from ._hmm_gaussian import gaussian_hmm as gaussian_hmm  # noqa: E402
from ._hmm_poisson import poisson_hmm as poisson_hmm  # noqa: E402

__all__ += [
    "categorical_hmm",
    "gaussian_hmm",
    "hmm_closed_form",
    "hmm_factors",
    "poisson_hmm",
]

from ._factor_analysis import factor_analysis as factor_analysis  # noqa: E402
from ._factor_analysis import probabilistic_pca as probabilistic_pca  # noqa: E402

__all__ += ["factor_analysis", "probabilistic_pca"]

from ._lgssm import lgssm_factors as lgssm_factors  # noqa: E402
from ._lgssm import linear_gaussian_ssm as linear_gaussian_ssm  # noqa: E402

__all__ += ["lgssm_factors", "linear_gaussian_ssm"]
