"""MarkovChain: forward-backward and Viterbi against brute-force enumeration."""

import itertools

import chex
import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest

import jaxem

K, T = 3, 5


def _factors():
    return jaxem.ChainFactors(
        initial=lambda p, z: jnp.log(p["startprob"][z]),
        transition=lambda p, i, j: jnp.log(p["transmat"][i, j]),
        emission=lambda p, x, z: st.norm.logpdf(x, p["means"][z], p["scales"][z]),
    )


FACTORS = _factors()
SEQUENTIAL = jaxem.LatentModel(FACTORS, jaxem.MarkovChain(K))
PARALLEL = jaxem.LatentModel(FACTORS, jaxem.MarkovChain(K, parallel=True))


_jitted_e_step = jax.jit(
    lambda model, *args: model.latent.e_step(model, *args), static_argnums=0
)


def _E_STEP(model, params, data, weights=None, lengths=None):
    lengths = None if lengths is None else jnp.asarray(lengths)
    return _jitted_e_step(model, params, data, weights, lengths)


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "startprob": jnp.asarray(rng.dirichlet(np.ones(K))),
        "transmat": jnp.asarray(rng.dirichlet(np.ones(K), size=K)),
        "means": jnp.asarray(rng.normal(0, 1.5, K)),
        "scales": jnp.asarray(rng.uniform(0.5, 1.5, K)),
    }


def _data(seed=1, garbage=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (3, T))
    lengths = np.array([T, 3, 1])
    x[1, 3:] = garbage
    x[2, 1:] = garbage
    return jnp.asarray(x), lengths


def _brute_force(params, x):
    """ll, marginals (L, K), transition counts (K, K), best path for one sequence."""
    p = jax.tree.map(np.asarray, params)
    L = len(x)
    emit = np.array(
        [
            [st.norm.logpdf(xt, p["means"][k], p["scales"][k]) for k in range(K)]
            for xt in x
        ]
    )
    paths = list(itertools.product(range(K), repeat=L))
    logp = []
    for z in paths:
        lp = np.log(p["startprob"][z[0]]) + emit[0, z[0]]
        for t in range(1, L):
            lp += np.log(p["transmat"][z[t - 1], z[t]]) + emit[t, z[t]]
        logp.append(lp)
    logp = np.array(logp)
    ll = np.logaddexp.reduce(logp)
    w = np.exp(logp - ll)
    marg = np.zeros((L, K))
    trans = np.zeros((K, K))
    for wi, z in zip(w, paths, strict=True):
        for t in range(L):
            marg[t, z[t]] += wi
        for t in range(1, L):
            trans[z[t - 1], z[t]] += wi
    return ll, marg, trans, np.array(paths[int(np.argmax(logp))]), logp.max()


@pytest.mark.parametrize("model", [SEQUENTIAL, PARALLEL], ids=["scan", "parallel"])
def test_forward_backward_equals_enumeration(model):
    params = _params()
    x, lengths = _data()
    estep = _E_STEP(model, params, x, None, jnp.asarray(lengths))
    post = estep.posterior
    assert post.marginals.shape == (3, T, K) and post.transitions.shape == (3, K, K)
    for b, L in enumerate(lengths):
        ll, marg, trans, _, _ = _brute_force(params, np.asarray(x[b, :L]))
        np.testing.assert_allclose(estep.per_item[b], ll, rtol=1e-12)
        np.testing.assert_allclose(post.marginals[b, :L], marg, atol=1e-12)
        np.testing.assert_array_equal(post.marginals[b, L:], 0.0)
        np.testing.assert_allclose(post.transitions[b], trans, atol=1e-12)
    np.testing.assert_allclose(estep.log_likelihood, estep.per_item.sum(), rtol=1e-14)


def test_viterbi_equals_brute_force_argmax():
    params = _params(3)
    x, lengths = _data(4)
    paths = jaxem.viterbi(SEQUENTIAL, params, x, lengths=lengths)
    _, scores = jaxem._latent._markov_chain.viterbi_with_score(
        SEQUENTIAL, params, x, jnp.asarray(lengths)
    )
    assert paths.shape == (3, T) and paths.dtype.kind == "i"
    for b, L in enumerate(lengths):
        *_, best, best_lp = _brute_force(params, np.asarray(x[b, :L]))
        np.testing.assert_array_equal(paths[b, :L], best)
        np.testing.assert_array_equal(paths[b, L:], -1)
        np.testing.assert_allclose(scores[b], best_lp, rtol=1e-12)


