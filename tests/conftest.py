"""Test configuration: float64 and strict rank promotion for every test.

The x64 flag is process-wide; float32 behaviour is tested with explicitly
float32 inputs (jaxem follows the input dtype) and, where the flag itself
matters, in a subprocess with x64 off.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
