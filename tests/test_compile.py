"""Compile once: size buckets pad exactly, and a new size or max_iter reuses
the compiled program (counted by traces of a user's log-density)."""

import contextlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import jax.scipy.stats as st
import numpy as np
import pytest

import jaxem
from jaxem import _buckets
from jaxem import _fit as _fitmod
from jaxem._latent import _markov_chain
from jaxem.estimators import _base

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.normal(-2, 1, (70, 2)), RNG.normal(2, 0.7, (80, 2))])
GMM = jaxem.models.gaussian_mixture(2, 2)
GMM0 = {
    "weights": np.array([0.5, 0.5]),
    "means": np.array([[-1.0, 0.0], [1.0, 0.5]]),
    "covariances": np.stack([np.eye(2)] * 2),
}
HEADS = np.array([5.0, 9.0, 8.0, 4.0, 7.0, 6.0, 9.0])


def _coin_log_joint(params, x, z):
    return jnp.log(0.5) + st.binom.logpmf(x, 10, params["p"][z])


def _coin_stats(data, resp, weights):  # ignores weights on purpose
    return {"heads": resp.T @ data, "tosses": 10 * resp.sum(0)}


COINS = jaxem.LatentModel(
    _coin_log_joint,
    jaxem.Categorical(2),
    constraints={"p": jaxem.constraints.unit_interval},
    m_step=jaxem.ClosedForm(_coin_stats, lambda s, p: {"p": s["heads"] / s["tosses"]}),
)


def unpadded_fit(model, params0, data, weights=None, lengths=None, max_iter=15):
    """The fit loop on the data as given (no padding)."""
    result = _fitmod._fit(
        model,
        params0,
        data,
        weights,
        lengths,
        None,
        0.0,
        max_iter,
        history_size=max_iter,
        m_step_optimizer=None,
        m_step_iters=None,
        frozen=(),
        callback=None,
    )
    return result