def test_parallel_equals_sequential_on_a_long_ragged_batch():
    params = _params(5)
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(0, 2, (4, 100)))
    lengths = jnp.array([100, 17, 1, 64])
    a = jaxem.posterior(SEQUENTIAL, params, x, lengths=lengths)
    b = jaxem.posterior(PARALLEL, params, x, lengths=lengths)
    np.testing.assert_allclose(a.marginals, b.marginals, atol=1e-10)
    np.testing.assert_allclose(a.transitions, b.transitions, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        jaxem.log_likelihood(SEQUENTIAL, params, x, lengths=lengths),
        jaxem.log_likelihood(PARALLEL, params, x, lengths=lengths),
        rtol=1e-12,
    )


def test_padding_contributes_nothing():
    params = _params()
    x0, lengths = _data(garbage=0.0)
    x1, _ = _data(garbage=1e30)
    e0 = _E_STEP(SEQUENTIAL, params, x0, None, lengths)
    e1 = _E_STEP(SEQUENTIAL, params, x1, None, lengths)
    chex.assert_trees_all_close(e0, e1, rtol=0, atol=0)
    # Each sequence on its own (no padding at all) gives the same answers.
    for b, L in enumerate(lengths):
        alone = _E_STEP(SEQUENTIAL, params, x0[b : b + 1, :L])
        np.testing.assert_allclose(alone.per_item[0], e0.per_item[b], rtol=1e-13)
        np.testing.assert_allclose(
            alone.posterior.marginals[0], e0.posterior.marginals[b, :L], atol=1e-13
        )
        np.testing.assert_allclose(
            alone.posterior.transitions[0], e0.posterior.transitions[b], atol=1e-13
        )
    # A fit on the padded batch matches whatever the padding holds.
    model = jaxem.models.gaussian_hmm(K, 1)
    p0 = {**_hmm_params(), "covars": jnp.ones((K, 1))}
    fits = [
        jaxem.fit(model, p0, x[..., None], lengths=lengths, max_iter=5, tol=0.0)
        for x in (x0, x1)
    ]
    chex.assert_trees_all_close(fits[0].params, fits[1].params, rtol=1e-12)


def _hmm_params():
    p = _params()
    return {k: p[k] for k in ("startprob", "transmat", "means")} | {
        "means": p["means"][:, None]
    }


def test_sequence_weights_equal_repeated_sequences():
    params = _params()
    x, lengths = _data()
    w = jnp.array([2.0, 1.0, 3.0])
    weighted = _E_STEP(SEQUENTIAL, params, x, w, lengths)
    reps = np.repeat(np.arange(3), [2, 1, 3])
    repeated = _E_STEP(SEQUENTIAL, params, x[reps], None, lengths[reps])
    np.testing.assert_allclose(
        weighted.log_likelihood, repeated.log_likelihood, rtol=1e-13
    )
    n = SEQUENTIAL.latent.num_observations(x, w, lengths)
    assert float(n) == float(np.sum(np.asarray(w) * lengths))


def test_expected_log_joint_matches_enumeration():
    params = _params(7)
    x, lengths = _data(8)
    post = jaxem.posterior(SEQUENTIAL, params, x, lengths=lengths)
    q = SEQUENTIAL.latent.expected_log_joint(
        SEQUENTIAL, params, x, post, None, jnp.asarray(lengths)
    )
    # Q(params) at the posterior of params = log-likelihood - entropy.
    want = 0.0
    for b, L in enumerate(lengths):
        p = jax.tree.map(np.asarray, params)
        xb = np.asarray(x[b, :L])
        paths = list(itertools.product(range(K), repeat=int(L)))
        lps = []
        for z in paths:
            lp = np.log(p["startprob"][z[0]]) + sum(
                st.norm.logpdf(xb[t], p["means"][z[t]], p["scales"][z[t]])
                for t in range(L)
            )
            lp += sum(np.log(p["transmat"][z[t - 1], z[t]]) for t in range(1, L))
            lps.append(float(lp))
        lps = np.array(lps)
        w = np.exp(lps - np.logaddexp.reduce(lps))
        want += np.sum(w * lps)
    np.testing.assert_allclose(q, want, rtol=1e-12)


