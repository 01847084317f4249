"""The HMM estimators stream a memory-mapped X: exact EM in chunks of sequences.

Every streamed fit here reads a ``.npy`` memory map in chunks of whole
sequences (ragged, ``chunk_rows`` smaller than X and not dividing it, one
sequence longer than ``chunk_rows``) and is compared with the in-memory fit
from the same explicit start (``init_params=""``, attributes set).
"""

import jax
import numpy as np
import pytest

import jaxem
from jaxem import _chunked
from jaxem.estimators import _hmm_base, _hmm_streaming, _streaming

# Short sequences (at most 4 in a chunk of 45 samples: one padded shape) and
# one of 50 samples, longer than a chunk: two compiled shapes in all.
LENGTHS = np.array([12, 15, 9, 14, 50, 11, 16, 13, 10, 15, 8, 14, 12])
CHUNK_ROWS = 45
START = {
    "startprob_": np.array([0.6, 0.4]),
    "transmat_": np.array([[0.85, 0.15], [0.2, 0.8]]),
}


def _states(n, seed):
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.random(n) < 0.15) % 2).astype(int)


def _gaussian(n, seed=0):
    z = _states(n, seed)
    rng = np.random.default_rng(seed + 1)
    return rng.normal(np.where(z == 1, 2.5, 0.0)[:, None], 1.0, (n, 2))


def _poisson(n, seed=0):
    z = _states(n, seed)
    return np.random.default_rng(seed + 1).poisson(np.where(z == 1, 6.0, 1.5)[:, None])


def _categorical(n, seed=0):
    z = _states(n, seed)
    rng = np.random.default_rng(seed + 1)
    p = np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6]])
    return np.array([rng.choice(3, p=p[s]) for s in z])[:, None]


CASES = {
    "GaussianHMM": (
        jaxem.GaussianHMM,
        _gaussian,
        {"means_": np.array([[0.5, 0.0], [2.0, 2.0]]), "covars_": np.ones((2, 2))},
        ("means_", "covars_"),
        1e-4,
    ),
    "CategoricalHMM": (
        jaxem.CategoricalHMM,
        _categorical,
        {"emissionprob_": np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])},
        ("emissionprob_",),
        5e-2,  # slower: stop after about a dozen iterations
    ),
    "PoissonHMM": (
        jaxem.PoissonHMM,
        _poisson,
        {"lambdas_": np.array([[1.0], [4.0]])},
        ("lambdas_",),
        1e-4,
    ),
}


def _started(cls, emissions, **kw):
    est = cls(2, init_params="", **kw)
    for name, value in {**START, **emissions}.items():
        setattr(est, name, value.copy())
    return est


def _mapped(tmp_path, x, name="x.npy"):
    np.save(tmp_path / name, x)
    return np.load(tmp_path / name, mmap_mode="r")


@pytest.mark.parametrize("name", CASES)
def test_streamed_fit_equals_the_in_memory_fit(name, tmp_path, reads):
    cls, make, emissions, attributes, tol = CASES[name]
    x = make(LENGTHS.sum())
    kw = dict(n_iter=30, tol=tol)
    in_memory = _started(cls, emissions, **kw).fit(x, LENGTHS)
    streamed = _started(cls, emissions, chunk_rows=CHUNK_ROWS, **kw)
    streamed.fit(_mapped(tmp_path, x), LENGTHS)
    for attribute in ("startprob_", "transmat_") + attributes:
        np.testing.assert_allclose(
            getattr(streamed, attribute),
            getattr(in_memory, attribute),
            rtol=1e-10,
            atol=1e-12,
        )
    history = np.array(streamed.monitor_.history)
    np.testing.assert_allclose(history, in_memory.monitor_.history, rtol=1e-10)
    assert streamed.monitor_.iter == in_memory.monitor_.iter
    assert 2 < streamed.monitor_.iter < kw["n_iter"]  # stopped by tol
    assert streamed.monitor_.converged and in_memory.monitor_.converged
    assert streamed.fit_status_ == in_memory.fit_status_
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    assert streamed.unvisited_states_.tolist() == in_memory.unvisited_states_.tolist()
    # X is read a chunk at a time from the file, never whole: at most
    # CHUNK_ROWS samples a read, but for the one longer sequence.
    assert reads and all(plain for _, plain in reads)
    sizes = {rows for rows, _ in reads}
    assert max(sizes - {LENGTHS.max()}) <= CHUNK_ROWS < LENGTHS.max() < len(x)
    assert sum(rows for rows, _ in reads) >= (streamed.monitor_.iter + 1) * len(x)
    assert streamed.score(x, LENGTHS) == pytest.approx(in_memory.score(x, LENGTHS))


