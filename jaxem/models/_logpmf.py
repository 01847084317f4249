"""A Poisson log-density that does not cancel for large counts.

``x log(lambda) - lambda - log(x!)`` adds terms of size ``x log x`` to get a
result of size ``log x``: float32 loses about a nat per count near 1e6. The
saddle-point form (Loader, 2000, "Fast and accurate computation of binomial
probabilities", as R's ``dpois``) subtracts nothing large::

    log p(x | lambda) = -x h(lambda / x) - log(2 pi x) / 2 - stirlerr(x)

with ``h(r) = r - 1 - log r >= 0`` and ``stirlerr(x) = log(x!) - (x + 1/2)
log x + x - log(2 pi) / 2``, the remainder of Stirling's series.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import gammaln

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# Above this, four terms of Stirling's series are exact to about 1e-17.
_SERIES_FROM = 30.0


def _stirlerr(x):
    """``log(x!) - (x + 1/2) log x + x - log(2 pi) / 2`` for ``x >= 1``."""
    big = x > _SERIES_FROM
    xb = jnp.where(big, x, _SERIES_FROM + 1)
    inv = 1.0 / xb
    inv2 = inv * inv
    series = inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)))
    xs = jnp.where(big, 1.0, x)
    direct = gammaln(xs + 1) - (xs + 0.5) * jnp.log(xs) + xs - _HALF_LOG_2PI
    return jnp.where(big, series, direct)


def poisson_logpmf(x, rate):
    """``log Poisson(x | rate)``, elementwise and broadcasting, stable for large x.

    Equals ``jax.scipy.stats.poisson.logpmf`` to round-off of the result (not
    of its terms), with ``0 log 0 = 0``: a rate of 0 gives 0 for ``x = 0`` and
    ``-inf`` otherwise.

    Args:
        x: non-negative counts (any float or int dtype).
        rate: non-negative rates.

    Returns:
        The log-probabilities, in the promoted float dtype.

    Examples:
        >>> import jax.numpy as jnp
        >>> round(float(poisson_logpmf(jnp.array(3.0), jnp.array(2.0))), 4)
        -1.7123
    """
    dtype = jnp.result_type(x, rate)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(float)  # integer counts and rates
    x = jnp.asarray(x, dtype)
    rate = jnp.asarray(rate, dtype)
    pos = x > 0
    alive = rate > 0
    xs = jnp.where(pos, x, 1.0)
    lam = jnp.where(alive, rate, 1.0)
    r = lam / xs
    u = r - 1
    near = jnp.abs(u) < 0.5
    # h(r) = r - 1 - log r: by log1p near r = 1, by logs of each side elsewhere
    # (r - 1 rounds to -1 when the rate is far below the count).
    h = jnp.where(
        near,
        u - jnp.log1p(jnp.where(near, u, 0.0)),
        u - (jnp.log(lam) - jnp.log(xs)),
    )
    counted = -xs * h - 0.5 * jnp.log(xs) - _HALF_LOG_2PI - _stirlerr(xs)
    counted = jnp.where(alive, counted, -jnp.inf)
    return jnp.where(pos, counted, -rate)
