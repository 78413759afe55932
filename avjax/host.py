"""Process-wide settings for a host that runs the jitted step, made before JAX
creates its backends (the entry points and benchmarks call `configure` first).

- glibc malloc as data_pipelines/host_memory.py tunes it (large buffers kept on
  the heap, no trimming).
- JAX's CPU client runs computations inline, on the calling thread, instead of
  dispatching them to a thread of its own. XLA:CPU then allocates an update's
  temporaries (1.16 GB for a paper-scale AVE-Net update) from the main thread's
  heap, where the buffer of the last update is reused; from a dispatch thread's
  glibc arena, which cannot hold a buffer that size, it was mapped afresh and
  faulted in page by page on every update. Measured with
  benchmarks/train_step.py (README "Benchmarks": page faults). Accelerators'
  clients are untouched, and on a CPU the host has nothing else to overlap with
  the step: tf.data prepares batches on threads of its own.

A user's own choice (JAX_CPU_ENABLE_ASYNC_DISPATCH, or the malloc variables
host_memory honours) is left alone.
"""
from __future__ import annotations

import logging
import os

from data_pipelines import host_memory

log = logging.getLogger(__name__)


def configure() -> None:
  """Applies the settings above; once JAX's backends exist, the dispatch setting
  can no longer take, which is logged rather than raised."""
  host_memory.tune_allocator()
  import jax
  from jax._src import xla_bridge
  if "JAX_CPU_ENABLE_ASYNC_DISPATCH" in os.environ:
    return
  if xla_bridge.backends_are_initialized():
    if jax.config.read("jax_cpu_enable_async_dispatch"):
      log.warning("avjax.host.configure ran after JAX created its backends: the CPU client "
                  "keeps dispatching asynchronously")
    return
  jax.config.update("jax_cpu_enable_async_dispatch", False)
