"""hmmlearn's own HMM test files, run against jaxem's estimators.

Copies ``hmmlearn/tests/test_gaussian_hmm.py``, ``test_categorical_hmm.py``
and ``test_poisson_hmm.py`` (with the package's ``__init__.py`` helpers and
``conftest.py``) from the installed hmmlearn into a temporary package, swaps
the class under test (``hmm.GaussianHMM`` ... becomes
``jaxem.estimators.GaussianHMM`` ...), runs pytest on it and prints the
counts, separating the tests that reach into hmmlearn's private API.

Private-API tests call hmmlearn internals (``_init``, ``_check``,
``_check_and_set_n_features``, ``_covars_``). jaxem implements those names
too, so they run, but they are counted apart from the public-behaviour tests
(the target is on public behaviour).

Usage::

    python benchmarks/peer_suites_hmm.py            # counts and failures
    python benchmarks/peer_suites_hmm.py -k fit     # extra pytest arguments
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

FILES = ("test_gaussian_hmm.py", "test_categorical_hmm.py", "test_poisson_hmm.py")
PRIVATE = re.compile(r"\._init\(|\._check\(|_check_and_set_n_features|\._covars_")
SEED = "1"  # hmmlearn's conftest seeds numpy's global RNG from HMMLEARN_SEED


def _copy_suite(target: pathlib.Path) -> None:
    import hmmlearn

    source = pathlib.Path(hmmlearn.__file__).parent / "tests"
    package = target / "hmm_peer"
    package.mkdir()
    (package / "__init__.py").write_text((source / "__init__.py").read_text())
    (target / "conftest.py").write_text((source / "conftest.py").read_text())
    for name in FILES:
        text = (source / name).read_text()
        text = text.replace("from .. import hmm", "import jaxem.estimators as hmm")
        text = text.replace(
            "from hmmlearn import hmm", "import jaxem.estimators as hmm"
        )
        (package / name).write_text(text)


def _private_tests(package: pathlib.Path) -> set[str]:
    """Names of the tests that use hmmlearn's private API, directly or through
    another test they call (``self.test_fit(...)``)."""
    private, calls = set(), {}
    for name in FILES:
        text = (package / name).read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                body = ast.get_source_segment(text, node)
                if PRIVATE.search(body):
                    private.add(node.name)
                calls[node.name] = set(re.findall(r"self\.(test\w+)\(", body))
    for caller, callees in calls.items():
        if callees & private:
            private.add(caller)
    return private


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        _copy_suite(root)
        private = _private_tests(root / "hmm_peer")
        report = root / "report.xml"
        env = dict(os.environ, HMMLEARN_SEED=SEED, JAX_PLATFORMS="cpu")
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--junitxml={report}", "--rootdir", str(root), str(root / "hmm_peer"),
            *argv,
        ]  # fmt: skip
        subprocess.run(cmd, cwd=root, env=env, check=False)
        cases = ET.parse(report).getroot().iter("testcase")
        rows = []
        for case in cases:
            test = case.get("name").split("[")[0]
            failed = case.find("failure") is not None or case.find("error") is not None
            skipped = case.find("skipped") is not None
            kind = "private" if test in private else "public"
            rows.append(
                (case.get("classname"), case.get("name"), kind, failed, skipped)
            )
    for kind in ("public", "private"):
        ran = [r for r in rows if r[2] == kind and not r[4]]
        passed = [r for r in ran if not r[3]]
        share = 100 * len(passed) / max(len(ran), 1)
        print(f"{kind:8s} tests: {len(passed)} of {len(ran)} pass ({share:.1f}%)")
        for r in ran:
            if r[3]:
                print(f"    FAILED {r[0]}::{r[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
