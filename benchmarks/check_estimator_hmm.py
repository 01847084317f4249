"""scikit-learn's ``check_estimator`` on jaxem's HMM estimators: counts.

Runs every check scikit-learn yields for ``GaussianHMM``, ``CategoricalHMM``
and ``PoissonHMM`` (as their tags declare them) and prints how many pass,
which fail and why; the failures jaxem expects are listed, with the reason,
in ``jaxem.estimators._hmm_base.expected_failed_checks``. Slow (every check
fits on new data shapes, so compiles): minutes per estimator.

Usage::

    python benchmarks/check_estimator_hmm.py            # all three
    python benchmarks/check_estimator_hmm.py Poisson    # names containing it
"""

from __future__ import annotations

import logging
import sys
import time
import warnings

from sklearn.utils.estimator_checks import check_estimator

import jaxem
from jaxem.estimators._hmm_base import expected_failed_checks

ESTIMATORS = (
    jaxem.GaussianHMM(2, n_iter=5),
    jaxem.CategoricalHMM(2, n_iter=5),
    jaxem.PoissonHMM(2, n_iter=5),
)


def main(argv: list[str]) -> int:
    logging.getLogger("jaxem").setLevel(logging.ERROR)
    for est in ESTIMATORS:
        name = type(est).__name__
        if argv and not any(a in name for a in argv):
            continue
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = check_estimator(est, on_fail=None)
        ran = [r for r in results if r["status"] != "skipped"]
        passed = [r for r in ran if r["status"] == "passed"]
        seconds = time.perf_counter() - start
        print(
            f"{name}: {len(passed)} of {len(ran)} checks pass "
            f"({100 * len(passed) / len(ran):.1f}%), "
            f"{len(results) - len(ran)} skipped, {seconds:.0f} s"
        )
        expected = expected_failed_checks(est)
        for r in ran:
            if r["status"] == "passed":
                continue
            why = expected.get(r["check_name"], "NOT EXPECTED: " + str(r["exception"]))
            print(f"    {r['status']} {r['check_name']}: {why.splitlines()[0][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