def test_jit_vmap_over_sequences_and_no_retrace():
    params = _params()
    x, lengths = _data()
    traces = []

    def emission(p, x, z):
        traces.append(1)
        return st.norm.logpdf(x, p["means"][z], p["scales"][z])

    model = jaxem.LatentModel(
        jaxem.ChainFactors(FACTORS.initial, FACTORS.transition, emission),
        jaxem.MarkovChain(K),
    )
    ll = jaxem.log_likelihood(model, params, x, lengths=lengths)
    n = len(traces)
    ll2 = jaxem.log_likelihood(model, params, x + 0.0, lengths=lengths)
    assert len(traces) == n and float(ll) == float(ll2)
    # vmap over independent data sets of one sequence each.
    per = jax.vmap(lambda xi: jaxem.log_likelihood(model, params, xi[None]))(x)
    np.testing.assert_allclose(per[0], _brute_force(params, np.asarray(x[0]))[0])


def test_unbatched_sequence_is_read_as_one_sequence():
    model = jaxem.models.gaussian_hmm(K, 1)
    params = {**_hmm_params(), "covars": jnp.ones((K, 1))}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(T, 1)))
    np.testing.assert_allclose(
        jaxem.log_likelihood(model, params, x),
        jaxem.log_likelihood(model, params, x[None]),
    )
    assert jaxem.viterbi(model, params, x).shape == (1, T)


@pytest.mark.parametrize(
    "lengths, message",
    [
        (np.array([T, 3]), r"lengths: expected shape \(3,\)"),
        (np.array([T, -1, 1]), r"lengths: every length must lie in \[0, 5\]"),
        (np.array([T, 6, 1]), r"lengths: every length must lie in \[0, 5\]"),
        (np.array([0, 0, 0]), "lengths: every sequence has length 0"),
        (np.array([5.0, 2.5, 1.0]), "lengths: expected integers"),
    ],
)
def test_bad_lengths_raise(lengths, message):
    x, _ = _data()
    with pytest.raises(ValueError, match=message):
        jaxem.fit(SEQUENTIAL, _params(), x, lengths=lengths)
    with pytest.raises(ValueError, match=message):
        jaxem.viterbi(SEQUENTIAL, _params(), x, lengths=lengths)


def test_bad_declarations_raise():
    with pytest.raises(ValueError, match="log_joint: a MarkovChain model needs"):
        jaxem.LatentModel(lambda p, x, z: 0.0, jaxem.MarkovChain(2))
    with pytest.raises(ValueError, match="num_states"):
        jaxem.MarkovChain(0)
    with pytest.raises(ValueError, match="model: viterbi needs"):
        jaxem.viterbi(jaxem.models.binomial_mixture(2, 3), {}, jnp.zeros(3))
    x, lengths = _data()
    with pytest.raises(ValueError, match="data"):
        jaxem.fit(SEQUENTIAL, _params(), x[0], lengths=None)
    with pytest.raises(ValueError, match="weights"):
        jaxem.fit(SEQUENTIAL, _params(), x, weights=jnp.ones(2), lengths=lengths)


def test_float32_follows_the_input_dtype():
    model = jaxem.models.gaussian_hmm(K, 1)
    x, lengths = _data()
    p64 = {**_hmm_params(), "covars": jnp.ones((K, 1))}
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), p64)
    x32 = x.astype(jnp.float32)[..., None]
    r32 = jaxem.fit(model, p32, x32, lengths=lengths, max_iter=2, tol=0.0)
    r64 = jaxem.fit(model, p64, x[..., None], lengths=lengths, max_iter=2, tol=0.0)
    assert r32.params["means"].dtype == jnp.float32
    assert r32.log_likelihood.dtype == jnp.float32
    np.testing.assert_allclose(r32.params["means"], r64.params["means"], rtol=1e-4)
    np.testing.assert_allclose(r32.log_likelihood, r64.log_likelihood, rtol=1e-5)


def test_a_length_zero_sequence_adds_nothing():
    # Padding sequences (jaxem.shard, jaxem._buckets) have length 0.
    x, _ = _data()
    lengths = np.array([T, 3, 1])
    fit = jaxem.fit(SEQUENTIAL, _params(), x, lengths=lengths, max_iter=5, tol=0.0)
    padded = np.concatenate([x, x[:1]], axis=0)
    with_empty = jaxem.fit(
        SEQUENTIAL,
        _params(),
        padded,
        lengths=np.append(lengths, 0),
        max_iter=5,
        tol=0.0,
    )
    np.testing.assert_allclose(with_empty.history, fit.history, rtol=1e-12)
