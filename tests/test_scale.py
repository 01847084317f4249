"""Scale-out: exact chunked EM, data sharded over 8 devices, several processes.

The multi-device and multi-process checks run in subprocesses: the number of
host CPU devices and ``jax.distributed`` must be set up before JAX starts, and
this test process has already started it.
"""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem._chunked import Batch


def _blobs(n=1003, d=3, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.4
    return np.where(z[:, None], rng.normal(-2, 1, (n, d)), rng.normal(2, 0.7, (n, d)))


def _gmm_start(x, k, covariance_type):
    d = x.shape[1]
    cov = {
        "full": np.stack([np.eye(d)] * k),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
        "tied": np.eye(d),
    }[covariance_type]
    return {"weights": np.full(k, 1 / k), "means": x[:k].copy(), "covariances": cov}


def _assert_same_fit(a, b, rtol=1e-10):
    assert int(a.n_iter) == int(b.n_iter)
    assert int(a.status) == int(b.status)
    np.testing.assert_allclose(a.history, b.history, rtol=rtol)
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=rtol)
    for key in a.params:
        np.testing.assert_allclose(a.params[key], b.params[key], rtol=rtol, atol=1e-12)


def test_chunked_em_equals_in_memory_em_on_a_memory_mapped_file(tmp_path):
    x = _blobs()
    path = tmp_path / "x.npy"
    np.save(path, x)
    model = jaxem.models.gaussian_mixture(2, 3, "full")
    params0 = _gmm_start(x, 2, "full")
    in_memory = jaxem.fit(model, params0, x, max_iter=40, tol=1e-9)
    mapped = np.load(path, mmap_mode="r")
    streamed = jaxem.fit_chunked(
        model, params0, mapped, chunk_rows=300, max_iter=40, tol=1e-9
    )
    _assert_same_fit(in_memory, streamed)
    by_path = jaxem.fit_chunked(
        model, params0, str(path), chunk_rows=450, max_iter=40, tol=1e-9
    )
    _assert_same_fit(in_memory, by_path)
    assert bool(streamed.converged)


def test_chunked_em_with_weights_from_a_generator_factory():
    x = _blobs(n=600, d=2, seed=1)
    w = np.random.default_rng(2).integers(0, 4, 600).astype(float)
    model = jaxem.models.gaussian_mixture(3, 2, "diag")
    params0 = _gmm_start(x, 3, "diag")
    in_memory = jaxem.fit(model, params0, x, weights=w, max_iter=25, tol=0.0)

    def chunks():
        for start in range(0, 600, 128):
            yield Batch(x[start : start + 128], weights=w[start : start + 128])

    streamed = jaxem.fit_chunked(model, params0, chunks, max_iter=25, tol=0.0)
    _assert_same_fit(in_memory, streamed)


def test_chunked_em_over_ragged_sequences():
    rng = np.random.default_rng(3)
    lengths = np.array([40, 25, 31, 12, 40, 7])
    x = rng.normal(size=(6, 40, 1)) + (np.arange(40) // 10 % 2)[None, :, None] * 2.5
    model = jaxem.models.gaussian_hmm(2, 1, "diag")
    params0 = {
        "startprob": np.array([0.5, 0.5]),
        "transmat": np.array([[0.9, 0.1], [0.1, 0.9]]),
        "means": np.array([[0.0], [2.0]]),
        "covars": np.array([[1.0], [1.0]]),
    }
    in_memory = jaxem.fit(model, params0, x, lengths=lengths, max_iter=20, tol=0.0)
    chunks = [
        Batch(x[:4], lengths=lengths[:4]),
        Batch(x[4:, :40], lengths=lengths[4:]),
    ]
    streamed = jaxem.fit_chunked(model, params0, chunks, max_iter=20, tol=0.0)
    _assert_same_fit(in_memory, streamed)


def test_chunked_em_refuses_what_it_cannot_do():
    x = np.arange(20.0)

    def log_joint(params, x, z):
        return jnp.log(0.5) + jax_norm_logpdf(x, params["mu"][z])

    gradient_only = jaxem.LatentModel(log_joint, jaxem.Categorical(2))
    with pytest.raises(ValueError, match="ClosedForm"):
        jaxem.fit_chunked(gradient_only, {"mu": np.array([0.0, 1.0])}, x, chunk_rows=5)
    coins = jaxem.models.binomial_mixture(2, 10)
    p0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.6])}
    with pytest.raises(ValueError, match="chunk_rows"):
        jaxem.fit_chunked(coins, p0, x, chunk_rows=0)
    with pytest.raises(ValueError, match="chunk_rows"):
        jaxem.fit_chunked(coins, p0, x)
    with pytest.raises(ValueError, match="no chunk"):
        jaxem.fit_chunked(coins, p0, [])
    bad = x.copy()
    bad[13] = np.nan
    with pytest.raises(ValueError, match="chunks"):
        jaxem.fit_chunked(coins, p0, bad, chunk_rows=5)
    with pytest.raises(ValueError, match="trailing shapes"):
        jaxem.fit_chunked(coins, p0, [x[:10], x[10:].reshape(5, 2)])


