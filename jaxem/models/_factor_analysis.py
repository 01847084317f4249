"""Factor analysis and probabilistic PCA: linear-Gaussian latent factors.

With k factors and d features, one observation is

    z ~ N(0, I_k),    x | z ~ N(mean + components.T @ z, diag(noise_variance))

with ``noise_variance`` a (d,) vector for factor analysis and one shared
scalar for probabilistic PCA (Tipping & Bishop 1999). Parameters::

    {"components": (k, d) real, "mean": (d,) real,
     "noise_variance": (d,) positive | () positive}

The latent is ``Gaussian(k)``, so the E-step (posterior mean and covariance of
z) is derived by autodiff and is exact. The closed-form M-step regresses x on
[E z, 1] (Ghahramani & Hinton 1996, with the mean fitted jointly): from the
additive statistics sum E[z], sum E[z z^T], sum x E[z]^T, sum x and sum x^2,
taken about the current mean so that they add across chunks and keep float32
sums well conditioned.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.stats as st

from .. import constraints
from .._latent import Gaussian
from .._model import ClosedForm, LatentModel

INIT_METHODS = ("pca", "random")


def _check_sizes(n_components, n_features):
    for name, value in (("n_components", n_components), ("n_features", n_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _log_joint(params, x, z):
    """log N(z | 0, I) + log N(x | mean + W^T z, diag(psi)) for ONE x."""
    loc = params["mean"] + z @ params["components"]
    scale = jnp.sqrt(jnp.broadcast_to(params["noise_variance"], loc.shape))
    return jnp.sum(st.norm.logpdf(z)) + jnp.sum(st.norm.logpdf(x, loc, scale))


def _stats(data, posterior, weights, params):
    """Additive statistics of the regression of x - mean0 on [E z, 1]."""
    ez, cov = posterior.mean, posterior.cov
    w = jnp.ones(ez.shape[:1], ez.dtype) if weights is None else weights
    xc = data - params["mean"][None, :]
    ezz = cov + ez[:, :, None] * ez[:, None, :]
    return {
        "n": jnp.sum(w),
        "sz": w @ ez,
        "szz": jnp.einsum("n,nij->ij", w, ezz),
        "sxz": (xc * w[:, None]).T @ ez,
        "sx": w @ xc,
        "sxx": w @ (xc * xc),
    }


def _regression(stats):
    """Loadings [W^T | offset] (d, k+1) and residual variances (d,)."""
    n, sz = stats["n"], stats["sz"]
    gram = jnp.block([[stats["szz"], sz[:, None]], [sz[None, :], n[None, None]]])
    cross = jnp.concatenate([stats["sxz"], stats["sx"][:, None]], axis=1)
    loadings = jnp.linalg.solve(gram, cross.T).T
    resid = (stats["sxx"] - jnp.sum(loadings * cross, axis=1)) / n
    return loadings, resid


def _update(isotropic, min_variance):
    def update(stats, params):
        loadings, resid = _regression(stats)
        scale = jnp.mean(resid) if isotropic else resid
        floor = min_variance * jnp.mean(stats["sxx"] / stats["n"])
        return {
            "components": loadings[:, :-1].T,
            "mean": params["mean"] + loadings[:, -1],
            "noise_variance": jnp.maximum(scale, floor),
        }

    return update


def _initializer(n_components, isotropic):
    def init(key, data, method="pca"):
        """Initial params from data (N, d): ``"pca"`` or ``"random"`` loadings."""
        if method not in INIT_METHODS:
            raise ValueError(f"method: expected one of {INIT_METHODS}, got {method!r}")
        data = jnp.asarray(data)
        mean = jnp.mean(data, axis=0)
        cov = jnp.atleast_2d(jnp.cov(data, rowvar=False, bias=True))
        var = jnp.diagonal(cov)
        if method == "pca":
            evals, evecs = jnp.linalg.eigh(cov)
            top = evals[::-1][:n_components]
            rest = (
                jnp.mean(evals[::-1][n_components:])
                if evals.size > n_components
                else 0.0
            )
            scale = jnp.sqrt(jnp.maximum(top - rest, 1e-3 * jnp.mean(var)))
            components = (evecs[:, ::-1][:, :n_components] * scale[None, :]).T
            noise = jnp.maximum(var - jnp.sum(components**2, axis=0), 0.1 * var)
        else:
            shape = (n_components, data.shape[1])
            scale = jnp.sqrt(var / 2)[None, :]
            components = jax.random.normal(key, shape, data.dtype) * scale
            noise = var / 2
        noise = jnp.mean(noise) if isotropic else noise
        return {"components": components, "mean": mean, "noise_variance": noise}

    return init


def _sampler(n_components):
    def sample(key, params, n):
        """Draw (x (n, d), z (n, k)) from the model."""
        kz, kx = jax.random.split(key)
        dtype = params["components"].dtype
        z = jax.random.normal(kz, (n, n_components), dtype)
        d = params["mean"].shape[0]
        scale = jnp.sqrt(jnp.broadcast_to(params["noise_variance"], (d,)))
        noise = jax.random.normal(kx, (n, d), dtype) * scale[None, :]
        return params["mean"][None, :] + z @ params["components"] + noise, z

    return sample


def _build(name, n_components, n_features, isotropic, min_variance):
    _check_sizes(n_components, n_features)
    return LatentModel(
        _log_joint,
        Gaussian(n_components),
        constraints={
            "components": constraints.real,
            "mean": constraints.real,
            "noise_variance": constraints.positive,
        },
        m_step=ClosedForm(_stats, _update(isotropic, min_variance)),
        init=_initializer(n_components, isotropic),
        sample=_sampler(n_components),
        event_shape=(n_features,),
        name=name,
    )


@functools.cache
def factor_analysis(n_components: int, n_features: int) -> LatentModel:
    """Factor analysis: k latent factors, a separate noise variance per feature.

    Args:
        n_components: k, the number of factors.
        n_features: d, the number of observed features.

    Returns:
        A ``LatentModel`` with a ``Gaussian(k)`` latent and a closed-form
        M-step; params ``{"components": (k, d), "mean": (d,),
        "noise_variance": (d,)}`` as scikit-learn's ``components_``, ``mean_``
        and ``noise_variance_``.

    Examples:
        >>> import jax, jaxem
        >>> model = jaxem.models.factor_analysis(2, 5)
        >>> params = {"components": jax.numpy.ones((2, 5)),
        ...           "mean": jax.numpy.zeros(5), "noise_variance": jax.numpy.ones(5)}
        >>> x, z = model.sample(jax.random.key(0), params, 400)
        >>> params0 = model.init(jax.random.key(1), x)
        >>> result = jaxem.fit(model, params0, x, max_iter=200)
        >>> result.params["components"].shape, bool(result.converged)
        ((2, 5), True)
    """
    return _build(
        f"factor_analysis({n_components!r}, {n_features!r})",
        n_components,
        n_features,
        isotropic=False,
        min_variance=1e-12,
    )


@functools.cache
def probabilistic_pca(n_components: int, n_features: int) -> LatentModel:
    """Probabilistic PCA: factor analysis with one shared noise variance.

    Its maximum-likelihood solution is Tipping & Bishop's closed form:
    ``noise_variance`` the mean of the d - k smallest eigenvalues of the
    sample covariance, and ``components.T @ components`` the top-k
    eigen-directions scaled by (eigenvalue - noise_variance); EM converges to it.

    Args:
        n_components: k, the number of latent dimensions.
        n_features: d, the number of observed features.

    Returns:
        A ``LatentModel``; params ``{"components": (k, d), "mean": (d,),
        "noise_variance": ()}``.

    Examples:
        >>> import jaxem
        >>> jaxem.models.probabilistic_pca(2, 5).latent
        Gaussian(dim=2, max_steps=20)
    """
    return _build(
        f"probabilistic_pca({n_components!r}, {n_features!r})",
        n_components,
        n_features,
        isotropic=True,
        min_variance=1e-12,
    )
