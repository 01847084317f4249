"""The jaxem command line (in-process through ``jaxem.cli.main``) and progress."""

from __future__ import annotations

import io
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem import _progress, cli
from jaxem.cli import _plots, _read

ROOT = pathlib.Path(__file__).resolve().parents[1]

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


def pandas_csv(path, text=GMM_ROWS):
    """``text`` as ``DataFrame.to_csv`` writes it: an unnamed index column first."""
    lines = text.splitlines()
    body = [f"{i},{line}" for i, line in enumerate(lines[1:])]
    path.write_text("\n".join(["," + lines[0], *body]) + "\n")
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


def test_help_imports_no_command(capsys):
    # --help parses only: the command modules (numpy, JAX, the estimators) are
    # imported when a command runs.
    script = textwrap.dedent(
        """
        import sys
        import jaxem
        before = set(sys.modules)
        from jaxem.cli import main
        for argv in (["--help"], ["fit", "--help"], ["demo", "--help"], ["--version"]):
            try:
                main(argv)
            except SystemExit:
                pass
        new = sorted(set(sys.modules) - before)
        print(" ".join(new))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    new = proc.stdout.strip().splitlines()[-1].split()
    assert "jaxem.cli._args" in new
    heavy = [m for m in new if m.split(".")[0] in ("jax", "numpy", "matplotlib")]
    assert not heavy and "jaxem.cli._fit" not in new, new


def test_help_does_not_import_jax():
    script = (
        "import sys\nimport jaxem\nby_package = 'jax' in sys.modules\n"
        "from jaxem.cli import main\n"
        "try:\n    main(['fit', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(by_package, 'jax' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-300:]
    by_package, after_help = proc.stdout.split()[-2:]
    assert by_package == "False", "import jaxem imported JAX"
    assert after_help == "False", "jaxem --help imported JAX"


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
        ("a,,c\n1,2,3\n", "row 1 (the header): column 2 has no name"),
        ("", "no data rows"),
    ],
)
def test_bad_csv(capsys, tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    _one_line_error(capsys, "fit", "gmm", path, match=match)


def test_pandas_index_column_is_skipped(tmp_path):
    notes = []
    table = _read.read_table(pandas_csv(tmp_path / "p.csv"), note=notes.append)
    assert table.names == ["x", "y"] and table.values.shape == (50, 2)
    np.testing.assert_array_equal(
        table.values, np.loadtxt(io.StringIO(GMM_ROWS), delimiter=",", skiprows=1)
    )
    assert notes == [
        "p.csv: skipped the first column (no name: an index, as pandas writes)"
    ]
    assert table.where(0, 1) == "row 2, column 'y'"  # line numbers of the file
    # A round trip through pandas names it "Unnamed: 0"; a plain file has none.
    (tmp_path / "u.csv").write_text("Unnamed: 0,x\n0,1.5\n1,2.5\n")
    assert _read.read_table(tmp_path / "u.csv", note=notes.append).names == ["x"]
    (tmp_path / "r.csv").write_text(",a,b\n0,1,2\n1,3\n")
    with pytest.raises(cli.UsageError, match="row 3 has 2 column.s., expected 3"):
        _read.read_table(tmp_path / "r.csv", note=notes.append)
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    table = _read.read_table(tmp_path / "n.csv", note=notes.append)
    assert table.names == ["1", "2"] and len(notes) == 3


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
        (["--components", "0"], "expected an integer from 1 to 1000, got '0'"),
        (["--components", "two"], "expected an integer from 1 to 1000"),
        (["--tol", "-1"], "expected a finite number >= 0"),
        (["--max-iter", "1.5"], "expected an integer from 1 to 10**6"),
        (["--covariance-type", "round"], "invalid choice: 'round'"),
        (["--seed", "x"], "--seed: expected an integer from 0 to 2**32 - 1"),
        (["--seed", "-1"], "--seed: expected an integer from 0 to 2**32 - 1"),
        (["--seed", "99999999999999999999999"], "from 0 to 2**32 - 1, got '9999"),
        (["--max-iter", "99999999999999999999"], "--max-iter: expected an integer"),
        (["--max-iter", "1000000000"], "from 1 to 10**6, got '1000000000'"),
        (["--n-init", str(2**40)], "--n-init: expected an integer from 1 to 1000"),
        (["--max-iter", "1000000", "--n-init", "100"], "keep 1e+08 log-likelihoods"),
        (["-k", str(10**9)], "expected an integer from 1 to 1000"),
        (["--n-trials", "0"], "--n-trials: expected an integer from 1 to 10**9"),
        (["--tol", "1e999"], "--tol: expected a finite number >= 0"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--columns", "z"], "no column 'z' (columns: x, y)"),
        (["--lengths", "3,4"], "--lengths: only for 'jaxem fit hmm'"),
        (["--components", "80"], "fewer than --components 80"),
    ],
)
def test_bad_options(capsys, gmm_csv, argv, match):
    _one_line_error(capsys, "fit", "gmm", gmm_csv, *argv, match=match)


def test_failed_fit_is_status_1(capsys, monkeypatch):
    # The estimators' FitError is a RuntimeError and a ValueError: a fit that
    # failed is not a usage error.
    from jaxem.cli import _show
    from jaxem.estimators._base import FitError

    def fail(args):
        raise FitError("every restart stopped on a non-finite log-likelihood")

    monkeypatch.setattr(_show, "run", fail)
    code, _, err = run(capsys, "show", "m.npz")
    assert code == 1
    assert err == (
        "jaxem show: fit failed: every restart stopped on a non-finite log-likelihood\n"
    )


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
def test_fit_gmm_out_plot_predict_show(capsys, tmp_path):
    model, fig, labels = tmp_path / "m.npz", tmp_path / "f.png", tmp_path / "l.csv"
    with jax.enable_x64(False):  # as a user's process with JAX's defaults
        code, out, err = run(
            capsys,
            "fit",
            "gmm",
            pandas_csv(tmp_path / "points.csv"),
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
        assert not jax.config.jax_enable_x64  # the CLI's float64 was scoped
    assert jax.config.jax_enable_x64  # conftest's setting, untouched
    assert code == 0, err
    assert "skipped the first column (no name: an index" in err
    assert "(columns x, y)" in out
    assert "component" in out and "log-likelihood" in out and "BIC" in out
    est = jaxem.GaussianMixture.load(model)
    assert est.n_components == 2 and est.means_.shape == (2, 2)
    assert est.means_.dtype == np.float64
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
    assert jax.config.jax_enable_x64  # --float32 was scoped to the command
    assert jaxem.load(tmp_path / "m.npz").means_.dtype == np.float32


def test_float64_with_jax_defaults_and_warnings_as_errors(tmp_path):
    # A user's process: 64-bit off, python -W error, no cache configured. The
    # CLI turns on jaxem's persistent cache before anything compiles, computes
    # in float64 without a warning and leaves the precision as it was.
    script = textwrap.dedent(
        f"""
        import os, jax, numpy as np, jaxem
        from jaxem import _compile_cache
        from jaxem.cli import main
        assert main(["fit", "gmm", "missing.csv"]) == 2  # before any compile
        cache = str(_compile_cache.default_dir())  # under XDG_CACHE_HOME
        assert jax.config.jax_compilation_cache_dir == cache
        code = main(["fit", "coins", {str(jaxem.data.path("coins"))!r},
                     "--out", {str(tmp_path / "c.npz")!r}, "--no-progress"])
        assert code == 0, code
        assert not jax.config.jax_enable_x64, "x64 left on"
        est = jaxem.load({str(tmp_path / "c.npz")!r})
        assert np.asarray(est.p_).dtype == np.float64, est.p_.dtype
        assert os.listdir(cache), "nothing cached"
        print("ok")
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JAX_ENABLE_X64", "JAX_COMPILATION_CACHE_DIR", "JAXEM_NO_CACHE")
    }
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr
    assert proc.stderr == "jaxem fit: error: missing.csv: no such file\n"


