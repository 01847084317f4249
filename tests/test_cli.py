"""The jaxem command line (in-process through ``jaxem.cli.main``) and progress."""

from __future__ import annotations

import io
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import _progress, cli

GMM_ROWS = "x,y\n" + "".join(
    f"{a:.4f},{b:.4f}\n"
    for a, b in np.concatenate(
        [
            np.random.default_rng(0).normal(0, 1, (25, 2)),
            np.random.default_rng(1).normal(6, 1, (25, 2)),
        ]
    )
)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def gmm_csv(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text(GMM_ROWS)
    return path


# ------------------------------------------------------------------- help
def test_help_lists_commands_and_examples(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for word in ("demo", "fit", "show", "examples:"):
        assert word in out
    code, out, _ = run(capsys, "fit", "--help")
    assert code == 0 and "--sequence-column" in out and "jaxem fit gmm" in out
    code, out, _ = run(capsys, "demo", "--help")
    assert code == 0 and "--no-plots" in out


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "usage" in out


# ---------------------------------------------------------- user errors
def _one_line_error(capsys, *argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert match in err, err
    return err


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,b\n1,2\n3\n", "row 3 has 1 column(s), expected 2"),
        ("a,b\n1,2\n3,abc\n", "row 3, column 'b': 'abc' is not a number"),
        ("a,b\n1,2\n3,nan\n", "row 3, column 'b' is NaN"),
        ("1,2\n\n# comment\n3,inf\n", "row 4, column '2' is infinite"),
        ("a,b\n1,2\n,4\n", "row 3, column 'a' is missing"),
        ("a,b\n", "has a header but no data rows"),
        ("", "no data rows"),
    ],
)
def test_bad_csv(capsys, tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    _one_line_error(capsys, "fit", "gmm", path, match=match)


def test_bad_files(capsys, tmp_path):
    _one_line_error(capsys, "fit", "gmm", tmp_path / "none.csv", match="no such file")
    (tmp_path / "x.json").write_text("{}")
    _one_line_error(
        capsys, "fit", "gmm", tmp_path / "x.json", match="unknown file type"
    )
    (tmp_path / "x.npy").write_bytes(b"garbage")
    _one_line_error(capsys, "fit", "gmm", tmp_path / "x.npy", match="cannot read")
    arr = np.ones((5, 2))
    arr[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    _one_line_error(
        capsys, "fit", "gmm", tmp_path / "nan.npy", match="row 4, column '2' is NaN"
    )
    _one_line_error(capsys, "show", tmp_path / "x.json", match="not a jaxem model")


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--components", "0"], "expected a positive integer, got '0'"),
        (["--components", "two"], "expected a positive integer"),
        (["--tol", "-1"], "expected a finite number >= 0"),
        (["--max-iter", "1.5"], "expected a positive integer"),
        (["--covariance-type", "round"], "invalid choice: 'round'"),
        (["--seed", "x"], "expected an integer >= 0"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--columns", "z"], "no column 'z' (columns: x, y)"),
        (["--lengths", "3,4"], "--lengths: only for 'jaxem fit hmm'"),
        (["--components", "80"], "fewer than --components 80"),
    ],
)
def test_bad_options(capsys, gmm_csv, argv, match):
    _one_line_error(capsys, "fit", "gmm", gmm_csv, *argv, match=match)


def test_unwritable_outputs(capsys, tmp_path):
    coins = jaxem.data.path("coins")
    for flag in ("--out", "--predict", "--plot"):
        _one_line_error(
            capsys,
            "fit",
            "coins",
            coins,
            flag,
            tmp_path / "no" / "dir" / "f.png",
            match=f"{flag} {tmp_path / 'no' / 'dir' / 'f.png'}: the folder",
        )
    _one_line_error(
        capsys,
        "fit",
        "coins",
        coins,
        "--plot",
        tmp_path / "f.xyz",
        match="unknown image type 'xyz' (use one of",
    )


def test_coins_input_errors(capsys, tmp_path):
    path = tmp_path / "heads.csv"
    path.write_text("heads\n3\n12\n")
    _one_line_error(capsys, "fit", "coins", path, match="--n-trials: required")
    _one_line_error(
        capsys,
        "fit",
        "coins",
        path,
        "--n-trials",
        10,
        match="row 3, column 'heads' has 12 heads",
    )
    path.write_text("1,0,2\n0,1,1\n")
    _one_line_error(capsys, "fit", "coins", path, match="row 1, column '3' is 2")


# ------------------------------------------------------------ fitting
def test_fit_gmm_out_plot_predict_show(capsys, gmm_csv, tmp_path):
    model, fig, labels = tmp_path / "m.npz", tmp_path / "f.png", tmp_path / "l.csv"
    code, out, err = run(
        capsys,
        "fit",
        "gmm",
        gmm_csv,
        "-k",
        2,
        "--n-init",
        2,
        "--out",
        model,
        "--plot",
        fig,
        "--predict",
        labels,
        "--no-progress",
    )
    assert code == 0, err
    assert "component" in out and "log-likelihood" in out and "BIC" in out
    est = jaxem.GaussianMixture.load(model)
    assert est.n_components == 2 and est.means_.shape == (2, 2)
    assert fig.read_bytes()[:4] == b"\x89PNG"
    rows = labels.read_text().splitlines()
    assert rows[0] == "label,p_0,p_1" and len(rows) == 51
    assert len({r.split(",")[0] for r in rows[1:]}) == 2
    code, out, _ = run(capsys, "show", model)
    assert code == 0 and "GaussianMixture(n_components=2" in out
    assert "jaxem file format 1" in out


def test_fit_gmm_npy_float32(capsys, tmp_path):
    X = np.loadtxt(io.StringIO(GMM_ROWS), delimiter=",", skiprows=1)
    np.save(tmp_path / "x.npy", X)
    code, _, err = run(
        capsys,
        "fit",
        "gmm",
        tmp_path / "x.npy",
        "--float32",
        "--covariance-type",
        "diag",
        "--out",
        tmp_path / "m.npz",
        "--no-progress",
    )
    assert code == 0, err
    assert jaxem.load(tmp_path / "m.npz").means_.dtype == np.float32


def test_fit_coins_tosses_and_trajectory(capsys, tmp_path):
    fig = tmp_path / "coins.png"
    code, out, err = run(
        capsys,
        "fit",
        "coins",
        jaxem.data.path("coins"),
        "--plot",
        fig,
        "--out",
        tmp_path / "c.npz",
        "--no-progress",
    )
    assert code == 0, err
    assert "10 tosses per row" in out and fig.exists()
    est = jaxem.BinomialMixture.load(tmp_path / "c.npz")
    heads = jaxem.data.load_coins().sum(1).astype(float)
    path = cli.coin_trajectory(est, heads)
    assert path.shape == (est.n_iter_ + 1, 2)
    np.testing.assert_allclose(path[-1], est.p_, rtol=1e-10)


def test_fit_hmm_sequences(capsys, tmp_path):
    if getattr(jaxem, "CategoricalHMM", None) is None:
        pytest.skip("CategoricalHMM has not landed yet")
    rolls, _ = jaxem.data.load_casino()
    path = tmp_path / "rolls.csv"
    ids = np.repeat([7, 3], [60, 40])
    path.write_text(
        "seq,roll\n"
        + "".join(f"{s},{r}\n" for s, r in zip(ids, rolls[:100], strict=True))
    )
    out_csv = tmp_path / "states.csv"
    code, out, err = run(
        capsys,
        "fit",
        "hmm",
        path,
        "--emission",
        "categorical",
        "--sequence-column",
        "seq",
        "--max-iter",
        5,
        "--predict",
        out_csv,
        "--plot",
        tmp_path / "h.png",
        "--no-progress",
    )
    assert code == 0, err
    assert "2 sequence(s)" in out and "1 -> 0" in out
    rows = out_csv.read_text().splitlines()
    assert rows[0].startswith("sequence,label") and rows[1].startswith("7,")
    assert rows[-1].startswith("3,") and len(rows) == 101
    path.write_text("seq,roll\n1,1\n2,2\n1,3\n")
    _one_line_error(
        capsys,
        "fit",
        "hmm",
        path,
        "--sequence-column",
        "seq",
        match="sequence id 1 appears in separate runs",
    )


def test_demo(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--out", tmp_path / "demo", "--no-progress")
    assert code == 0, err
    assert "A        0.60                 0.7967" in out
    assert "B        0.50                 0.5197" in out
    for name in ("coins.png", "coins-loglik.png", "heights.png"):
        assert (tmp_path / "demo" / name).exists()


def test_subprocess_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jaxem", "fit", "gmm", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"jaxem fit: error: {tmp_path / 'missing.csv'}: no such file"
    )


# ------------------------------------------------------------- progress
def test_progress_batched_and_plain():
    out = io.StringIO()
    bar = _progress.ProgressBar("restarts", total=5, file=out, use_tqdm=False)
    bar(jnp.array([0, 0, 0]), jnp.array([-10.0, -8.0, jnp.nan]))
    bar(jnp.array([1, 1, 0]), jnp.array([-9.0, -7.5, jnp.nan]))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("restarts iteration    1/5  log-likelihood -8.0")
    assert "change +5.000e-01" in lines[1]


def test_progress_one_call_per_restart():
    # jax.debug.callback under vmap calls the host once per restart.
    out = io.StringIO()
    bar = _progress.ProgressBar("R", total=3, file=out, use_tqdm=False)
    for it, ll in [(0, -10.0), (0, -8.0), (1, -9.0), (1, -7.5), (1, -7.5)]:
        bar(np.int32(it), np.float64(ll))
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # the repeated report is not printed again
    assert lines[-1].startswith("R iteration    2/3  log-likelihood -7.5")
    assert lines[-1].endswith("change +5.000e-01")


def test_verbose_estimator_draws_a_tqdm_bar(capsys):
    pytest.importorskip("tqdm")
    X = np.array([[5], [9], [8], [4], [7]])
    est = jaxem.BinomialMixture(
        2, n_trials=10, n_init=2, verbose=1, max_iter=50, random_state=0
    ).fit(X)
    err = capsys.readouterr().err
    assert "BinomialMixture" in err and "loglik=" in err
    assert f"{est.n_iter_}/{est.n_iter_}" in err
    assert not _progress._ACTIVE


def test_functional_fit_with_progress_context(capsys):
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
    heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
    with _progress.progress("coins", 4, True, use_tqdm=False) as callback:
        jaxem.fit(model, params0, heads, max_iter=4, tol=0.0, callback=callback)
    with _progress.progress("coins", 4, False) as callback:
        assert callback is None
    err = capsys.readouterr().err
    assert err.count("coins iteration") == 4


def test_plot_without_matplotlib_is_one_line(capsys, gmm_csv, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    _one_line_error(
        capsys,
        "fit",
        "gmm",
        gmm_csv,
        "--plot",
        tmp_path / "f.png",
        match="plots need matplotlib",
    )
    _one_line_error(
        capsys, "demo", "--out", tmp_path / "d", match="plots need matplotlib"
    )


def test_show_functional_fit_result(capsys, tmp_path):
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
    heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
    result = jaxem.fit(model, params0, heads, max_iter=10, tol=0.0, frozen=("weights",))
    jaxem.save(tmp_path / "fit.npz", result, model=model)
    code, out, err = run(capsys, "show", tmp_path / "fit.npz")
    assert code == 0, err
    assert "fit_result of model binomial_mixture(2, 10)" in out
    assert "[0.7967 0.5197]" in out and "iterations 10" in out
