"""Exact streamed EM split between processes of ``jax.distributed``.

Two processes on 127.0.0.1 (JAX's CPU collectives, as in
``test_scale.test_two_processes_fit_the_data_split_between_them``) each stream
their own, uneven share of the data through ``fit_chunked(...,
across_processes=True)``; the command line runs ``--chunk-rows`` with
``--coordinator`` at the same time. Both are compared with one process.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxem
from jaxem import cli
from jaxem.estimators import _streaming

ROOT = pathlib.Path(__file__).resolve().parents[1]
N, SPLIT = 1003, 430  # process 0 streams rows [0, 430), process 1 the rest
SEQ_SPLIT = 4  # process 0 streams sequences [0, 4), process 1 the other 7


def _data(folder):
    rng = np.random.default_rng(0)
    z = rng.random(N) < 0.4
    x = np.where(z[:, None], rng.normal(-2, 1, (N, 2)), rng.normal(2, 0.7, (N, 2)))
    lengths = rng.integers(5, 30, 11)
    seq = rng.normal(size=(11, 30, 1)) + (np.arange(30) // 6 % 2)[None, :, None] * 2
    np.save(folder / "x.npy", x)
    np.save(folder / "seq.npy", seq)
    np.save(folder / "lengths.npy", lengths)
    return x, seq, lengths


# Shared by the workers and the test: the models and their starts.
MODELS = textwrap.dedent(
    """
    import numpy as np
    import jaxem

    def gmm(x):
        model = jaxem.models.gaussian_mixture(2, 2, "full")
        return model, {"weights": np.array([0.5, 0.5]), "means": x[:2].copy(),
                       "covariances": np.stack([np.eye(2)] * 2)}

    def hmm():
        # A transition prior: the log-prior counts once, not once per process.
        model = jaxem.models.gaussian_hmm(2, 1, "diag", transmat_prior=2.0)
        return model, {"startprob": np.array([0.5, 0.5]),
                       "transmat": np.array([[0.8, 0.2], [0.2, 0.8]]),
                       "means": np.array([[0.0], [2.0]]), "covars": np.ones((2, 1))}
    """
)
_models: dict = {}
exec(MODELS, _models)
gmm, hmm = _models["gmm"], _models["hmm"]

WORKER = MODELS + textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    folder, process_id, port, split, seq_split = sys.argv[1:6]
    process_id, split, seq_split = int(process_id), int(split), int(seq_split)
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, process_id)
    from jaxem import Batch

    x = np.load(f"{folder}/x.npy", mmap_mode="r")
    rows = slice(0, split) if process_id == 0 else slice(split, None)
    model, g0 = gmm(np.asarray(x[:2]))
    g = jaxem.fit_chunked(model, g0, x[rows], chunk_rows=170, max_iter=100,
                          tol=1e-9, across_processes=True)

    seq = np.load(f"{folder}/seq.npy")
    lengths = np.load(f"{folder}/lengths.npy")
    mine = slice(0, seq_split) if process_id == 0 else slice(seq_split, None)
    seq, lengths = seq[mine], lengths[mine]
    chunks = [Batch(seq[i : i + 3], None, lengths[i : i + 3])
              for i in range(0, len(seq), 3)]
    model, h0 = hmm()
    h = jaxem.fit_chunked(model, h0, chunks, max_iter=12, tol=0.0,
                          across_processes=True)
    # A bad chunk in process 1 (in the first pass), then different starts:
    # a ValueError in both processes, neither left waiting for the other.
    coins = jaxem.models.binomial_mixture(2, 10)
    p0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.6])}
    heads = np.arange(10.0)
    bad = heads.copy()
    bad[7] = np.nan if process_id == 1 else 7.0
    errors = []
    for start, data in ((p0, bad), ({**p0, "p": p0["p"] + 0.1 * process_id}, heads)):
        try:
            jaxem.fit_chunked(coins, start, data, chunk_rows=4, across_processes=True)
        except ValueError as err:
            errors.append(str(err))
    out = {"errors": np.array(errors)}
    # The HMM estimator, streamed with devices="all": every process passes
    # the same whole X and streams its own share of the sequences.
    seq, lengths = np.load(f"{folder}/seq.npy"), np.load(f"{folder}/lengths.npy")
    X = np.concatenate([s[:n] for s, n in zip(seq, lengths)])
    est = jaxem.GaussianHMM(2, n_iter=8, tol=-1, random_state=0, chunk_rows=40,
                            devices="all").fit(X, lengths)
    for attr in ("startprob_", "transmat_", "means_", "covars_"):
        out[f"estimator.{attr}"] = getattr(est, attr)
    out["estimator.history"] = np.array(est.monitor_.history)
    for name, fit in (("gmm", g), ("hmm", h)):
        for field in ("log_likelihood", "history", "n_iter", "status", "log_prior"):
            if getattr(fit, field) is not None:
                out[f"{name}.{field}"] = np.asarray(getattr(fit, field))
        for key, value in fit.params.items():
            out[f"{name}.params.{key}"] = np.asarray(value)
    np.savez(f"{folder}/fit{process_id}.npz", **out)
    jax.distributed.shutdown()
    """
)


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(*argv):
    return subprocess.Popen(
        [sys.executable, *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _same(a, b, rtol=1e-10):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-12)


def test_two_processes_stream_their_own_rows_and_equal_one_process(tmp_path, capsys):
    x, seq, lengths = _data(tmp_path)
    ports = _free_port(), _free_port()
    workers = [
        _start("-c", WORKER, tmp_path, i, ports[0], SPLIT, SEQ_SPLIT) for i in (0, 1)
    ]
    common = ["fit", "gmm", tmp_path / "x.npy", "--chunk-rows", 150, "--tol", 0]
    common += ["--max-iter", 15, "--seed", 3]
    commands = [
        _start(
            "-W",
            "error",
            "-m",
            "jaxem",
            *common,
            "--coordinator",
            f"127.0.0.1:{ports[1]}",
            "--num-processes",
            2,
            "--process-id",
            i,
            "--out",
            tmp_path / f"m{i}.npz",
        )
        for i in (0, 1)
    ]
    # While they run: the single-process fits they are compared with.
    model, g0 = gmm(x)
    gmm_fit = jaxem.fit(model, g0, x, max_iter=100, tol=1e-9)
    model, h0 = hmm()
    hmm_fit = jaxem.fit(model, h0, seq, lengths=lengths, max_iter=12, tol=0.0)
    one_args = [*common, "--out", tmp_path / "one.npz"]
    assert cli.main([str(a) for a in one_args]) == 0
    one_out = capsys.readouterr().out
    outs = [p.communicate(timeout=600) for p in [*workers, *commands]]
    for p, (_, err) in zip([*workers, *commands], outs, strict=True):
        assert p.returncode == 0, err[-4000:]

    # fit_chunked: both processes hold the same result, the in-memory fit's.
    fits = [np.load(tmp_path / f"fit{i}.npz") for i in (0, 1)]
    errors = [list(f["errors"]) for f in fits]
    assert len(errors[0]) == len(errors[1]) == 2, errors
    assert errors[0][0].startswith("chunks: the fit failed in process(es) [1]")
    assert errors[1][0].startswith("chunks: ") and "finite" in errors[1][0], errors
    assert all(e[1].startswith("params0: differs between processes") for e in errors)
    assert set(fits[0]) == set(fits[1])
    for key in set(fits[0]) - {"errors"}:
        np.testing.assert_array_equal(fits[0][key], fits[1][key], err_msg=key)
    got = fits[0]
    for name, fit in (("gmm", gmm_fit), ("hmm", hmm_fit)):
        assert int(got[f"{name}.n_iter"]) == int(fit.n_iter)
        assert int(got[f"{name}.status"]) == int(fit.status)
        _same(got[f"{name}.history"], fit.history)
        _same(got[f"{name}.log_likelihood"], fit.log_likelihood)
        for key, value in fit.params.items():
            _same(got[f"{name}.params.{key}"], value)
    assert bool(gmm_fit.converged)  # the stopping rule agreed in both processes
    X = np.concatenate([s[:n] for s, n in zip(seq, lengths, strict=True)])
    est = jaxem.GaussianHMM(2, n_iter=8, tol=-1, random_state=0, chunk_rows=40)
    est.fit(X, lengths)
    for attr in ("startprob_", "transmat_", "means_", "covars_"):
        _same(got[f"estimator.{attr}"], getattr(est, attr))
    _same(got["estimator.history"], est.monitor_.history)
    _same(got["hmm.log_prior"], hmm_fit.log_prior)

    # The command line: process 0 prints and writes the one-process model.
    assert "split between 2 processes" in outs[2][0]
    assert "Gaussian mixture" not in outs[3][0]
    assert not (tmp_path / "m1.npz").exists()
    line = [s for s in one_out.splitlines() if "log-likelihood" in s]
    assert line and line[0].rsplit(" | ", 1)[0] in outs[2][0]  # but the time
    two, one = jaxem.load(tmp_path / "m0.npz"), jaxem.load(tmp_path / "one.npz")
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        _same(getattr(two, name), getattr(one, name))


def test_across_processes_is_validated_and_a_no_op_in_one_process():
    coins = jaxem.models.binomial_mixture(2, 10)
    p0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.6])}
    heads = np.array([5.0, 9.0, 8.0, 4.0, 7.0, 1.0, 2.0])
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="across_processes"):
            jaxem.fit_chunked(coins, p0, heads, chunk_rows=3, across_processes=bad)
    alone = jaxem.fit_chunked(coins, p0, heads, chunk_rows=3, across_processes=True)
    plain = jaxem.fit_chunked(coins, p0, heads, chunk_rows=3)
    np.testing.assert_array_equal(alone.history, plain.history)
    np.testing.assert_array_equal(alone.params["p"], plain.params["p"])


def test_streaming_with_devices_in_one_process_uses_those_devices(tmp_path):
    assert jax.process_count() == 1
    x = np.random.default_rng(0).normal(size=(50, 2))
    kw = dict(n_components=2, chunk_rows=10, max_iter=200, random_state=0)
    plain = jaxem.GaussianMixture(**kw).fit(x)
    for devices in ("all", 1, [jax.devices()[0]]):
        placed = jaxem.GaussianMixture(**kw, devices=devices).fit(x)
        np.testing.assert_allclose(placed.means_, plain.means_, rtol=1e-12)
    assert _streaming.streams(jaxem.GaussianMixture(2, chunk_rows=10), x)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--predict", "p.csv"], "cannot be combined with --predict"),
        (["--num-processes", "2"], "only with --coordinator"),
        (["--coordinator", "127.0.0.1:1"], "--num-processes and --process-id"),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "2"]
            + ["--process-id", "2"],
            "--process-id 2",
        ),
    ],
)
def test_chunk_rows_with_coordinator_refusals_that_remain(
    capsys, tmp_path, extra, message
):
    np.save(tmp_path / "x.npy", np.zeros((20, 2)))
    argv = ["fit", "gmm", tmp_path / "x.npy", "--chunk-rows", 10, *extra]
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
