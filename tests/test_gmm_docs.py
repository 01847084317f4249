"""The Gaussian mixture docs page's snippets and the heights example run."""

import pathlib
import re
import sys
import warnings

import numpy as np

import jaxem

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_gmm_page_snippets_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "gmm.md").read_text()
    namespace: dict = {}
    with warnings.catch_warnings():
        # the model-selection grid may try more components than the data hold
        warnings.simplefilter("ignore", jaxem.estimators.CollapsedComponentWarning)
        for block in re.findall(r"```python\n(.*?)```", text, re.S):
            exec(compile(block, "gmm.md snippet", "exec"), namespace)
    assert namespace["selection"].best_n_components == 2


def test_heights_example_recovers_two_gaussians(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    sys.modules.pop("gmm_heights", None)
    import gmm_heights

    out = gmm_heights.main(n=600, plot=True, verbose=False)
    np.testing.assert_allclose(out["means"], [178.0, 165.0], atol=3.0)
    np.testing.assert_allclose(out["sds"], [7.0, 6.0], atol=2.0)
    assert out["accuracy"] > 0.7
