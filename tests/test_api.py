"""The public surface pinned to shared/design/API.md."""

import inspect

import pytest

import jaxem

CONTRACT = [
    "LatentModel",
    "Categorical",
    "MarkovChain",
    "ChainFactors",
    "ClosedForm",
    "constraints",
    "fit",
    "FitResult",
    "posterior",
    "log_likelihood",
    "viterbi",
    "ChainPosterior",
    "gradient_norm",
    "models",
    "GaussianMixture",
    "BinomialMixture",
    "GaussianHMM",
    "CategoricalHMM",
    "PoissonHMM",
    "Gaussian",
    "GaussianChain",
    "GaussianPosterior",
    "GaussianChainPosterior",
    "FactorAnalysis",
    "LinearGaussianSSM",
]
MODELS = [
    "gaussian_mixture",
    "binomial_mixture",
    "gaussian_hmm",
    "categorical_hmm",
    "poisson_hmm",
    "factor_analysis",
    "probabilistic_pca",
    "linear_gaussian_ssm",
]


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_names_are_exposed(name):
    if not hasattr(jaxem, name):
        pytest.fail(f"jaxem.{name} is part of API.md but not exposed")


@pytest.mark.parametrize("name", MODELS)
def test_model_factories_are_exposed(name):
    assert hasattr(jaxem.models, name), name


def test_fit_signature():
    params = inspect.signature(jaxem.fit).parameters
    assert list(params)[:3] == ["model", "params0", "data"]
    for name, default in [
        ("weights", None),
        ("lengths", None),
        ("max_iter", 100),
        ("tol", 1e-6),
        ("m_step_optimizer", None),
        ("m_step_iters", None),
    ]:
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default == default


def test_fit_result_fields():
    for field in [
        "params",
        "log_likelihood",
        "history",
        "n_iter",
        "converged",
        "status",
        "gradient_norm",
    ]:
        assert field in jaxem.FitResult._fields


def test_latent_model_signature():
    params = inspect.signature(jaxem.LatentModel.__init__).parameters
    assert list(params)[1:3] == ["log_joint", "latent"]
    assert params["constraints"].default is None and params["m_step"].default is None


def test_constraints_module():
    for name in ["real", "positive", "unit_interval", "simplex", "positive_definite"]:
        con = getattr(jaxem.constraints, name)
        assert callable(con.forward) and callable(con.inverse)
        assert callable(con.num_free)


def test_inference_signatures():
    for fn in (jaxem.posterior, jaxem.log_likelihood):
        params = inspect.signature(fn).parameters
        assert list(params)[:3] == ["model", "params", "data"]
        assert params["lengths"].kind is inspect.Parameter.KEYWORD_ONLY


def test_all_is_accurate():
    for name in jaxem.__all__:
        assert hasattr(jaxem, name), name


def test_every_export_loads_lazily_and_is_declared_for_static_tools():
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(jaxem.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    )
    declared = {
        alias.asname: node.module or "" for node in block.body for alias in node.names
    }
    assert declared == {k: v.lstrip(".") for k, v in jaxem._EXPORTS.items()}
    for name in jaxem.__all__:
        assert getattr(jaxem, name) is not None


def test_import_jaxem_imports_neither_jax_nor_sklearn():
    import subprocess
    import sys

    code = (
        "import sys, jaxem; "
        "print(sorted(m for m in ('jax', 'sklearn', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
