"""glibc malloc settings for a host whose tf.data threads move MB-sized buffers.

Every record read is a fresh ~1-10 MB buffer that the parser and the window
slices pass on (at the time of the figures below records also waited in the
shuffle buffer; data_pipelines/record_ops.py now shuffles their spans). With
glibc's defaults (up to 8 arenas per core, buffers over a dynamic threshold
mmap'ed and unmapped one by one, freed heap tops given back to the kernel) the
process keeps faulting in fresh pages: on the 2-core development VM the
paper-scale reader spent a quarter of its time in the kernel (1.25M minor
faults per 10k examples). One arena per core, large buffers kept on
the heap and no trimming cut the faults ~4x and raised throughput by ~30%
(benchmarks/pipeline.py, README "Input pipeline").

The jitted step gains too: XLA:CPU allocates a paper-scale AVE-Net update's
temporaries as one 1.16 GB buffer per call. Above the mmap threshold that buffer
is mapped and unmapped on every update, and the update faulted in 300k fresh
pages each time (a tenth of its cycles in the kernel); kept on the heap, run
from the main thread (avjax/host.py), it is reused: ~100 faults per update.

Settings the user already chose (MALLOC_ARENA_MAX, GLIBC_TUNABLES, or
AVJAX_DEFAULT_MALLOC=1 to keep glibc's defaults) are left alone.
"""
from __future__ import annotations

import ctypes
import functools
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

USER_SETTINGS = ("AVJAX_DEFAULT_MALLOC", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES",
                 "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def allocator_settings(cpu_count: int) -> dict[int, int]:
  return {
      M_ARENA_MAX: max(2, cpu_count),
      # mallopt's largest: a batch of paper-scale |STFT| windows is ~13 MB, XLA's
      # temporaries for a paper-scale update 1.16 GB.
      M_MMAP_THRESHOLD: 2**31 - 1,
      M_TRIM_THRESHOLD: 2**31 - 1,  # keep freed heap for the next epoch's records
  }


def usable_cores() -> int:
  """The cores this process may run on (its affinity mask, where the OS has one)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS
    return os.cpu_count() or 1


@functools.cache
def tune_allocator() -> bool:
  """Applies `allocator_settings` once per process; whether they took (glibc only)."""
  if any(os.environ.get(k) for k in USER_SETTINGS):
    return False
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # not glibc: macOS, musl
    return False
  settings = allocator_settings(usable_cores())
  return all(mallopt(option, value) == 1 for option, value in settings.items())
