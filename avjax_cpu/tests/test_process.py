"""avjax_cpu.process: the settings a CPU host gets with config.model.conv =
"cpu_kernels". Each case that needs a fresh JAX runs in its own process, since
JAX creates its CPU client once per process."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from avjax_cpu import process

# Median page faults per call of a jitted program with ~100 MB of temporaries
# (two 3x3 convolutions over a 16x128x128x64 map and their ReLUs).
PROGRAM = """
import resource, sys
if sys.argv[1] == "configure":
  from avjax_cpu import process
  print(process.configure(), file=sys.stderr)
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
  skip = ("JAX_CPU_ENABLE_ASYNC_DISPATCH",) + process.USER_SETTINGS  # a user's choices
  env = {k: v for k, v in os.environ.items() if k not in skip}
  out = subprocess.run([sys.executable, "-c", PROGRAM, mode], env=env, capture_output=True,
                       text=True, check=True, timeout=300).stdout.split()
  return float(out[0]), out[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and getrusage")
def test_configure_lets_xla_reuse_its_temporaries():
  """With JAX's defaults, the program's temporaries are mapped afresh on every
  call; after process.configure they are reused from the heap.
  Some runs' calls still fault in one or two activation-sized buffers allocated
  outside the main heap (seen beside another test process), so the bound is two
  and a half activations' pages and half the defaults', not zero."""
  default, default_async = faults_per_call("defaults")
  configured, configured_async = faults_per_call("configure")
  assert (default_async, configured_async) == ("True", "False")
  assert default > 40_000, default
  import resource  # POSIX only, as the skip says
  activation_pages = 16 * 128 * 128 * 64 * 4 / resource.getpagesize()
  assert configured < min(2.5 * activation_pages, default / 2), (configured, default)


def test_configure_after_backends_exist_says_so(caplog):
  import jax
  jax.devices()  # the backends exist from here on
  was = jax.config.read("jax_cpu_enable_async_dispatch")
  process.inline_cpu_dispatch()
  assert jax.config.read("jax_cpu_enable_async_dispatch") == was
  if was:  # conftest or an earlier test may have set it off already
    assert "after JAX created its backends" in caplog.text


PROBE = "from avjax_cpu import process; print(process.tune_allocator())"


def probe(**env_vars) -> str:
  env = {k: v for k, v in os.environ.items() if k not in process.USER_SETTINGS}
  env.update(**env_vars)
  return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                        check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_settings_apply_unless_the_user_chose_their_own():
  assert probe() == "True"
  assert probe(AVJAX_DEFAULT_MALLOC="1") == "False"
  assert probe(MALLOC_ARENA_MAX="8") == "False"


def test_one_arena_per_core_with_a_floor_of_two():
  assert process.allocator_settings(1)[process.M_ARENA_MAX] == 2
  assert process.allocator_settings(96)[process.M_ARENA_MAX] == 96


def test_configure_creates_no_backend():
  """Entry points call configure before jax.distributed.initialize(), which
  must come before JAX's backends exist: configure must not create them."""
  code = ("from jax._src import xla_bridge\nfrom avjax_cpu import process\n"
          "process.configure()\nprint(xla_bridge.backends_are_initialized())")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       timeout=300).stdout.split()
  assert out[-1] == "False"


@pytest.mark.parametrize("platforms,cpu_only", [("cpu", True), ("cpu,cuda", True),
                                                ("cuda", False), ("tpu,cpu", False)])
def test_the_allocator_is_for_cpu_only_hosts(platforms, cpu_only):
  code = "from avjax_cpu import process; print(process.cpu_only_host())"
  env = dict(os.environ, JAX_PLATFORMS=platforms)
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True, timeout=300).stdout.split()
  assert out[-1] == str(cpu_only)
