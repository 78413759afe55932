"""oneDNN's convolutions (the kernels PyTorch's CPU convolutions run) as XLA
FFI custom calls, for avjax_cpu/conv.py: float32, and bfloat16 on CPUs that
compute it natively; and Winograd's F(2x2, 3x3) for float32 3x3 convolutions
of stride 1 (winograd_conv.cc), whose products are a oneDNN matmul.

onednn_conv.cc and winograd_conv.cc are compiled once per machine
(avjax_cpu/build.py) against an installed oneDNN: the `onednn-cpu-gomp` and
`onednn-devel-cpu-gomp` wheels (avjax's `cpu` extra, x86-64 Linux), or the
oneDNN 3.x install prefix in $AVJAX_ONEDNN_ROOT (with include/dnnl.hpp and
lib/libdnnl.so; the kernels use 3.x's API, so Debian's libdnnl-dev, 2.x, does
not build). The targets are registered for the CPU platform only. Where the
library cannot be had, `unavailable()` says why in one line.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from avjax_cpu import build

SOURCES = tuple(Path(__file__).with_name(name) for name in ("onednn_conv.cc", "winograd_conv.cc"))
TARGETS = {"forward": "avjax_onednn_conv_forward", "input_grad": "avjax_onednn_conv_input_grad",
           "filter_grad": "avjax_onednn_conv_filter_grad", "winograd": "avjax_winograd_conv",
           "winograd_filter_grad": "avjax_winograd_filter_grad"}
SYMBOLS = {"forward": "AvjaxOnednnConvForward", "input_grad": "AvjaxOnednnConvInputGrad",
           "filter_grad": "AvjaxOnednnConvFilterGrad", "winograd": "AvjaxWinogradConv",
           "winograd_filter_grad": "AvjaxWinogradFilterGrad"}
WHEELS = ("onednn-devel-cpu-gomp", "onednn-cpu-gomp")


def _wheel_file(distribution: str, suffix: str) -> Path | None:
  """The installed file of `distribution` whose path ends with `suffix` (a
  wheel's data files sit above site-packages: ../../libdnnl.so)."""
  try:
    files = importlib.metadata.files(distribution) or []
  except importlib.metadata.PackageNotFoundError:
    return None
  found = [f for f in files if ("/" + f.as_posix()).endswith("/" + suffix)]
  return Path(found[0].locate()).resolve() if found else None


def install_dirs() -> tuple[Path, Path]:
  """(include folder, library folder) of the oneDNN to build against; raises
  RuntimeError saying what is missing."""
  root = os.environ.get("AVJAX_ONEDNN_ROOT")
  if root:
    include, lib = Path(root) / "include", Path(root) / "lib"
    if not (include / "dnnl.hpp").exists():
      raise RuntimeError(f"AVJAX_ONEDNN_ROOT={root} has no include/dnnl.hpp")
    return include, lib
  header = _wheel_file(WHEELS[0], "include/dnnl.hpp")
  library = _wheel_file(WHEELS[1], "libdnnl.so")
  if header is None or library is None:
    raise RuntimeError(f"no oneDNN installed (pip install {' '.join(WHEELS)}, or set "
                       "AVJAX_ONEDNN_ROOT)")
  return header.parent, library.parent


@functools.cache
def _loaded() -> tuple[ctypes.CDLL | None, str]:
  """(the kernels' library, built if needed, its FFI targets registered for the
  CPU platform, "") or (None, why it cannot be had)."""
  try:
    include, lib = install_dirs()
    flags = (f"-I{include}", f"-L{lib}", "-ldnnl", f"-Wl,-rpath,{lib}", "-fopenmp")
    library = build.ffi_library(SOURCES, flags=flags, name="onednn_conv")
    for part, target in TARGETS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, SYMBOLS[part])),
                                  platform="cpu")
    return library, ""
  except (OSError, RuntimeError, subprocess.SubprocessError) as e:
    return None, str(e)


def _library() -> ctypes.CDLL | None:
  return _loaded()[0]


def unavailable() -> str:
  """Why the kernels cannot be had here ("" where they are built and registered)."""
  return _loaded()[1]


def available() -> bool:
  """Whether the oneDNN kernels are built and registered (building them if needed)."""
  return _library() is not None


@functools.cache
def native_bfloat16() -> bool:
  """Whether oneDNN computes bfloat16 natively on this CPU (AVX512_BF16 or AMX):
  there its bfloat16 convolutions ran 2.05-2.17x its float32 ones over AVE-Net's
  layers; elsewhere it emulates them."""
  return available() and bool(_library().AvjaxOnednnNativeBf16())