def assert_same_fit(padded, plain, rtol=1e-12):
    for a, b in zip(
        jaxem_leaves(padded.params), jaxem_leaves(plain.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-13)
    np.testing.assert_allclose(padded.history, plain.history, rtol=rtol)
    np.testing.assert_allclose(padded.log_likelihood, plain.log_likelihood, rtol=rtol)
    assert int(padded.n_iter) == int(plain.n_iter)


def jaxem_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_buckets_are_few_and_waste_little():
    sizes = np.arange(1, 200_000)
    buckets = np.array([_buckets.bucket(n) for n in sizes])
    assert np.all(buckets >= sizes) and np.all(np.diff(buckets) >= 0)
    assert np.all(buckets[sizes > 4096] < 1.25 * sizes[sizes > 4096])
    assert np.all(buckets[sizes > 65536] < 1.0625 * sizes[sizes > 65536])
    assert len(set(buckets.tolist())) < 70
    assert _buckets.bucket(3, minimum=16) == 16


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_padded_mixture_fit_equals_unpadded(weighted):
    w = RNG.uniform(0.5, 2.0, X.shape[0]) if weighted else None
    padded = jaxem.fit(GMM, GMM0, X, weights=w, max_iter=15, tol=0.0)
    assert padded.history.shape == (15,)
    assert_same_fit(padded, unpadded_fit(GMM, GMM0, X, w))


def test_padding_rows_get_zero_posterior_so_weightless_stats_stay_right():
    params = {"p": np.array([0.4, 0.7])}
    data, weights, mask = _buckets.pad_observations(HEADS, None, np.float64)
    assert data.shape == (1024,)
    estep = _fitmod._e_step_jit(COINS, params, data, weights, None, mask)
    post = np.asarray(estep.posterior)
    assert np.all(post[len(HEADS) :] == 0.0)
    plain = _fitmod._e_step_jit(COINS, params, HEADS, None, None)
    np.testing.assert_allclose(post[: len(HEADS)], plain.posterior, rtol=1e-14)
    np.testing.assert_allclose(estep.log_likelihood, plain.log_likelihood, rtol=1e-14)
    got = jaxem.posterior(COINS, params, HEADS)
    assert got.shape == (len(HEADS), 2)
    padded = jaxem.fit(COINS, params, HEADS, max_iter=15, tol=0.0)
    assert_same_fit(padded, unpadded_fit(COINS, params, HEADS))


def _hmm_case():
    lengths = np.array([17, 11, 5])
    x = RNG.normal(size=(3, 17, 1)) + np.where(RNG.random((3, 17, 1)) < 0.5, 2, -2)
    params = {
        "startprob": np.array([0.6, 0.4]),
        "transmat": np.array([[0.8, 0.2], [0.3, 0.7]]),
        "means": np.array([[-1.0], [1.0]]),
        "covars": np.array([[1.0], [1.5]]),
    }
    return x, lengths, params


def test_padded_chain_fit_and_viterbi_equal_unpadded():
    x, lengths, params = _hmm_case()
    model = jaxem.models.gaussian_hmm(2, 1)
    padded = jaxem.fit(model, params, x, lengths=lengths, max_iter=10, tol=0.0)
    assert_same_fit(padded, unpadded_fit(model, params, x, None, lengths, 10))
    paths = jaxem.viterbi(model, params, x, lengths=lengths)
    assert paths.shape == (3, 17)
    want = _markov_chain._viterbi_jit(model, params, x, lengths)[0]
    np.testing.assert_array_equal(paths, want)


@pytest.mark.parametrize("parallel", [False, True], ids=["scan", "parallel"])
def test_padded_chain_e_step_equals_unpadded(parallel):
    x, lengths, params = _hmm_case()
    model = jaxem.models.gaussian_hmm(2, 1, parallel=parallel)
    plain = _fitmod._e_step_jit(model, params, x, None, lengths)
    got = _fitmod.e_step(model, params, x, lengths=lengths)
    assert got.posterior.marginals.shape == (3, 17, 2)
    for a, b in zip(got.posterior, plain.posterior, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.per_item, plain.per_item, rtol=1e-12)
    np.testing.assert_allclose(got.log_likelihood, plain.log_likelihood, rtol=1e-12)


def _counting_model():
    traces = []

    def log_joint(params, x, z):
        traces.append(1)
        return jnp.log(params["w"][z]) + st.norm.logpdf(x, params["mu"][z])

    def stats(data, resp, weights):
        resp = resp * weights[:, None] if weights is not None else resp
        return {"n": resp.sum(0), "sx": resp.T @ data}

    model = jaxem.LatentModel(
        log_joint,
        jaxem.Categorical(2),
        constraints={"w": jaxem.constraints.simplex},
        m_step=jaxem.ClosedForm(
            stats, lambda s, p: {"w": s["n"] / s["n"].sum(), "mu": s["sx"] / s["n"]}
        ),
    )
    return model, traces


def test_new_size_max_iter_and_tol_reuse_the_compiled_fit():
    model, traces = _counting_model()
    params = {"w": np.array([0.5, 0.5]), "mu": np.array([-1.0, 1.0])}
    x = X[:, 0]
    first = jaxem.fit(model, params, x, max_iter=50)
    count = len(traces)
    assert count > 0
    second = jaxem.fit(model, params, x[:120], max_iter=80, tol=1e-8)
    third = jaxem.fit(model, params, x[:100], weights=np.ones(100), max_iter=3)
    assert len(traces) == count
    assert first.history.shape == (50,) and second.history.shape == (80,)
    assert third.history.shape == (3,) and int(third.n_iter) == 3
    jaxem.posterior(model, params, x)
    count = len(traces)
    jaxem.posterior(model, params, x[:130])
    jaxem.log_likelihood(model, params, x[:140])
    assert len(traces) == count


def test_fit_restarts_pads_and_reuses_its_program():
    model, traces = _counting_model()
    stacked = {"w": np.full((3, 2), 0.5), "mu": np.array([[-1.0, 1.0]] * 3)}
    x = X[:, 0]
    results = _base.fit_restarts(model, stacked, x, None, None, 1e-6, max_iter=40)
    count = len(traces)
    assert results.history.shape == (3, 40)
    again = _base.fit_restarts(model, stacked, x[:110], None, None, 1e-6, max_iter=9)
    assert len(traces) == count and again.history.shape == (3, 9)
    one = jaxem.fit(model, _base.take(stacked, 0), x, max_iter=40, tol=1e-6)
    np.testing.assert_allclose(_base.take(results, 0).history, one.history, rtol=1e-12)


def test_absurd_max_iter_is_refused_before_allocating():
    with pytest.raises(ValueError, match="max_iter: expected a positive int"):
        jaxem.fit(COINS, {"p": np.array([0.4, 0.7])}, HEADS, max_iter=10**12)
    with pytest.raises(ValueError, match="max_iter"):
        _base.fit_restarts(COINS, {}, HEADS, None, None, 0.0, max_iter=10**12)


@contextlib.contextmanager
def lowerings():
    """Count programs lowered for compilation (in-memory cache misses)."""
    names = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_eager_helpers_compile_once_per_model_and_shape():
    def log_joint(params, x, z):  # no closed form: a gradient M-step
        return jnp.log(0.5) + st.binom.logpmf(x, 10, params["p"][z])

    cons = {"p": jaxem.constraints.unit_interval}
    model = jaxem.LatentModel(log_joint, jaxem.Categorical(2), constraints=cons)
    # An equal model (same function, an equal constraint tree) is the same
    # static argument: it hashes and compares equal, so it reuses programs.
    twin = jaxem.LatentModel(log_joint, jaxem.Categorical(2), constraints=dict(cons))
    assert twin == model and hash(twin) == hash(model)
    params = {"p": np.array([0.4, 0.7])}
    with lowerings() as first:
        resp = jaxem.posterior(model, params, HEADS)
        new = jaxem.m_step(model, params, HEADS, resp)
        jaxem.log_likelihood(model, new, HEADS)
    assert first
    with lowerings() as again:
        for p in (0.3, 0.35):
            params = {"p": np.array([p, 0.8])}
            resp = jaxem.posterior(twin, params, HEADS)
            new = jaxem.m_step(twin, params, HEADS, resp)
            after = float(jaxem.log_likelihood(twin, new, HEADS))
            assert after >= float(jaxem.log_likelihood(twin, params, HEADS))
    assert again == []


def test_viterbi_compiles_once_per_size_bucket():
    factors = jaxem.ChainFactors(
        initial=lambda p, z: jnp.log(p["start"][z]),
        transition=lambda p, i, j: jnp.log(p["trans"][i, j]),
        emission=lambda p, x, z: st.norm.logpdf(x, p["mu"][z]),
    )
    model = jaxem.LatentModel(factors, jaxem.MarkovChain(2))
    params = {
        "start": np.array([0.5, 0.5]),
        "trans": np.array([[0.9, 0.1], [0.2, 0.8]]),
        "mu": np.array([-1.0, 1.0]),
    }
    x = np.where(np.arange(40) % 10 < 5, -1.0, 1.0)[None] + 0.1
    with lowerings() as first:
        assert jaxem.viterbi(model, params, x).tolist()[0][:10] == [0] * 5 + [1] * 5
    assert any("viterbi" in name for name in first)
    with lowerings() as again:
        paths = jaxem.viterbi(model, params, x[:, :33])
    assert paths.shape == (1, 33)
    assert not any("viterbi" in name for name in again), again


CACHE_SCRIPT = """
import jax, numpy as np, jaxem
from jaxem import _compile_cache
hits = []
jax.monitoring.register_event_listener(
    lambda e, **k: hits.append(e) if e == "/jax/compilation_cache/cache_hits" else None
)
model = jaxem.models.binomial_mixture(2, 10)
params0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.4, 0.6])}
jaxem.fit(model, params0, np.array([5.0, 9.0, 8.0, 4.0, 7.0]), max_iter=5)
print(_compile_cache.enable(), len(hits))
"""


def _run_cache_script(tmp_path, name, **env):
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))
        and k != "JAXEM_NO_CACHE"
    }
    base.update(XDG_CACHE_HOME=str(tmp_path / name), **env)
    return subprocess.Popen(
        [sys.executable, "-c", CACHE_SCRIPT],
        env=base,
        stdout=subprocess.PIPE,
        text=True,
    )