def test_float32_memory_map_stays_float32_and_frozen_letters_stay(tmp_path):
    cls, make, emissions, *_ = CASES["GaussianHMM"]
    x = make(LENGTHS.sum()).astype(np.float32)
    hmm = _started(cls, emissions, params="st", n_iter=5, chunk_rows=CHUNK_ROWS)
    hmm.fit(_mapped(tmp_path, x), LENGTHS)
    assert hmm.transmat_.dtype == hmm.means_.dtype == np.float32
    np.testing.assert_array_equal(hmm.means_, emissions["means_"].astype(np.float32))
    np.testing.assert_array_equal(
        np.diagonal(hmm.covars_, axis1=1, axis2=2), emissions["covars_"]
    )
    assert not np.allclose(hmm.transmat_, START["transmat_"])
    history = np.array(hmm.monitor_.history)
    assert np.all(np.diff(history) >= -1e-4 * np.abs(history[1:]))


def test_drawn_initialisation_streams_and_counts_symbols_over_all_of_x(tmp_path):
    x = _categorical(LENGTHS.sum()) % 2
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)])
    pieces = _hmm_streaming._sample_pieces(LENGTHS, offsets, CHUNK_ROWS)
    sampled = np.zeros(len(x), bool)
    for start, stop in pieces:
        sampled[start:stop] = True
    x[np.flatnonzero(~sampled)[0]] = 2  # the largest symbol, outside the sample
    hmm = jaxem.CategoricalHMM(2, n_iter=5, random_state=0, chunk_rows=CHUNK_ROWS)
    hmm.fit(_mapped(tmp_path, x), LENGTHS)
    assert hmm.n_features_ == x.max() + 1 == 3  # as in memory
    assert hmm.emissionprob_.shape == (2, 3)
    history = np.array(hmm.monitor_.history)
    assert len(history) == 5 and np.all(np.isfinite(history))
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))


def test_second_fit_of_another_length_compiles_nothing(tmp_path):
    cls, make, emissions, *_ = CASES["PoissonHMM"]
    x = make(LENGTHS.sum())
    hmm = _started(cls, emissions, n_iter=3, chunk_rows=CHUNK_ROWS)
    hmm.fit(_mapped(tmp_path, x), LENGTHS)
    programs = [_chunked._chunk_pass, _chunked._update, _hmm_streaming._occupancy]
    before = [f._cache_size() for f in programs]
    assert min(before) > 0
    fewer = LENGTHS[:-2]
    again = _started(cls, emissions, n_iter=3, chunk_rows=CHUNK_ROWS)
    again.fit(_mapped(tmp_path, x[: fewer.sum()], "y.npy"), fewer)
    assert [f._cache_size() for f in programs] == before


def test_a_large_memory_map_streams_without_chunk_rows(tmp_path, reads, monkeypatch):
    cls, make, emissions, *_ = CASES["PoissonHMM"]
    x = make(LENGTHS.sum())
    mapped = _mapped(tmp_path, x)
    monkeypatch.setattr(_streaming, "STREAM_BYTES", mapped.nbytes - 1)
    monkeypatch.setattr(_streaming, "DEFAULT_CHUNK_ROWS", CHUNK_ROWS)
    streamed = _started(cls, emissions, n_iter=3).fit(mapped, LENGTHS)
    assert reads and max({r for r, _ in reads} - {LENGTHS.max()}) <= CHUNK_ROWS
    in_memory = _started(cls, emissions, n_iter=3).fit(x, LENGTHS)
    np.testing.assert_allclose(streamed.lambdas_, in_memory.lambdas_, rtol=1e-10)


