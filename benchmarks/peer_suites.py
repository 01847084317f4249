"""The peers' own test files, run against jaxem's estimators.

scikit-learn ships its mixture tests; this script copies
``sklearn/mixture/tests/test_gaussian_mixture.py`` and ``test_mixture.py``
from the installed scikit-learn into a temporary folder, swaps the class under
test (``sklearn.mixture.GaussianMixture`` becomes ``jaxem.GaussianMixture``;
``BayesianGaussianMixture`` stays scikit-learn's), runs them with pytest and
prints passed/failed counts of the public-behaviour tests, with every failure.

Counted apart, not in the target:

- private-API tests: they call scikit-learn's private functions or methods
  (``_estimate_gaussian_parameters``, ``_compute_log_det_cholesky``,
  ``gmm._initialize``, ``_set_parameters``, a monkeypatched
  ``sklearn.mixture._gaussian_mixture``); found by the pattern ``PRIVATE``;
- parametrizations on ``BayesianGaussianMixture``, which test scikit-learn's
  class, not jaxem's;
- array-API tests (``array_api`` in the name): they test scikit-learn's
  array-API dispatch (torch, cupy, ... namespaces), which a JAX estimator does
  not take part in; they are skipped anyway without ``array_api_compat``.

Extension point: ``SUITES`` maps a suite name to a function that runs it and
returns its rows; ``peer_suites_hmm.py`` (hmmlearn's files) is run from here
with ``--all`` and can be run on its own.

Usage::

    python benchmarks/peer_suites.py              # scikit-learn's mixture tests
    python benchmarks/peer_suites.py --all        # and hmmlearn's (sibling script)
    python benchmarks/peer_suites.py -- -k warm   # extra pytest arguments
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SKLEARN_FILES = ("test_gaussian_mixture.py", "test_mixture.py")
PRIVATE = re.compile(
    r"\b_estimate_\w+\(|\b_compute_\w+\(|\._initialize\(|\._set_parameters\("
    r"|monkeypatch\.setattr\(\s*sklearn\.mixture"
)
SWAPS = (
    (
        "from sklearn.mixture import GaussianMixture\n",
        "from jaxem import GaussianMixture\n",
    ),
    (
        "from sklearn.mixture import BayesianGaussianMixture, GaussianMixture\n",
        "from jaxem import GaussianMixture\n"
        "from sklearn.mixture import BayesianGaussianMixture\n",
    ),
)


def _copy_sklearn_suite(target: pathlib.Path) -> pathlib.Path:
    import sklearn

    source = pathlib.Path(sklearn.__file__).parent / "mixture" / "tests"
    package = target / "sklearn_peer"
    package.mkdir()
    (package / "__init__.py").write_text("")
    # scikit-learn's conftest provides the global_dtype/global_random_seed
    # fixtures the tests use.
    conftest = pathlib.Path(sklearn.__file__).parent / "conftest.py"
    (target / "conftest.py").write_text(conftest.read_text())
    for name in SKLEARN_FILES:
        text = (source / name).read_text()
        for old, new in SWAPS:
            text = text.replace(old, new)
        if "from jaxem import GaussianMixture" not in text:
            raise RuntimeError(f"{name}: the import of GaussianMixture has changed")
        (package / name).write_text(text)
    return package


def _private_tests(package: pathlib.Path, files) -> set[str]:
    private = set()
    for name in files:
        text = (package / name).read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                if PRIVATE.search(ast.get_source_segment(text, node)):
                    private.add(node.name)
    return private


def _kind(name: str, private: set[str]) -> str:
    test = name.split("[")[0]
    if test in private:
        return "private"
    if "array_api" in test:
        return "array-api"
    if "BayesianGaussianMixture" in name:
        return "sklearn's own class"
    return "public"


def run_sklearn(pytest_args) -> list[tuple]:
    """Rows (test id, kind, failed, skipped, message) of scikit-learn's suite."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        package = _copy_sklearn_suite(root)
        private = _private_tests(package, SKLEARN_FILES)
        report = root / "report.xml"
        # float32 variants too (scikit-learn's global_dtype fixture).
        env = dict(os.environ, JAX_PLATFORMS="cpu", SKLEARN_RUN_FLOAT32_TESTS="1")
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "no:randomly", f"--junitxml={report}", "--rootdir", str(root),
            str(package), *pytest_args,
        ]  # fmt: skip
        subprocess.run(cmd, cwd=root, env=env, check=False)
        rows = []
        for case in ET.parse(report).getroot().iter("testcase"):
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            message = "" if bad is None else (bad.get("message") or "")
            rows.append(
                (
                    f"{case.get('classname')}::{case.get('name')}",
                    _kind(case.get("name"), private),
                    bad is not None,
                    case.find("skipped") is not None,
                    message.splitlines()[0][:160] if message else "",
                )
            )
    return rows


def run_hmmlearn(pytest_args) -> None:
    """hmmlearn's suite, by the sibling script (prints its own summary)."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import peer_suites_hmm

    peer_suites_hmm.main(list(pytest_args))


SUITES = {"scikit-learn": run_sklearn}
"""Suites whose rows this script summarises; add one here (a function
``pytest_args -> rows``) or run a sibling script from ``--all``."""


def summarise(suite: str, rows) -> None:
    kinds = ("public", "private", "sklearn's own class", "array-api")
    for kind in kinds:
        ran = [r for r in rows if r[1] == kind and not r[3]]
        skipped = sum(1 for r in rows if r[1] == kind and r[3])
        if not ran and not skipped:
            continue
        passed = [r for r in ran if not r[2]]
        share = 100 * len(passed) / max(len(ran), 1)
        print(
            f"{suite} {kind:20s}: {len(passed)} of {len(ran)} pass ({share:.1f}%)"
            + (f", {skipped} skipped" if skipped else "")
        )
        for r in ran:
            if r[2]:
                print(f"    FAILED {r[0]}  {r[4]}")


def main(argv: list[str]) -> int:
    run_all = "--all" in argv
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    for suite, run in SUITES.items():
        summarise(suite, run(pytest_args))
    if run_all:
        run_hmmlearn(pytest_args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
