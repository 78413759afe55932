"""avjax.host: the trainer's process settings. Each case runs in a fresh process,
since JAX creates its CPU client once per process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Median page faults per call of a jitted program with ~100 MB of temporaries
# (two 3x3 convolutions over a 16x128x128x64 map and their ReLUs).
PROGRAM = """
import resource, sys
if sys.argv[1] == "configure":
  from avjax import host
  host.configure()
import jax, jax.numpy as jnp
from jax import lax
conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
f = jax.jit(lambda x, w: jnp.sum(conv(jax.nn.relu(conv(x, w)), w)))
x, w = jnp.ones((16, 128, 128, 64)), jnp.full((3, 3, 64, 64), 1e-3)
f(x, w).block_until_ready()
faults = []
for _ in range(8):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x, w).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2], jax.config.read("jax_cpu_enable_async_dispatch"))
"""


def faults_per_call(mode: str) -> tuple[float, str]:
  from data_pipelines import host_memory
  skip = ("JAX_CPU_ENABLE_ASYNC_DISPATCH",) + host_memory.USER_SETTINGS  # a user's choices
  env = {k: v for k, v in os.environ.items() if k not in skip}
  out = subprocess.run([sys.executable, "-c", PROGRAM, mode], env=env, capture_output=True,
                       text=True, check=True, timeout=300).stdout.split()
  return float(out[0]), out[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and getrusage")
def test_configure_lets_xla_reuse_its_temporaries():
  """With JAX's defaults, the program's temporaries are mapped afresh on every
  call (~67,600 faults); after host.configure they are reused from the heap.
  In some runs calls still fault in one activation-sized 33.5 MB buffer (8,583
  faults) allocated outside the main heap, so the bound is a quarter of the
  defaults', not zero."""
  default, default_async = faults_per_call("defaults")
  configured, configured_async = faults_per_call("configure")
  assert (default_async, configured_async) == ("True", "False")
  assert default > 40_000, default
  assert configured < default / 4, (configured, default)


def test_configure_after_backends_exist_says_so(caplog):
  import jax
  from avjax import host
  jax.devices()  # the backends exist from here on
  was = jax.config.read("jax_cpu_enable_async_dispatch")
  host.configure()
  assert jax.config.read("jax_cpu_enable_async_dispatch") == was
  if was:  # conftest or an earlier test may have set it off already
    assert "after JAX created its backends" in caplog.text
