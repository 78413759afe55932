"""The models' one seam to their 2-D convolutions and 2x2 max pooling, chosen by
`config.model.conv`:

- "xla" (the default): lax's convolution and flax's pooling, XLA's own kernels
  on every platform;
- "cpu_kernels": the opt-in avjax_cpu package (the `cpu` extra), oneDNN's and
  Winograd's kernels in the programs lowered for a CPU and lax's in those
  lowered for anything else (avjax_cpu/conv.py).

Both give the same parameters, so a checkpoint moves between them.
"""
from __future__ import annotations

import functools
import importlib
from typing import Callable

import flax.linen as nn
from jax import lax

CHOICES = ("xla", "cpu_kernels")


def xla_max_pool_2x2(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


@functools.cache
def ops(name: str) -> tuple[Callable, Callable]:
  """(conv_general_dilated, max_pool_2x2) of a `config.model.conv` choice;
  ValueError, in one line naming the key, for an unknown or unusable one."""
  if name == "xla":
    return lax.conv_general_dilated, xla_max_pool_2x2
  if name == "cpu_kernels":
    try:
      return importlib.import_module("avjax_cpu.conv").ops()
    except (ImportError, RuntimeError) as e:
      raise ValueError(f"config.model.conv='cpu_kernels': {e}") from None
  raise ValueError(f"config.model.conv: unknown choice {name!r}; known: {list(CHOICES)}")


def configure_process(name: str) -> None:
  """The process settings that a choice brings (avjax_cpu/process.py for
  "cpu_kernels"; none for "xla"). Entry points call it before JAX creates its
  backends."""
  if name == "cpu_kernels":
    importlib.import_module("avjax_cpu.process").configure()