def test_fit_coins_tosses_and_trajectory(capsys, tmp_path, monkeypatch):
    from jaxem import plot

    fig, drawn = tmp_path / "coins.png", []
    original = plot.plot_coins

    def record(trajectory, **kwargs):
        drawn.append(trajectory)
        return original(trajectory, **kwargs)

    monkeypatch.setattr(plot, "plot_coins", record)
    code, out, err = run(
        capsys,
        "fit",
        "coins",
        jaxem.data.path("coins"),
        "--plot",
        fig,
        "--out",
        tmp_path / "c.npz",
        "--tol",
        0,
        "--max-iter",
        20,
        "--no-progress",
    )
    assert code == 0, err
    assert "10 tosses per row" in out and fig.exists()
    # tol=0 never converges, by design: no advice to loosen it.
    assert "20 iterations, all of them (tol=0)" in out
    assert "looser tol" not in err and "--tol 0 never stops early by design" in err
    # The plotted θ path is the saved fit's: it ends at its p_ (no note that
    # it is another restart's).
    est = jaxem.BinomialMixture.load(tmp_path / "c.npz")
    (path,) = drawn
    assert path.shape == (est.n_iter_ + 1, 2) == (21, 2)
    assert "restarts" not in err
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
        "--progress",
    )
    assert code == 0, err
    assert err.startswith("jaxem: compiling the CategoricalHMM fit...\n"), err
    assert "2 sequence(s)" in out and "1 -> 0" in out
    assert "5 iterations, not converged" in out  # --max-iter ran out
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


