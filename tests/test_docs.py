"""Doctests of jaxem's docstrings, and the documentation site's strict build."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

import jaxem

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules():
    names = ["jaxem"]
    for info in pkgutil.walk_packages(jaxem.__path__, "jaxem."):
        if info.name in ("jaxem.__main__",) or info.name.startswith("jaxem.data._"):
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_doctests(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test)
    failed, _ = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} doctest example(s) failed in {name}"


FLOAT32_DOCTESTS = """
import doctest, importlib, os, pkgutil, tempfile
os.chdir(tempfile.mkdtemp())  # examples that write files write them here
import jaxem
names = ["jaxem"] + [
    info.name
    for info in pkgutil.walk_packages(jaxem.__path__, "jaxem.")
    if info.name != "jaxem.__main__" and not info.name.startswith("jaxem.data._")
]
failed = []
for name in names:
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    module = importlib.import_module(name)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        if test.examples and runner.run(test, out=lambda text: None).failed:
            failed.append(test.name)
print("failed:", failed)
"""


def test_doctests_hold_with_64_bit_off():
    """The docstrings' examples as a user runs them: JAX's default float32
    (this test session turns 64-bit on, so they run in a fresh process)."""
    import os

    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAXEM_NO_CACHE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", FLOAT32_DOCTESTS],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "failed: []" in out.stdout, out.stdout[-3000:]


@pytest.mark.parametrize("page", ["getting-started.md", "coins.md"])
def test_page_snippets_run(page, tmp_path, monkeypatch):
    """The Python blocks of these pages run, in order, as written."""
    monkeypatch.chdir(tmp_path)  # they save models and figures
    text = (ROOT / "docs" / page).read_text()
    namespace: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, f"{page} snippet", "exec"), namespace)


def test_every_public_function_has_an_example():
    missing = []
    for name in jaxem.__all__:
        obj = getattr(jaxem, name)
        if callable(obj) and not isinstance(obj, type(jaxem)):
            if not (obj.__doc__ or "").strip():
                missing.append(name)
    assert not missing, f"public names without a docstring: {missing}"


_DOCS_TOOLS = ("mkdocs", "mkdocstrings", "material")


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in _DOCS_TOOLS),
    reason="the docs extra (mkdocs, mkdocstrings, mkdocs-material) is not installed",
)
def test_mkdocs_build_strict(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()
    # Offline: no page loads a script, stylesheet or font from the network,
    # and the formulas' MathJax is the bundled copy.
    concepts = (tmp_path / "site" / "concepts" / "index.html").read_text()
    assert "js/mathjax/tex-svg.js" in concepts and "arithmatex" in concepts
    for page in (tmp_path / "site").rglob("*.html"):
        remote = re.findall(
            r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text()
        )
        assert not remote, f"{page.name} loads {remote[:3]}"
