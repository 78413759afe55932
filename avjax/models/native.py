"""The CPU convolution kernels (filter_grad.cc, conv_fwd.cc), built on first use.

XLA:CPU has no convolution filter-gradient kernel that reaches its own forward
convolution's speed on large maps, and runs convolutions of 128 channels into
64 features at half its usual speed (see conv.py). filter_grad.cc and
conv_fwd.cc do better, as XLA FFI custom calls. They are compiled once per
machine into one library against the headers jaxlib ships (avjax/native_build.py:
the system's C++ compiler, `$CXX` else `c++`, for this CPU, into
$AVJAX_KERNEL_CACHE, default ~/.cache/avjax/kernels). Where that cannot happen
(no compiler, no jax.ffi, a build or load that fails) the library logs why,
once, and conv.py keeps its XLA formulations.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from avjax import native_build
from data_pipelines import host_memory

SOURCES = tuple(Path(__file__).with_name(name) for name in ("filter_grad.cc", "conv_fwd.cc"))
HEADERS = (Path(__file__).with_name("native_kernels.h"),)
TARGET = "avjax_filter_grad"
FORWARD_TARGET = "avjax_conv_forward"


def compiled_library(sources, headers=(), flags=(), name: str = "conv_kernels") -> ctypes.CDLL:
  """The XLA FFI library of `sources` (native_build.compiled, against the
  headers jaxlib ships), loaded. Raises OSError, RuntimeError or
  SubprocessError, with the reason, where it cannot be had."""
  if not hasattr(jax, "ffi"):
    raise RuntimeError(f"jax {jax.__version__} has no jax.ffi")
  path = native_build.compiled(sources, headers=headers,
                               flags=(f"-I{jax.ffi.include_dir()}", *flags), name=name,
                               toolchain=f"jax {jax.__version__}")
  return ctypes.cdll.LoadLibrary(str(path))


@functools.cache
def filter_grad_target() -> str | None:
  """The filter gradient's registered FFI target, building the kernels (and
  registering the forward's target too) if needed; None (and one log line
  saying why) where they cannot be had."""
  try:
    lib = compiled_library(SOURCES, HEADERS)
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.AvjaxFilterGrad), platform="cpu")
    jax.ffi.register_ffi_target(FORWARD_TARGET, jax.ffi.pycapsule(lib.AvjaxConvForward),
                                platform="cpu")
    return TARGET
  except (OSError, RuntimeError, subprocess.SubprocessError) as e:
    why = str(e)
  logging.getLogger(__name__).warning(
      "avjax: the CPU convolution kernels are unavailable (%s); convolutions keep "
      "XLA's formulations (per-tap filter gradients), which are slower on CPU", why)
  return None


def takes_kernel(channels: int, features: int, dtype) -> bool:
  """Whether filter_grad.cc computes the filter gradient of a convolution with
  these input channels, output features and dtype: float32, 8-channel and
  32-feature multiples, and one device (a custom call has no sharding rule, so
  on a mesh of CPU devices the partitioner would gather whole batches to it)."""
  return channels % 8 == 0 and takes_forward_kernel(features, dtype)


def takes_forward_kernel(features: int, dtype) -> bool:
  """Whether conv_fwd.cc computes a convolution into `features` of `dtype`:
  float32, 32-feature multiples, one device (as `takes_kernel`)."""
  return (dtype == jnp.float32 and features % 32 == 0 and jax.device_count() == 1
          and filter_grad_target() is not None)


def filter_grad(xp, g, kernel_hw, num_threads: int | None = None) -> jax.Array:
  """dw [kh, kw, C, F] of a stride-1 NHWC convolution from its padded input xp
  [N, H + kh - 1, W + kw - 1, C] and output gradient g [N, H, W, F], in
  `num_threads` parts (default: the cores this process may use) run on XLA's
  CPU thread pool."""
  out = jax.ShapeDtypeStruct((*kernel_hw, xp.shape[-1], g.shape[-1]), jnp.float32)
  return jax.ffi.ffi_call(filter_grad_target(), out, vmap_method="sequential")(
      xp, g, threads=np.int64(num_threads or host_memory.usable_cores()))


def conv_forward(xp, w, num_threads: int | None = None) -> jax.Array:
  """y [N, H, W, F] of a stride-1 NHWC/HWIO convolution from its padded input xp
  [N, H + kh - 1, W + kw - 1, C] and kernel w [kh, kw, C, F], in `num_threads`
  parts (default: the cores this process may use) run on XLA's CPU thread pool."""
  kh, kw, _, features = w.shape
  out = jax.ShapeDtypeStruct(
      (xp.shape[0], xp.shape[1] - kh + 1, xp.shape[2] - kw + 1, features), jnp.float32)
  filter_grad_target()  # registers FORWARD_TARGET
  return jax.ffi.ffi_call(FORWARD_TARGET, out, vmap_method="sequential")(
      xp, w, threads=np.int64(num_threads or host_memory.usable_cores()))
