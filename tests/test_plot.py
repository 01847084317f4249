"""jaxem.plot: every plot renders to PNG and draws what it promises."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import jax.numpy as jnp  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import jaxem  # noqa: E402
from jaxem import plot  # noqa: E402

GMM_2D = {
    "weights": np.array([0.6, 0.4]),
    "means": np.array([[0.0, 0.0], [4.0, 1.0]]),
    "covariances": np.array([[[2.0, 1.2], [1.2, 1.5]], [[0.5, 0.0], [0.0, 0.3]]]),
}


def _png(fig, path):
    plot.save_figure(fig, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
def test_full_covariances(ctype):
    k, d = 3, 2
    shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    c = np.ones(shapes[ctype])
    if ctype in ("full", "tied"):
        c = c * np.eye(d) * 2
    full = plot.full_covariances(c, ctype, k, d)
    assert full.shape == (k, d, d)
    np.testing.assert_allclose(full[:, 0, 1], 0.0)


def test_gmm_2d_has_two_ellipses_per_component(tmp_path):
    X = np.random.default_rng(0).normal(size=(80, 2)) * 2
    fig = plot.plot_gmm(GMM_2D, X)
    ellipses = [p for p in fig.axes[0].patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 4
    # Per component, 1σ then 2σ: the 2σ ellipse is twice the 1σ one.
    for one, two in (ellipses[0:2], ellipses[2:4]):
        assert two.width == pytest.approx(2 * one.width)
        assert two.height == pytest.approx(2 * one.height)
    # 1σ semi-axes are the square roots of the covariance's eigenvalues.
    lam = np.linalg.eigvalsh(GMM_2D["covariances"][0])
    assert ellipses[0].width == pytest.approx(2 * np.sqrt(lam[-1]))
    _png(fig, tmp_path / "gmm2d.png")


def test_gmm_1d_density_integrates_to_one(tmp_path):
    params = {
        "weights": np.array([0.3, 0.7]),
        "means": np.array([[0.0], [5.0]]),
        "covariances": np.array([[[1.0]], [[2.0]]]),
    }
    X = np.random.default_rng(0).normal(size=(100, 1)) * 3 + 3
    fig = plot.plot_gmm(params, X, xlabel="height (cm)")
    mixture = [ln for ln in fig.axes[0].lines if ln.get_label() == "mixture density"]
    x, y = mixture[0].get_data()
    assert 0.9 < np.trapezoid(y, x) <= 1.0
    assert fig.axes[0].get_xlabel() == "height (cm)"
    _png(fig, tmp_path / "gmm1d.png")


def test_gmm_estimator_and_feature_check(tmp_path):
    cls = getattr(jaxem, "GaussianMixture", None)
    if cls is None:
        pytest.skip("GaussianMixture has not landed yet")
    X = np.random.default_rng(1).normal(size=(60, 3))
    est = cls(2, covariance_type="diag", random_state=0, max_iter=200).fit(X)
    _png(plot.plot_gmm(est, X, features=(0, 2)), tmp_path / "est.png")
    with pytest.raises(ValueError, match="features"):
        plot.plot_gmm(est, X[:, :2])


def test_log_likelihood_from_fit_result_and_decrease_marker(tmp_path):
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": jnp.array([0.5, 0.5]), "p": jnp.array([0.6, 0.5])}
    heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])
    result = jaxem.fit(model, params0, heads, max_iter=8, tol=0.0)
    fig = plot.plot_log_likelihood(result)
    assert fig.axes[0].lines[0].get_xydata().shape == (9, 2)  # start + 8 steps
    _png(fig, tmp_path / "ll.png")
    bad = plot.plot_log_likelihood([-10.0, -9.0, -9.5, -9.4])
    labels = [ln.get_label() for ln in bad.axes[0].lines]
    assert "decrease (should not happen)" in labels


def test_hmm_and_coins(tmp_path):
    rng = np.random.default_rng(0)
    post = rng.dirichlet([1, 1, 1], size=50)
    fig = plot.plot_hmm(
        rng.normal(size=50),
        post.argmax(1),
        post,
        lengths=[20, 30],
        true_states=rng.integers(0, 3, 50),
    )
    assert len(fig.axes) == 2
    _png(fig, tmp_path / "hmm.png")
    with pytest.raises(ValueError, match="same length"):
        plot.plot_hmm(np.zeros(10), np.zeros(10, int), post)
    fig = plot.plot_coins(np.array([[0.6, 0.5], [0.7, 0.55], [0.8, 0.52]]))
    _png(fig, tmp_path / "coins.png")
    _png(
        plot.plot_coins(np.array([[0.2, 0.5, 0.8], [0.25, 0.5, 0.75]])),
        tmp_path / "coins3.png",
    )


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"jaxem\[plot\]"):
        plot.plot_coins([[0.5, 0.5]])