def _output(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    where, hits = out.split()
    return where, int(hits)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG layout")
def test_persistent_cache_by_default_never_over_the_users_choice(tmp_path):
    user = tmp_path / "user-cache"
    procs = [
        _run_cache_script(tmp_path, "default"),
        _run_cache_script(tmp_path, "off", JAXEM_NO_CACHE="1"),
        _run_cache_script(tmp_path, "user", JAX_COMPILATION_CACHE_DIR=str(user)),
    ]
    (where, hits), off, mine = (_output(p) for p in procs)
    assert where == str(tmp_path / "default" / "jaxem" / "xla") and hits == 0
    assert any((tmp_path / "default" / "jaxem" / "xla").iterdir())
    assert off == ("None", 0) and not (tmp_path / "off" / "jaxem").exists()
    assert mine == ("None", 0) and not (tmp_path / "user" / "jaxem").exists()
    assert any(user.iterdir())
    # A second fresh process starts warm: it reads the programs back.
    where, hits = _output(_run_cache_script(tmp_path, "default"))
    assert hits > 0


@pytest.mark.parametrize("backend, parallel", [("cpu", False), ("gpu", True)])
def test_markov_chain_chooses_its_scan_by_backend(monkeypatch, backend, parallel):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert jaxem.MarkovChain(3).parallel is parallel
    assert jaxem.MarkovChain(3, parallel=not parallel).parallel is (not parallel)
    assert jaxem.MarkovChain(3) == jaxem.MarkovChain(3, parallel=parallel)


# ------------------------------------------------------- the estimators' paths
IRIS_LIKE = np.concatenate(
    [RNG.normal(m, s, (50, 4)) for m, s in ((0.0, 0.3), (2.0, 0.5), (4.0, 0.4))]
)
CHAIN_X = np.concatenate([RNG.normal(m, 1.0, (250, 2)) for m in (-3, 0, 3, 0)])


@pytest.mark.parametrize(
    "method", ["kmeans", "k-means++", "random", "random_from_data"]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_padded_mixture_initialisation_equals_unpadded(method, weighted):
    from jaxem.estimators._mixture import draw_restarts

    model = jaxem.models.gaussian_mixture(3, 4, "full", 1e-6)
    x = IRIS_LIKE[:130]
    w = RNG.uniform(0.5, 2.0, 130) if weighted else None
    key = jax.random.key(3)
    plain = model.init(jax.random.fold_in(key, 1), x, method, w)
    data, weights, mask = _buckets.pad_observations(x, w, x.dtype)
    assert data.shape[0] == 1024
    padded = draw_restarts(model, method, key, np.arange(2), data, weights, mask)
    for name in plain:
        np.testing.assert_allclose(padded[name][1], plain[name], rtol=1e-12, atol=1e-13)


def test_gaussian_mixture_fit_equals_the_unpadded_computation():
    est = jaxem.GaussianMixture(3, random_state=4, max_iter=30, tol=0.0)
    with pytest.warns(_base.ConvergenceWarning):
        est.fit(IRIS_LIKE[:140])
    x = IRIS_LIKE[:140]
    model = jaxem.models.gaussian_mixture(3, 4, "full", 1e-6)
    params0 = model.init(jax.random.fold_in(jax.random.key(4), 0), x)
    plain = unpadded_fit(model, params0, x, max_iter=30)
    np.testing.assert_allclose(est.means_, plain.params["means"], rtol=1e-12)
    np.testing.assert_allclose(
        est.covariances_, plain.params["covariances"], rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(est.weights_, plain.params["weights"], rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(est.lower_bounds_) * 140, plain.history, rtol=1e-12
    )
    # scoring on the padded program equals the unpadded table
    table = model.log_joint_table(plain.params, x)
    log_prob = jax.nn.logsumexp(table, axis=1)
    np.testing.assert_allclose(est.score_samples(x), log_prob, rtol=1e-12)
    np.testing.assert_allclose(
        est.predict_proba(x), np.exp(table - log_prob[:, None]), atol=1e-12
    )
    assert not est.collapsed_.any()


def test_gaussian_hmm_fit_equals_the_unpadded_computation():
    est = jaxem.GaussianHMM(3, random_state=2, n_iter=15, tol=-1.0)
    est.fit(CHAIN_X[:700], [300, 400])
    # hmmlearn's default covariance prior makes this a MAP fit, whose
    # monitor_.history is the plain log-likelihood, as the estimator fits it
    model = jaxem._model.with_log_prior(est._model(CHAIN_X), None)
    data = np.zeros((2, 400, 2))
    data[0, :300], data[1] = CHAIN_X[:300], CHAIN_X[300:700]
    lengths = np.array([300, 400])
    params0 = jax.tree.map(
        lambda a: a[0],
        jax.vmap(lambda k: model.init(k, data, lengths))(
            jax.random.split(jax.random.key(2), 1)
        ),
    )
    plain = unpadded_fit(model, params0, data, lengths=lengths, max_iter=15)
    for name, attr in (("startprob", "startprob_"), ("transmat", "transmat_")):
        np.testing.assert_allclose(getattr(est, attr), plain.params[name], rtol=1e-12)
    np.testing.assert_allclose(est.means_, plain.params["means"], rtol=1e-12)
    np.testing.assert_allclose(list(est.monitor_.history), plain.history, rtol=1e-12)
    plain_ll = _fitmod._e_step(model, plain.params, data, None, lengths).log_likelihood
    np.testing.assert_allclose(
        est.score(CHAIN_X[:700], [300, 400]), plain_ll, rtol=1e-12
    )


def test_estimators_compile_nothing_for_a_new_number_of_rows_or_sequences():
    gm = jaxem.GaussianMixture(3, random_state=0).fit(IRIS_LIKE)
    gm.predict(IRIS_LIKE)
    with lowerings() as again:
        gm = jaxem.GaussianMixture(3, random_state=0).fit(IRIS_LIKE[:120])
        gm.predict(IRIS_LIKE[:50])
        gm.score_samples(IRIS_LIKE[:7])
        gm.predict_proba(IRIS_LIKE[:130])
    assert again == []
    hmm = jaxem.GaussianHMM(3, random_state=0).fit(CHAIN_X)
    hmm.score(CHAIN_X)
    hmm.predict(CHAIN_X)
    with lowerings() as again:
        jaxem.GaussianHMM(3, random_state=0).fit(CHAIN_X[:800])
        hmm = jaxem.GaussianHMM(3, random_state=0).fit(CHAIN_X, [400, 600])
        hmm.score(CHAIN_X[:900], [100, 200, 600])
        hmm.predict(CHAIN_X[:1000], [600, 400])  # the same step bucket
        hmm.predict_proba(CHAIN_X[:600])
    assert again == []


def test_verbose_fit_says_it_is_compiling_once(capsys):
    x = IRIS_LIKE[:60] * 1.5  # new values, same programs as the other tests
    jaxem.GaussianMixture(2, covariance_type="spherical", verbose=1).fit(x)
    err = capsys.readouterr().err
    assert err.count("GaussianMixture: compiling") == 1, err
    jaxem.GaussianMixture(2, covariance_type="spherical", verbose=1).fit(x[:50])
    assert "compiling" not in capsys.readouterr().err
