"""Process settings for a CPU host that trains with avjax_cpu's kernels.

`configure()` is called by avjax's entry points only when a config chooses
`config.model.conv="cpu_kernels"` (avjax/kernels.py), before JAX creates its
backends. It makes two settings, and only where the step runs on a CPU:

- JAX's CPU client runs computations inline, on the calling thread, instead of
  dispatching them to a thread of its own. XLA:CPU then allocates an update's
  temporaries from the main thread's heap, where the last update's buffer is
  reused; from a dispatch thread's glibc arena, which cannot hold a buffer of a
  paper-scale update's size, it was mapped afresh and faulted in page by page on
  every update. This setting touches only the CPU client: an accelerator's
  client is unchanged by it.
- glibc malloc keeps large buffers on the heap and never trims it, one arena per
  core, so tf.data's MB-sized record buffers and XLA's temporaries are reused
  rather than faulted in afresh. This one is process-wide, so it is made only
  where JAX can pick no backend but the CPU (`cpu_only_host`).

Neither creates JAX's backends: the entry points call this before
`jax.distributed.initialize()`, which must come first on a multi-host run.

`benchmarks/train_step.py` and `avjax_cpu/tests/test_process.py` measure what
each buys. A user's own choice (JAX_CPU_ENABLE_ASYNC_DISPATCH, MALLOC_ARENA_MAX,
GLIBC_TUNABLES, the MALLOC_*_ variables, or AVJAX_DEFAULT_MALLOC=1 to keep
glibc's defaults) is left alone.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

USER_SETTINGS = ("AVJAX_DEFAULT_MALLOC", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES",
                 "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def allocator_settings(cpu_count: int) -> dict[int, int]:
  return {
      M_ARENA_MAX: max(2, cpu_count),
      # mallopt's largest: a paper-scale update's temporaries are one buffer of
      # over a GB, and a batch of |STFT| windows several MB.
      M_MMAP_THRESHOLD: 2**31 - 1,
      M_TRIM_THRESHOLD: 2**31 - 1,
  }


@functools.cache
def tune_allocator() -> bool:
  """Applies `allocator_settings` once per process; whether they took (glibc only)."""
  if any(os.environ.get(k) for k in USER_SETTINGS):
    return False
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # not glibc: macOS, musl
    return False
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  settings = allocator_settings(cores or 1)
  return all(mallopt(option, value) == 1 for option, value in settings.items())


def inline_cpu_dispatch() -> bool:
  """Turns JAX's asynchronous CPU dispatch off; whether it took (it cannot once
  JAX's backends exist, which is logged rather than raised)."""
  import jax
  from jax._src import xla_bridge
  if "JAX_CPU_ENABLE_ASYNC_DISPATCH" in os.environ:
    return False
  if xla_bridge.backends_are_initialized():
    if jax.config.read("jax_cpu_enable_async_dispatch"):
      log.warning("avjax_cpu.process.configure ran after JAX created its backends: the CPU "
                  "client keeps dispatching asynchronously")
    return False
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  return True


# The PJRT plugins through which JAX reaches an accelerator; a host with none of
# them installed can only run on its CPU.
ACCELERATOR_PLUGINS = ("jax_plugins", "jax_cuda12_plugin", "jax_cuda13_plugin",
                       "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")


def cpu_only_host() -> bool:
  """Whether JAX's backend here can only be the CPU, known without creating the
  backends: JAX_PLATFORMS names the CPU first, or, unset, no accelerator plugin
  is installed. A host with a plugin but no device is not counted: the setting
  is then left out rather than risked on an accelerator host."""
  import jax
  platforms = jax.config.jax_platforms or ""
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  return not any(importlib.util.find_spec(m) for m in ACCELERATOR_PLUGINS)


def configure() -> dict[str, bool]:
  """Both settings above, the allocator's only on a CPU-only host; which took."""
  inline = inline_cpu_dispatch()
  allocator = cpu_only_host() and tune_allocator()
  return {"inline_dispatch": inline, "allocator": allocator}