@pytest.mark.parametrize(
    "kw, fit_kw, match",
    [
        ({"devices": 99}, {}, "devices: asked for 99"),
        ({"accelerate": "squarem"}, {}, "accelerate: a streamed fit"),
        ({}, {"states": np.full(LENGTHS.sum(), 2)}, "states: labels must be in"),
        ({}, {"lengths": LENGTHS[:-1]}, "lengths: sum to"),
        ({"chunk_rows": 0}, {}, "chunk_rows"),
        ({"chunk_rows": 2.5}, {}, "chunk_rows"),
    ],
)
def test_streaming_refuses_before_compiling(tmp_path, monkeypatch, kw, fit_kw, match):
    def tripwire(*args, **kwargs):
        raise AssertionError("a refused fit reached the compiled code")

    monkeypatch.setattr(_chunked, "fit_chunked", tripwire)
    monkeypatch.setattr(_hmm_base, "_draw_initial", tripwire)
    mapped = _mapped(tmp_path, _gaussian(LENGTHS.sum()))
    hmm = jaxem.GaussianHMM(2, **{"chunk_rows": CHUNK_ROWS, **kw})
    with pytest.raises(ValueError, match=match):
        hmm.fit(mapped, **{"lengths": LENGTHS, **fit_kw})


def test_chunks_are_whole_sequences_within_a_span():
    bounds = _hmm_streaming.chunk_bounds(LENGTHS, CHUNK_ROWS)
    sizes = np.add.reduceat(LENGTHS, bounds[:-1])
    assert bounds[0] == 0 and bounds[-1] == len(LENGTHS)
    assert np.all((sizes <= CHUNK_ROWS) | (np.diff(bounds) == 1))
    x = np.arange(LENGTHS.sum(), dtype=float)[:, None]
    hmm = jaxem.GaussianHMM(2)
    hmm._validate_X(x, reset=True)
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)])
    span = (int(offsets[3]), int(offsets[9]))
    source = _hmm_streaming.SequenceChunks(hmm, x, LENGTHS, CHUNK_ROWS, span)
    rows = [source.read(i)[0][:, 0] for i in range(len(source.bounds) - 1)]
    np.testing.assert_array_equal(np.concatenate(rows), np.arange(*span))
    with pytest.raises(ValueError, match="span"):
        _hmm_streaming.SequenceChunks(hmm, x, LENGTHS, CHUNK_ROWS, (1, 20))


def test_process_shares_are_whole_sequences_and_never_empty(monkeypatch):
    offsets = np.concatenate([[0], np.cumsum([5, 9, 3, 7, 4])])

    def shares(p):
        monkeypatch.setattr(jax, "process_count", lambda: p)
        out = []
        for i in range(p):
            monkeypatch.setattr(jax, "process_index", lambda i=i: i)
            out.append(_hmm_streaming._share(offsets))
        return out

    for p in (1, 2, 3, 5):
        spans = shares(p)
        starts = [a for a, _ in spans]
        assert spans[0][0] == 0 and spans[-1][1] == offsets[-1]
        assert all(a < b for a, b in spans)  # none empty
        tiled = zip(spans[:-1], starts[1:], strict=True)
        assert all(b == c for (_, b), c in tiled)
        assert set(starts) <= set(offsets.tolist())  # cut between sequences
    assert shares(2) == [(0, 14), (14, 28)]
    with pytest.raises(ValueError, match="^lengths: 5 sequence.*6 processes"):
        shares(6)