def jax_norm_logpdf(x, mu):
    return -0.5 * (x - mu) ** 2 - 0.5 * jnp.log(2 * jnp.pi)


def _run(script, env=None, timeout=600):
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


EIGHT_DEVICES = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import re
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, jax.scipy.stats as st, numpy as np
    import jaxem

    assert len(jax.devices()) == 8, jax.devices()
    rng = np.random.default_rng(0)
    n = 1003  # not a multiple of 8
    z = rng.random(n) < 0.4
    x = np.where(z[:, None], rng.normal(-2, 1, (n, 3)), rng.normal(2, 0.7, (n, 3)))

    def same(a, b):
        np.testing.assert_allclose(a.history, b.history, rtol=1e-10)
        for key in a.params:
            np.testing.assert_allclose(a.params[key], b.params[key],
                                       rtol=1e-10, atol=1e-12)
        assert int(a.n_iter) == int(b.n_iter) and int(a.status) == int(b.status)

    def starts(k, kind):
        cov = {"full": np.stack([np.eye(3)] * k), "diag": np.ones((k, 3)),
               "spherical": np.ones(k), "tied": np.eye(3)}[kind]
        return {"weights": np.full(k, 1 / k), "means": x[:k].copy(),
                "covariances": cov}

    s = jaxem.shard(x)
    shard_rows = {sh.data.shape[0] for sh in s.data.addressable_shards}
    assert shard_rows == {126}, shard_rows  # 1008 / 8: no device holds all rows
    for kind in ("full", "diag", "spherical", "tied"):
        model = jaxem.models.gaussian_mixture(2, 3, kind)
        one = jaxem.fit(model, starts(2, kind), x, max_iter=15, tol=0.0)
        many = jaxem.fit(model, starts(2, kind), s.data, weights=s.weights,
                         max_iter=15, tol=0.0)
        same(one, many)

    # The compiled sharded fit never gathers the data onto one device: every
    # all-gather in its HLO moves fewer elements than the data has.
    model = jaxem.models.gaussian_mixture(2, 3, "full")
    lowered = jax.jit(
        lambda d, w: jaxem.fit(model, starts(2, "full"), d, weights=w,
                               max_iter=5, tol=0.0).params
    ).lower(s.data, s.weights).compile().as_text()
    for line in lowered.splitlines():
        if "all-gather(" in line:
            dims = re.search(r"\\[([0-9,]*)\\]", line.split("=", 1)[1]).group(1)
            size = int(np.prod([int(v) for v in dims.split(",") if v]))
            assert size < 1008 * 3, line

    # Ragged sequences (B = 13, not a multiple of 8).
    lengths = rng.integers(5, 30, 13)
    seq = rng.normal(size=(13, 30, 2)) + (np.arange(30) // 6 % 2)[None, :, None] * 2
    hmm = jaxem.models.gaussian_hmm(2, 2, "diag")
    p0 = {"startprob": np.array([0.5, 0.5]),
          "transmat": np.array([[0.8, 0.2], [0.2, 0.8]]),
          "means": np.array([[0.0, 0.0], [2.0, 2.0]]), "covars": np.ones((2, 2))}
    one = jaxem.fit(hmm, p0, seq, lengths=lengths, max_iter=10, tol=0.0)
    sh = jaxem.shard(seq, lengths=lengths)
    assert {a.data.shape[0] for a in sh.data.addressable_shards} == {2}
    many = jaxem.fit(hmm, p0, sh.data, lengths=sh.lengths, max_iter=10, tol=0.0)
    same(one, many)

    # A user-declared model fitted by the gradient M-step.
    def log_joint(params, x, z):
        return (jnp.log(params["weights"][z])
                + st.norm.logpdf(x, params["mu"][z], params["sigma"][z]).sum())
    user = jaxem.LatentModel(log_joint, jaxem.Categorical(2), constraints={
        "weights": jaxem.constraints.simplex, "sigma": jaxem.constraints.positive})
    q0 = {"weights": np.array([0.5, 0.5]), "mu": np.array([-1.0, 1.0]),
          "sigma": np.array([1.0, 1.0])}
    one = jaxem.fit(user, q0, x[:, 0], max_iter=8, tol=0.0)
    s1 = jaxem.shard(x[:, 0])
    many = jaxem.fit(user, q0, s1.data, weights=s1.weights, max_iter=8, tol=0.0)
    same(one, many)
    # Online EM over sharded data: the same steps as over the same (padded)
    # rows on one device.
    gm = jaxem.models.gaussian_mixture(2, 3, "diag")
    padded, w = np.asarray(s.data), np.asarray(s.weights)
    mb = dict(batch_size=144, num_epochs=2, key=jax.random.key(0))
    one = jaxem.fit_minibatch(gm, starts(2, "diag"), padded, weights=w, **mb)
    many = jaxem.fit_minibatch(gm, starts(2, "diag"), s.data, weights=s.weights, **mb)
    for key in one.params:
        np.testing.assert_allclose(one.params[key], many.params[key], rtol=1e-10)
    print("eight devices ok")
    """
)


def test_fits_sharded_over_eight_devices_equal_one_device():
    assert "eight devices ok" in _run(EIGHT_DEVICES)


WORKER = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    process_id, num_processes, port = (int(a) for a in sys.argv[1:4])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)
    import numpy as np
    import jaxem

    rng = np.random.default_rng(0)
    n = 801
    z = rng.random(n) < 0.4
    x = np.where(z[:, None], rng.normal(-2, 1, (n, 2)), rng.normal(2, 0.7, (n, 2)))
    lengths = rng.integers(5, 25, 9)
    seq = rng.normal(size=(9, 25, 1)) + (np.arange(25) // 5 % 2)[None, :, None] * 2
    mine = slice(process_id, None, num_processes)  # this process's rows

    gmm = jaxem.models.gaussian_mixture(2, 2, "full")
    g0 = {"weights": np.array([0.5, 0.5]), "means": x[:2].copy(),
          "covariances": np.stack([np.eye(2)] * 2)}
    s = jaxem.shard(x[mine])
    fit = jaxem.fit(gmm, g0, s.data, weights=s.weights, max_iter=20, tol=0.0)
    hmm = jaxem.models.gaussian_hmm(2, 1, "diag")
    h0 = {"startprob": np.array([0.5, 0.5]),
          "transmat": np.array([[0.8, 0.2], [0.2, 0.8]]),
          "means": np.array([[0.0], [2.0]]), "covars": np.ones((2, 1))}
    sh = jaxem.shard(seq[mine], lengths=lengths[mine])
    hfit = jaxem.fit(hmm, h0, sh.data, lengths=sh.lengths, max_iter=10, tol=0.0)
    if process_id == 0:
        np.savez(sys.argv[4], gmm_means=np.asarray(fit.params["means"]),
                 gmm_ll=np.asarray(fit.log_likelihood),
                 hmm_means=np.asarray(hfit.params["means"]),
                 hmm_ll=np.asarray(hfit.log_likelihood))
    jax.distributed.shutdown()
    """
)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_fit_the_data_split_between_them(tmp_path):
    port = _free_port()
    out = tmp_path / "fit.npz"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(i), "2", str(port), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-4000:]
    got = np.load(out)

    rng = np.random.default_rng(0)
    n = 801
    z = rng.random(n) < 0.4
    x = np.where(z[:, None], rng.normal(-2, 1, (n, 2)), rng.normal(2, 0.7, (n, 2)))
    lengths = rng.integers(5, 25, 9)
    seq = rng.normal(size=(9, 25, 1)) + (np.arange(25) // 5 % 2)[None, :, None] * 2
    gmm = jaxem.models.gaussian_mixture(2, 2, "full")
    g0 = {
        "weights": np.array([0.5, 0.5]),
        "means": x[:2].copy(),
        "covariances": np.stack([np.eye(2)] * 2),
    }
    fit = jaxem.fit(gmm, g0, x, max_iter=20, tol=0.0)
    np.testing.assert_allclose(got["gmm_means"], fit.params["means"], rtol=1e-10)
    np.testing.assert_allclose(got["gmm_ll"], fit.log_likelihood, rtol=1e-10)
    hmm = jaxem.models.gaussian_hmm(2, 1, "diag")
    h0 = {
        "startprob": np.array([0.5, 0.5]),
        "transmat": np.array([[0.8, 0.2], [0.2, 0.8]]),
        "means": np.array([[0.0], [2.0]]),
        "covars": np.ones((2, 1)),
    }
    hfit = jaxem.fit(hmm, h0, seq, lengths=lengths, max_iter=10, tol=0.0)
    np.testing.assert_allclose(got["hmm_means"], hfit.params["means"], rtol=1e-10)
    np.testing.assert_allclose(got["hmm_ll"], hfit.log_likelihood, rtol=1e-10)


def test_online_em_over_npy_files_equals_online_updates_in_memory(tmp_path):
    x = _blobs(n=4000, d=2, seed=4)
    paths, parts = [], []
    for i, start in enumerate(range(0, 4000, 900)):  # ragged last file
        parts.append(x[start : start + 900])
        paths.append(str(tmp_path / f"part{i}.npy"))
        np.save(paths[-1], parts[-1])
    model = jaxem.models.gaussian_mixture(2, 2, "full")
    params0 = _gmm_start(x, 2, "full")
    params0["means"] = np.array([[-1.0, -1.0], [1.0, 1.0]])
    online = jaxem.fit_online(model, params0, paths, num_epochs=2)
    # The same stepwise EM, unpadded, one compiled update per chunk size.
    state = jaxem.online_init(model, jax.tree.map(jnp.asarray, params0), parts[0])
    lls = []
    for _ in range(2):
        for part in parts:
            state, ll = jaxem.online_update(model, state, part)
            lls.append(float(ll))
    np.testing.assert_allclose(online.batch_log_likelihoods, lls, rtol=1e-10)
    for key in params0:
        np.testing.assert_allclose(
            online.state.params[key], state.params[key], rtol=1e-10, atol=1e-12
        )
    exact = jaxem.fit_chunked(model, params0, paths, max_iter=200)
    gap = float(exact.log_likelihood) - float(
        jaxem.log_likelihood(model, online.state.params, x)
    )
    assert 0 <= gap / 4000 < 0.02  # nats per observation after 10 steps
    with pytest.raises(ValueError, match="num_epochs"):
        jaxem.fit_online(model, params0, x, chunk_rows=100, num_epochs=0)


ESTIMATORS_ON_EIGHT_DEVICES = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import warnings
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from sklearn.base import clone
    import jaxem
    from jaxem.estimators import _devices

    warnings.simplefilter("ignore")  # short fits: not-converged warnings
    seen = []  # rows per device of every sharded fit
    for name in ("shard_observations", "shard_sequences"):
        def spy(*args, _f=getattr(_devices, name)):
            out = _f(*args)
            seen.append({s.data.shape[0] for s in out[0].addressable_shards})
            return out
        setattr(_devices, name, spy)

    def same(a, b, names):
        for attr in names:
            np.testing.assert_allclose(getattr(a, attr), getattr(b, attr),
                                       rtol=1e-10, atol=1e-12, err_msg=attr)

    rng = np.random.default_rng(0)
    n = 1003  # not a multiple of 8
    z = rng.random(n) < 0.4
    x = np.where(z[:, None], rng.normal(-2, 1, (n, 3)), rng.normal(2, 0.7, (n, 3)))
    w = rng.integers(0, 3, n).astype(float)
    for kind in ("full", "diag", "spherical", "tied"):
        kw = dict(n_components=2, covariance_type=kind, random_state=0, tol=0,
                  max_iter=12, n_init=2)
        one = jaxem.GaussianMixture(**kw).fit(x, sample_weight=w)
        many = jaxem.GaussianMixture(**kw, devices=8).fit(x, sample_weight=w)
        same(one, many, ["weights_", "means_", "covariances_", "lower_bounds_"])
    assert seen[-1] == {1024 // 8}, seen  # each device holds 1/8 of the rows
    heads = rng.binomial(10, np.where(rng.random(n) < 0.3, 0.2, 0.7))[:, None]
    kw = dict(n_components=2, n_trials=10, random_state=0, tol=0, max_iter=10)
    one = jaxem.BinomialMixture(**kw).fit(heads)
    many = jaxem.BinomialMixture(**kw, devices="all").fit(heads)
    same(one, many, ["weights_", "p_", "lower_bounds_"])

    # HMMs over 13 ragged sequences (not a multiple of the 4 devices used).
    lengths = rng.integers(5, 40, 13)
    states = (np.arange(lengths.sum()) // 7) % 2
    X = rng.normal(size=(lengths.sum(), 2)) + 3 * states[:, None]
    counts = rng.poisson(np.where(states[:, None] == 1, 6.0, 1.0), (len(X), 2))
    symbols = np.minimum(counts[:, :1], 5)
    devices = jax.devices()[2:6]
    for cls, data, names in (
        (jaxem.GaussianHMM, X, ["means_", "covars_"]),
        (jaxem.PoissonHMM, counts, ["lambdas_"]),
        (jaxem.CategoricalHMM, symbols, ["emissionprob_"]),
    ):
        kw = dict(n_components=2, n_iter=8, tol=-1, random_state=0)
        one = cls(**kw).fit(data, lengths)
        many = cls(**kw, devices=devices).fit(data, lengths)
        same(one, many, ["startprob_", "transmat_"] + names)
        np.testing.assert_allclose(one.monitor_.history, many.monitor_.history,
                                   rtol=1e-10)
        assert len(seen[-1]) == 1, seen[-1]
    # Partial state labels and component labels shard with the data.
    states = np.where(rng.random(len(X)) < 0.2, states, -1)
    kw = dict(n_components=2, n_iter=8, tol=-1, random_state=0)
    one = jaxem.GaussianHMM(**kw).fit(X, lengths, states=states)
    many = jaxem.GaussianHMM(**kw, devices=4).fit(X, lengths, states=states)
    same(one, many, ["startprob_", "transmat_", "means_", "covars_"])
    np.testing.assert_allclose(one.monitor_.history, many.monitor_.history,
                               rtol=1e-10)
    free = jaxem.GaussianHMM(**kw, devices=4).fit(X, lengths)
    assert not np.allclose(free.monitor_.history, many.monitor_.history)
    y = np.where(rng.random(n) < 0.1, z.astype(int), -1)
    kw = dict(n_components=2, random_state=0, tol=0, max_iter=12,
              semi_supervised=True)
    one = jaxem.GaussianMixture(**kw).fit(x, y)
    many = jaxem.GaussianMixture(**kw, devices=8).fit(x, y)
    same(one, many, ["weights_", "means_", "covariances_", "lower_bounds_"])

    # Device ids, a count, "all" and device objects survive scikit-learn's
    # clone (devices themselves cannot be copied: the clone shares them).
    for value in (4, "all", [1, 3], (0,)):
        est = jaxem.GaussianHMM(2, devices=value)
        assert clone(est).get_params()["devices"] == value
    objects = jax.devices()[:2]
    for est in (jaxem.GaussianMixture(2, devices=objects),
                jaxem.PoissonHMM(2, devices=tuple(objects))):
        twin = clone(est)
        assert list(twin.devices) == objects
        assert type(twin.devices) is type(est.devices)
    # Streamed fits spread every chunk over the devices.
    from jaxem import _chunked
    spread = []
    def spy_spread(arrays, devs, _f=_chunked._spread):
        out = _f(arrays, devs)
        spread.append(len(out[0].sharding.device_set))
        return out
    _chunked._spread = spy_spread
    kw = dict(n_components=2, covariance_type="full", random_state=0, tol=0,
              max_iter=12, chunk_rows=300)
    one = jaxem.GaussianMixture(**kw).fit(x, sample_weight=w)
    many = jaxem.GaussianMixture(**kw, devices=8).fit(x, sample_weight=w)
    same(one, many, ["weights_", "means_", "covariances_", "lower_bounds_"])
    assert spread and set(spread) == {8}, spread
    kw = dict(kw, semi_supervised=True)  # labels stream with their rows
    one = jaxem.GaussianMixture(**kw).fit(x, y)
    many = jaxem.GaussianMixture(**kw, devices=8).fit(x, y)
    same(one, many, ["weights_", "means_", "covariances_", "lower_bounds_"])
    spread.clear()
    kw = dict(n_components=2, n_iter=8, tol=-1, random_state=0, chunk_rows=60)
    one = jaxem.GaussianHMM(**kw).fit(X, lengths)
    many = jaxem.GaussianHMM(**kw, devices=4).fit(X, lengths)
    same(one, many, ["startprob_", "transmat_", "means_", "covars_"])
    assert spread and set(spread) == {4}, spread
    model = jaxem.models.gaussian_hmm(2, 2, "full")
    p0 = {"startprob": np.array([0.6, 0.4]),
          "transmat": np.array([[0.8, 0.2], [0.3, 0.7]]),
          "means": np.array([[0.0, 0.0], [3.0, 3.0]]),
          "covars": np.stack([np.eye(2)] * 2)}
    ends = np.cumsum(lengths)
    def batches():  # 13 ragged sequences in chunks of 5, 5 and 3
        for first in range(0, 13, 5):
            part = lengths[first:first + 5]
            rows = X[ends[first] - lengths[first]:ends[first] - lengths[first]
                     + part.sum()]
            padded = np.zeros((len(part), part.max(), 2))
            padded[np.arange(part.max())[None] < part[:, None]] = rows
            yield _chunked.Batch(padded, None, part)
    plain = jaxem.fit_chunked(model, p0, batches, max_iter=6, tol=0.0)
    spread.clear()
    spread_fit = jaxem.fit_chunked(model, p0, batches, max_iter=6, tol=0.0,
                                   devices=jax.devices()[:3])
    assert set(spread) == {3}, spread
    np.testing.assert_allclose(plain.history, spread_fit.history, rtol=1e-10)
    for key in p0:
        np.testing.assert_allclose(plain.params[key], spread_fit.params[key],
                                   rtol=1e-10, atol=1e-12)
    for bad in (jax.devices()[0], [], [jax.devices()[0]] * 2, ["cpu"]):
        try:
            jaxem.fit_chunked(model, p0, batches, max_iter=1, devices=bad)
        except ValueError as err:
            assert str(err).startswith("devices"), err
        else:
            raise AssertionError(bad)
    from sklearn.model_selection import cross_val_score
    scores = cross_val_score(
        jaxem.GaussianMixture(2, max_iter=5, tol=0, devices=objects), x, cv=2)
    assert np.isfinite(scores).all()
    for bad in (9, [99], [], [0, 0]):
        try:
            jaxem.GaussianMixture(2, devices=bad).fit(x)
        except ValueError as err:
            assert "devices" in str(err), err
        else:
            raise AssertionError(bad)
    print("estimators ok")
    """
)


def test_estimators_with_devices_equal_one_device():
    assert "estimators ok" in _run(ESTIMATORS_ON_EIGHT_DEVICES)


def test_gaussian_mixture_streams_a_memory_map_without_loading_it(
    tmp_path, monkeypatch, reads
):
    import tracemalloc

    from jaxem.estimators import _streaming

    x = _blobs(n=200_003, d=8, seed=5)
    w = np.random.default_rng(6).integers(0, 3, len(x)).astype(float)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(
        n_components=2,
        weights_init=[0.5, 0.5],
        means_init=x[:2],
        precisions_init=np.stack([np.eye(8)] * 2),
        max_iter=200,
        tol=1e-8,
    )
    in_memory = jaxem.GaussianMixture(**kw).fit(x, sample_weight=w)
    streamed = jaxem.GaussianMixture(**kw, chunk_rows=10_000)
    streamed.fit(mapped, sample_weight=w)  # compiles
    tracemalloc.start()
    streamed.fit(mapped, sample_weight=w)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        np.testing.assert_allclose(
            getattr(streamed, name), getattr(in_memory, name), rtol=1e-10
        )
    assert streamed.n_iter_ == in_memory.n_iter_ and streamed.converged_
    assert not streamed.collapsed_.any()
    # Every read is one chunk, by a plain read of the file; the fit's host
    # memory peak (a few chunks in flight, their padded copies, the weights)
    # stays well under the array: 12.8 MB, a chunk 0.64 MB, the weights 1.6 MB.
    assert max(rows for rows, _ in reads) == 10_000
    assert all(plain for _, plain in reads)
    assert sum(rows for rows, _ in reads) >= 2 * len(x) * streamed.n_iter_
    assert peak < x.nbytes / 2, peak

    # A memory map over STREAM_BYTES streams without chunk_rows.
    monkeypatch.setattr(_streaming, "STREAM_BYTES", 1 << 20)
    reads.clear()
    auto = jaxem.GaussianMixture(**kw).fit(mapped, sample_weight=w)
    assert reads and max(rows for rows, _ in reads) == _streaming.DEFAULT_CHUNK_ROWS
    np.testing.assert_allclose(auto.means_, in_memory.means_, rtol=1e-10)
    with pytest.raises(ValueError, match="devices"):
        jaxem.GaussianMixture(2, chunk_rows=100, devices=99).fit(mapped)
    with pytest.raises(ValueError, match="^accelerate: a streamed fit"):
        jaxem.GaussianMixture(2, chunk_rows=100, accelerate="squarem").fit(mapped)
    with pytest.raises(ValueError, match="chunk_rows"):
        jaxem.GaussianMixture(2, chunk_rows=0).fit(mapped)


def test_gaussian_mixture_scores_and_predicts_a_streamed_x_in_chunks(tmp_path, reads):
    x = _blobs(n=5003, d=3, seed=7)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    streamed = jaxem.GaussianMixture(2, chunk_rows=700, random_state=0).fit(mapped)
    reads.clear()
    methods = ("score_samples", "score", "predict_proba", "predict", "bic")
    chunked = {m: getattr(streamed, m)(mapped) for m in methods}
    rows = [r for r, _ in reads]
    assert rows and max(rows) == 700 and sum(rows) >= 5 * len(x)
    whole = streamed.set_params(chunk_rows=None)  # the same model, X in memory
    for method in methods:
        np.testing.assert_allclose(
            chunked[method], getattr(whole, method)(x), rtol=1e-10, err_msg=method
        )
    # BinomialMixture has no chunk_rows: a (small) memory map scores in memory.
    heads = np.random.default_rng(0).binomial(10, 0.3, (50, 1))
    np.save(tmp_path / "heads.npy", heads)
    coins = jaxem.BinomialMixture(2, n_trials=10, random_state=0).fit(heads)
    mapped_heads = np.load(tmp_path / "heads.npy", mmap_mode="r")
    np.testing.assert_array_equal(coins.predict(mapped_heads), coins.predict(heads))


def test_indexed_rows_of_a_memory_map_are_read_not_mapped(tmp_path):
    from jaxem import _chunk_sources

    x = _blobs(n=2000, d=3, seed=8)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    index = np.unique(np.linspace(0, 1999, 300).astype(np.int64))
    got = _chunk_sources.read_indexed_rows(mapped, index)
    np.testing.assert_array_equal(got, x[index])
    assert not isinstance(got, np.memmap) and got.ctypes.data % 64 == 0
    np.testing.assert_array_equal(_chunk_sources.read_indexed_rows(x, index), x[index])
