"""The Python snippets of the core docs pages run, in order, as written."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = [
    "index.md",
    "custom-models.md",
    "online.md",
    "standard-errors-and-acceleration.md",
    "priors.md",
    "labels.md",
    "missing-values.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_snippets_run(page, capsys):
    text = (DOCS / page).read_text()
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, f"{page} snippet", "exec"), namespace)
    assert "jaxem" in namespace


def test_readme_snippet_runs():
    text = (DOCS.parent / "README.md").read_text()
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, "README snippet", "exec"), namespace)
    assert [round(float(p), 2) for p in namespace["result"].params["p"]] == [0.8, 0.52]