def test_partial_state_labels_stream_with_the_chunks(tmp_path, reads):
    n = LENGTHS.sum()
    x = _gaussian(n)
    truth = _states(n, 0)
    rng = np.random.default_rng(3)
    states = np.where(rng.random(n) < 0.25, truth, -1)
    mapped = _mapped(tmp_path, x)
    means, covars = np.array([[0.5, 0.0], [2.0, 2.0]]), np.ones((2, 2))
    kw = dict(n_iter=6, tol=-1)

    def fit(data, init_params, **more):
        est = jaxem.GaussianHMM(2, init_params=init_params, **kw, **more)
        est.startprob_, est.transmat_ = START["startprob_"], START["transmat_"]
        est.means_, est.covars_ = means.copy(), covars.copy()
        return est.fit(data, LENGTHS, states=states)

    # From set attributes: the labels' evidence streams with every chunk.
    # Drawing only "m": labelled means replace the drawn ones, read in chunks.
    for init_params in ("", "m"):
        reads.clear()
        streamed = fit(mapped, init_params, chunk_rows=CHUNK_ROWS)
        assert reads and max({r for r, _ in reads} - {LENGTHS.max()}) <= CHUNK_ROWS
        in_memory = fit(x, init_params)
        for name in ("startprob_", "transmat_", "means_", "covars_"):
            np.testing.assert_allclose(
                getattr(streamed, name), getattr(in_memory, name), rtol=1e-10
            )
        np.testing.assert_allclose(
            streamed.monitor_.history, in_memory.monitor_.history, rtol=1e-10
        )
        assert np.all(np.diff(streamed.monitor_.history) >= -1e-9)
    free = jaxem.GaussianHMM(2, init_params="", **kw, chunk_rows=CHUNK_ROWS)
    free.startprob_, free.transmat_ = START["startprob_"], START["transmat_"]
    free.means_, free.covars_ = means.copy(), covars.copy()
    free.fit(mapped, LENGTHS)
    assert not np.allclose(free.monitor_.history, streamed.monitor_.history)


def test_fit_chunked_refuses_evidence_on_some_chunks_only():
    model = jaxem.models.binomial_mixture(2, 10)
    p0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.3, 0.6])}
    heads = np.arange(8.0)
    evidence = np.zeros((4, 2))
    chunks = [_chunked.Batch(heads[:4], evidence=evidence), _chunked.Batch(heads[4:])]
    with pytest.raises(ValueError, match="every chunk or none"):
        jaxem.fit_chunked(model, p0, chunks, max_iter=2)
    bad = [_chunked.Batch(heads[:4], evidence=np.zeros((4, 3)))]
    with pytest.raises(ValueError, match="^latent_evidence: expected shape"):
        jaxem.fit_chunked(model, p0, bad, max_iter=2)
    clamped = np.array([[0.0, -np.inf]] * 4)
    both = [
        _chunked.Batch(heads[:4], evidence=clamped),
        _chunked.Batch(heads[4:], evidence=np.zeros((4, 2))),
    ]
    streamed = jaxem.fit_chunked(model, p0, both, max_iter=5, tol=0.0)
    whole = np.concatenate([clamped, np.zeros((4, 2))])
    in_memory = jaxem.fit(model, p0, heads, max_iter=5, tol=0.0, latent_evidence=whole)
    np.testing.assert_allclose(streamed.history, in_memory.history, rtol=1e-12)
    np.testing.assert_allclose(streamed.params["p"], in_memory.params["p"], rtol=1e-12)
    with pytest.raises(ValueError, match="fit_chunked"):
        jaxem.fit_online(model, p0, both)


@pytest.mark.parametrize("name", list(CASES))
def test_scoring_and_decoding_read_x_in_chunks(tmp_path, reads, name):
    cls, make, emissions, _, _ = CASES[name]
    x = make(LENGTHS.sum())
    mapped = _mapped(tmp_path, x)
    fitted = _started(cls, emissions, n_iter=3).fit(x, LENGTHS)
    streamed = _started(cls, emissions, chunk_rows=CHUNK_ROWS)
    for attr in ["startprob_", "transmat_", *emissions]:
        setattr(streamed, attr, getattr(fitted, attr))
    reads.clear()
    for method in ("score", "score_samples", "predict_proba", "predict", "decode"):
        got = getattr(streamed, method)(mapped, LENGTHS)
        want = getattr(fitted, method)(x, LENGTHS)
        got, want = (v if isinstance(v, tuple) else (v,) for v in (got, want))
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, err_msg=method)
    got = streamed.decode(mapped, LENGTHS, algorithm="map")
    want = fitted.decode(x, LENGTHS, algorithm="map")
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
    np.testing.assert_array_equal(got[1], want[1])
    assert reads and max({r for r, _ in reads} - {LENGTHS.max()}) <= CHUNK_ROWS
    assert all(plain for _, plain in reads)
