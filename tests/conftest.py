"""Test configuration: float64 and strict rank promotion for every test.

The x64 flag is process-wide; float32 behaviour is tested with explicitly
float32 inputs (jaxem follows the input dtype) and, where the flag itself
matters, in a subprocess with x64 off.
"""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# No persistent compilation cache in the test processes. Caching every program
# (how this suite ran for a while, to save compile time) once ended a worker
# in a segmentation fault inside JAX's executable serialisation: a flaky crash
# costs more than the compile time saved. JAXEM_NO_CACHE also keeps jaxem's
# own default cache (a user's ~/.cache) out of the tests and of the
# subprocesses they start; the cache tests set up their own.
os.environ.setdefault("JAXEM_NO_CACHE", "1")


@pytest.fixture
def reads(monkeypatch):
    """(rows, plain read of a memory map's file) of every chunk a streamed fit
    or scoring reads of X (``jaxem._chunk_sources.read_rows``)."""
    from jaxem import _chunk_sources

    seen = []
    real = _chunk_sources.read_rows

    def spy(array, start, stop):
        seen.append((stop - start, _chunk_sources._mapped_file(array)))
        return real(array, start, stop)

    monkeypatch.setattr(_chunk_sources, "read_rows", spy)
    return seen


def pytest_runtest_teardown(item, nextitem):
    # Free the compiled programs of a test file before the next file: a worker
    # that kept every program of a full run (thousands) crashed inside XLA's
    # CPU compiler late in the run, consistent with running out of memory
    # mappings for generated code.
    if nextitem is None or nextitem.path != item.path:
        jax.clear_caches()
