"""Test configuration: float64 and strict rank promotion for every test.

The x64 flag is process-wide; float32 behaviour is tested with explicitly
float32 inputs (jaxem follows the input dtype) and, where the flag itself
matters, in a subprocess with x64 off.
"""

import os
import shutil
import tempfile

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# One persistent compilation cache per test run, shared by the xdist workers
# and by the subprocesses tests start (they inherit the environment): a
# program compiled by one worker is read, not compiled, by the others. The
# suite is compile-bound; this is its biggest saving. Never the user's cache.
_RUN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _RUN_CACHE = tempfile.mkdtemp(prefix="jaxem-test-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _RUN_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config):
    if _RUN_CACHE is not None:
        shutil.rmtree(_RUN_CACHE, ignore_errors=True)