def takes(dtype) -> bool:
  """Whether oneDNN's kernels compute a convolution of `dtype` here: float32, or
  bfloat16 where the CPU computes it natively; one device (a custom call has no
  sharding rule, so on a mesh of CPU devices the partitioner would gather whole
  batches to it); and the kernels available."""
  if jax.device_count() != 1 or not available():
    return False
  return dtype == jnp.float32 or (dtype == jnp.bfloat16 and native_bfloat16())


def _attrs(strides, pads) -> dict:
  (lo_h, hi_h), (lo_w, hi_w) = pads
  return dict(stride_h=np.int64(strides[0]), stride_w=np.int64(strides[1]),
              pad_lo_h=np.int64(lo_h), pad_hi_h=np.int64(hi_h), pad_lo_w=np.int64(lo_w),
              pad_hi_w=np.int64(hi_w))


def _out_size(size: int, kernel: int, stride: int, pad) -> int:
  return (size + pad[0] + pad[1] - kernel) // stride + 1


def conv_forward(x, w, strides, pads) -> jax.Array:
  """y [N, OH, OW, F] of an NHWC/HWIO convolution with explicit padding."""
  n, h, wd, _ = x.shape
  kh, kw, _, f = w.shape
  out = jax.ShapeDtypeStruct((n, _out_size(h, kh, strides[0], pads[0]),
                              _out_size(wd, kw, strides[1], pads[1]), f), x.dtype)
  return jax.ffi.ffi_call(TARGETS["forward"], out, vmap_method="sequential")(
      x, w, **_attrs(strides, pads))


def conv_input_grad(g, w, x_shape, strides, pads) -> jax.Array:
  """dx [N, H, W, C] of `conv_forward` for the output gradient g."""
  out = jax.ShapeDtypeStruct(tuple(x_shape), g.dtype)
  return jax.ffi.ffi_call(TARGETS["input_grad"], out, vmap_method="sequential")(
      g, w, **_attrs(strides, pads))


def conv_filter_grad(x, g, kernel_hw, strides, pads) -> jax.Array:
  """dw [kh, kw, C, F] of `conv_forward` for the output gradient g."""
  out = jax.ShapeDtypeStruct((*kernel_hw, x.shape[-1], g.shape[-1]), x.dtype)
  return jax.ffi.ffi_call(TARGETS["filter_grad"], out, vmap_method="sequential")(
      x, g, **_attrs(strides, pads))


def _winograd_workspace(x_shape, nout: int, c: int, f: int) -> jax.ShapeDtypeStruct:
  """The float32 workspace of a winograd_conv.cc call (its WorkspaceSize) whose
  input map is x_shape [N, H, W, K], output map has `nout` channels, kernel C
  into F: a second result, so that XLA places it among the program's
  temporaries."""
  n, h, w, k = x_shape
  tiles = n * ((h + 1) // 2) * ((w + 1) // 2)
  return jax.ShapeDtypeStruct((16 * c * f + 16 * tiles * (k + nout),), jnp.float32)


def winograd_conv(x, w, flip: bool = False) -> jax.Array:
  """y [N, H, W, F] of a 3x3, stride-1, pad-1 NHWC/HWIO float32 convolution by
  Winograd's F(2x2, 3x3) (winograd_conv.cc); with `flip`, x is an output
  gradient [N, H, W, F] and the result the input gradient [N, H, W, C]."""
  c, f = w.shape[2:]
  nout = c if flip else f
  out = (jax.ShapeDtypeStruct((*x.shape[:3], nout), jnp.float32),
         _winograd_workspace(x.shape, nout, c, f))
  return jax.ffi.ffi_call(TARGETS["winograd"], out, vmap_method="sequential")(
      x, w, flip=np.int64(flip))[0]


def winograd_filter_grad(x, g) -> jax.Array:
  """dw [3, 3, C, F] of `winograd_conv(x, w)` for the output gradient g
  [N, H, W, F], by Winograd's F(2x2, 3x3) transforms' adjoints."""
  c, f = x.shape[-1], g.shape[-1]
  out = (jax.ShapeDtypeStruct((3, 3, c, f), jnp.float32), _winograd_workspace(x.shape, f, c, f))
  return jax.ffi.ffi_call(TARGETS["winograd_filter_grad"], out, vmap_method="sequential")(
      x, g)[0]
