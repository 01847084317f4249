"""Data sharded across devices with JAX's own sharding gives the same fit.

Runs in a subprocess: the number of host CPU devices must be set before JAX
starts, and the test process has already started it.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    import jaxem

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    z = rng.random(1000) < 0.4
    heads = rng.binomial(10, np.where(z, 0.8, 0.3)).astype(np.float64)
    model = jaxem.models.binomial_mixture(2, 10)
    params0 = {"weights": np.array([0.5, 0.5]), "p": np.array([0.4, 0.6])}
    plain = jaxem.fit(model, params0, heads, max_iter=30, tol=0.0)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded_heads = jax.device_put(heads, NamedSharding(mesh, PartitionSpec("data")))
    assert len(sharded_heads.sharding.device_set) == 2
    sharded = jaxem.fit(model, params0, sharded_heads, max_iter=30, tol=0.0)
    np.testing.assert_allclose(sharded.params["p"], plain.params["p"], rtol=1e-10)
    np.testing.assert_allclose(sharded.history, plain.history, rtol=1e-10)
    print("sharded ok")
    """
)


def test_fit_on_data_sharded_over_two_devices():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded ok" in out.stdout