def _fake_gmm(d):
    rng = np.random.default_rng(0)
    means = np.stack([np.zeros(d), np.full(d, 5.0)])
    X = np.concatenate([rng.normal(m, 1.0, (30, d)) for m in means])
    est = types.SimpleNamespace(
        weights_=np.array([0.5, 0.5]),
        means_=means,
        covariances_=np.stack([np.eye(d)] * 2),
        covariance_type="full",
    )
    return est, X


@pytest.mark.parametrize("d", [2, 3, 8])
def test_gmm_plot_labels_every_column_shown(d):
    pytest.importorskip("matplotlib")
    est, X = _fake_gmm(d)
    names = [f"col{j}" for j in range(d)]
    notes = []
    fig = _plots.gmm_figure(est, X, names, "t", note=notes.append)
    shown = min(d, _plots.PAIRS_LIMIT)
    labels = {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes}
    assert labels - {""} == set(names[:shown])
    assert len(fig.axes) == (1 if d == 2 else shown * shown)
    assert not any("feature" in label for label in labels)
    if d > _plots.PAIRS_LIMIT:
        assert notes == [
            "--plot: 8 columns; the pairs plot shows the first 6 (col0, col1, "
            "col2, col3, col4, col5); choose others with --columns"
        ]
    else:
        assert notes == []
    sys.modules["matplotlib.pyplot"].close(fig)


DEMO_PAGE = ROOT / "docs" / "getting-started.md"
DEMO_BEGIN = (
    "<!-- jaxem demo output (generated: JAXEM_UPDATE_DOCS=1 pytest "
    "tests/test_cli.py -k demo) -->\n```text\n"
)
DEMO_END = "```\n<!-- end of jaxem demo output -->"


def _timeless(text: str) -> str:
    return re.sub(r"\d+\.\d+ s\b", "<t> s", text)


