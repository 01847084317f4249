"""Bijections: round trips, supports, free-parameter counts, host checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from jaxem import constraints as c

FLOATS = hs.floats(-4, 4, allow_nan=False, width=64)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, (3, 4), elements=FLOATS))
def test_round_trips(u):
    for con in (c.real, c.positive, c.unit_interval, c.simplex):
        x = con.forward(jnp.asarray(u))
        assert con.check(np.asarray(x)) is None, con.name
        np.testing.assert_allclose(
            con.forward(con.inverse(x)), x, rtol=1e-9, atol=1e-12
        )


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, (2, 3, 3), elements=FLOATS))
def test_positive_definite_round_trip(u):
    x = c.positive_definite.forward(jnp.asarray(u))
    assert c.positive_definite.check(np.asarray(x)) is None
    u2 = c.positive_definite.inverse(x)
    np.testing.assert_allclose(
        c.positive_definite.forward(u2), x, rtol=1e-8, atol=1e-10
    )
    np.testing.assert_allclose(jnp.triu(u2, 1), 0.0)


def test_simplex_shapes_and_counts():
    x = c.simplex.forward(jnp.zeros((2, 3)))
    assert x.shape == (2, 4)
    np.testing.assert_allclose(x, 0.25)
    assert c.simplex.num_free((2, 4)) == 6
    assert c.positive_definite.num_free((3, 5, 5)) == 45
    assert c.real.num_free((3, 2)) == 6


def test_num_free_parameters_of_a_tree():
    params = {"weights": np.full(3, 1 / 3), "means": np.zeros((3, 2)), "cov": np.eye(2)}
    cons = {"weights": c.simplex, "cov": c.positive_definite}
    assert c.num_free_parameters(cons, params) == 2 + 6 + 3


def test_gradients_are_finite_at_the_boundary_of_the_unconstrained_space():
    def f(u):
        return jnp.sum(c.simplex.forward(u) ** 2) + jnp.sum(
            c.positive_definite.forward(u[:, :2])
        )

    g = jax.grad(f)(jnp.full((2, 3), 30.0))
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize(
    "con, value, problem",
    [
        (c.positive, [1.0, 0.0], "strictly positive"),
        (c.unit_interval, [0.5, 1.0], "strictly inside"),
        (c.simplex, [0.5, 0.6], "sum to 1"),
        (c.simplex, [1.5, -0.5], "non-negative"),
        (c.positive_definite, np.ones((2, 2)), "positive definite"),
        (c.real, [np.inf], "NaN or infinite"),
    ],
)
def test_checks_describe_the_problem(con, value, problem):
    assert problem in con.check(np.asarray(value))