def test_demo(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--out", tmp_path / "demo", "--no-progress")
    assert code == 0, err
    assert "A        0.60                 0.7967" in out
    assert "B        0.50                 0.5197" in out
    for name in ("coins.png", "coins-loglik.png", "heights.png"):
        assert (tmp_path / "demo" / name).exists()
    # The page shows this very output (times aside), so it cannot drift.
    shown = out.replace(
        str((tmp_path / "demo").resolve()), "/home/you/jaxem-demo-output"
    )
    page = DEMO_PAGE.read_text()
    before, rest = page.split(DEMO_BEGIN)
    block, after = rest.split(DEMO_END)
    if os.environ.get("JAXEM_UPDATE_DOCS"):
        DEMO_PAGE.write_text(before + DEMO_BEGIN + shown + DEMO_END + after)
    assert _timeless(block) == _timeless(shown) or os.environ.get(
        "JAXEM_UPDATE_DOCS"
    ), (
        "docs/getting-started.md shows another demo output; regenerate it with "
        "JAXEM_UPDATE_DOCS=1 pytest tests/test_cli.py -k demo"
    )


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


# ------------------------------------------------------- scale-out options
def _two_blobs_npy(path, n=5001):
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.normal(0, 1, (n - n // 2, 2)), rng.normal(6, 1, (n // 2, 2))]
    )
    np.save(path, x)
    return x


def _jaxem(*argv, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "jaxem", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **kwargs,
    )


def test_fit_gmm_chunk_rows_streams_the_file(tmp_path):
    x = _two_blobs_npy(tmp_path / "x.npy")
    # A subprocess with 64-bit off globally: the CLI's float64 context must
    # reach the thread that reads the chunks (-W error: no truncation warning).
    proc = _jaxem(
        "fit",
        "gmm",
        tmp_path / "x.npy",
        "--chunk-rows",
        700,
        "--tol",
        0,
        "--max-iter",
        15,
        "--out",
        tmp_path / "m.npz",
    )
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "streamed, 700 rows a chunk" in out
    cli_fit = jaxem.load(tmp_path / "m.npz")
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    est = jaxem.GaussianMixture(2, chunk_rows=700, random_state=0, tol=0, max_iter=15)
    with pytest.warns(jaxem.estimators.ConvergenceWarning):  # tol 0: never
        est.fit(mapped)
    np.testing.assert_allclose(cli_fit.means_, est.means_, rtol=1e-10)
    assert cli_fit.means_.dtype == np.float64
    in_memory = jaxem.GaussianMixture(2, random_state=0, tol=1e-10, max_iter=200)
    in_memory.fit(x)
    order = np.argsort(est.means_[:, 0]), np.argsort(in_memory.means_[:, 0])
    np.testing.assert_allclose(
        est.means_[order[0]], in_memory.means_[order[1]], rtol=1e-6
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--plot", "a.png"], "cannot be combined with --plot"),
        (["--columns", "1"], "cannot be combined with --columns"),
        (["--float32"], "--float32"),
        (["--chunk-rows", "0"], "--chunk-rows"),
        (["--coordinator", "nohost"], "HOST:PORT"),
        (["--coordinator", "127.0.0.1:1"], "--num-processes and --process-id"),
        (["--num-processes", "2"], "only with --coordinator"),
    ],
)
def test_scale_options_refuse_bad_combinations(capsys, tmp_path, extra, message):
    _two_blobs_npy(tmp_path / "x.npy", n=50)
    argv = ["fit", "gmm", tmp_path / "x.npy", "--chunk-rows", 10, *extra]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_fit_under_jax_distributed_equals_one_process(tmp_path):
    import socket

    _two_blobs_npy(tmp_path / "x.npy", n=3001)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    common = ["fit", "gmm", tmp_path / "x.npy", "--tol", 0, "--max-iter", 12]
    procs = [
        _jaxem(
            *common,
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            2,
            "--process-id",
            i,
            "--out",
            tmp_path / f"m{i}.npz",
        )
        for i in range(2)
    ]
    one = _jaxem(*common, "--out", tmp_path / "one.npz")
    outs = [p.communicate(timeout=600) for p in [*procs, one]]
    for p, (_, err) in zip([*procs, one], outs, strict=True):
        assert p.returncode == 0, err
    # Process 0 prints (gloo's own connection line aside) and only it writes.
    assert "Gaussian mixture" in outs[0][0]
    assert "Gaussian mixture" not in outs[1][0]
    assert not (tmp_path / "m1.npz").exists()
    two, single = jaxem.load(tmp_path / "m0.npz"), jaxem.load(tmp_path / "one.npz")
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        np.testing.assert_allclose(
            getattr(two, name), getattr(single, name), rtol=1e-10
        )
# ------------------------------------- labels, SQUAREM and standard errors
def _labelled_csv(path):
    """GMM_ROWS with a ``kind`` column: the true component of every 5th row,
    -1 or nan elsewhere."""
    lines = GMM_ROWS.splitlines()
    rows = [lines[0] + ",kind"]
    for i, line in enumerate(lines[1:]):
        label = str(i // 25) if i % 5 == 0 else ("nan" if i % 2 else "-1")
        rows.append(f"{line},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_fit_gmm_labels_accelerate_standard_errors(capsys, tmp_path):
    path = _labelled_csv(tmp_path / "labelled.csv")
    code, out, err = run(
        capsys,
        "fit",
        "gmm",
        path,
        "--labels",
        "kind",
        "--accelerate",
        "squarem",
        "--standard-errors",
        "--out",
        tmp_path / "m.npz",
    )
    assert code == 0, err
    assert "columns x, y)" in out  # the labels column is not a feature
    assert "standard errors" in out and "means_" in out
    est = jaxem.load(tmp_path / "m.npz")
    assert est.semi_supervised and est.accelerate == "squarem"
    # labelled component 0 is the one near (0, 0), component 1 near (6, 6)
    assert est.means_[0, 0] < 3 < est.means_[1, 0]
    code, out, err = run(capsys, "show", tmp_path / "m.npz")
    assert code == 0 and "accelerate='squarem'" in out


def test_fit_hmm_states_column(capsys, tmp_path):
    rng = np.random.default_rng(0)
    z = (np.arange(80) // 20) % 2
    x = rng.normal(np.where(z == 1, 3.0, 0.0), 1.0)
    known = np.where(np.arange(80) % 10 == 0, z, -1)
    path = tmp_path / "signal.csv"
    path.write_text(
        "x,state\n" + "".join(f"{a:.4f},{s}\n" for a, s in zip(x, known, strict=True))
    )
    code, out, err = run(
        capsys, "fit", "hmm", path, "--labels", "state", "--standard-errors"
    )
    assert code == 0, err
    assert "transmat_" in out and "startprob_" in out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--labels", "nope"], "no column 'nope'"),
        (["--labels", "x"], "--labels: row 2, column 'x' is"),
        (["--labels", "kind", "--columns", "x,kind"], "must not include the --labels"),
        (["--accelerate", "fast"], "invalid choice: 'fast'"),
    ],
)
def test_bad_labels_and_accelerate(capsys, tmp_path, extra, match):
    path = _labelled_csv(tmp_path / "labelled.csv")
    _one_line_error(capsys, "fit", "gmm", path, *extra, match=match)
# ------------------------------------------------------ --missing marginalize
def test_fit_missing_marginalize(capsys, tmp_path):
    rows = GMM_ROWS.splitlines()
    # empty, NA and nan cells, and one row with nothing observed
    rows[3] = "," + rows[3].split(",")[1]
    rows[8] = rows[8].split(",")[0] + ",NA"
    rows[12] = "nan," + rows[12].split(",")[1]
    rows[20] = "NA,"  # (a line of empty cells alone is a blank line)
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(rows) + "\n")
    _one_line_error(capsys, "fit", "gmm", path, match="is missing")
    _one_line_error(
        capsys, "fit", "coins", path, "--missing", "marginalize", match="--missing"
    )
    labels = tmp_path / "labels.csv"
    code, out, err = run(
        capsys, "fit", "gmm", path, "--missing", "marginalize", "--predict", labels
    )
    assert code == 0, err
    assert "5 missing cell(s) marginalised" in err
    assert "nan" not in out.lower()
    predicted = np.loadtxt(labels, delimiter=",", skiprows=1)
    assert predicted.shape == (50, 3) and np.all(np.isfinite(predicted))
    # the row with nothing observed gets the mixing weights
    X = np.genfromtxt(path, delimiter=",", skip_header=1)
    est = jaxem.GaussianMixture(2, missing="marginalize", random_state=0).fit(X)
    np.testing.assert_allclose(
        np.sort(predicted[19, 1:]), np.sort(est.weights_), rtol=1e-4
    )
    code, out, err = run(
        capsys, "fit", "hmm", path, "--missing", "marginalize", "--states", "2"
    )
    assert code == 0, err
