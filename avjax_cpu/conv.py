"""`config.model.conv="cpu_kernels"`: the models' convolutions and 2x2 max
pooling with oneDNN's and Winograd's kernels where a program runs on a CPU.

Which kernel runs is decided when a program is lowered, not when it is traced:
each call is `jax.lax.platform_dependent(cpu=<these kernels>, default=<lax>)`,
so a program lowered for TPU or CUDA (`jax.export`, jax2tf) holds lax's
convolution and no CPU custom call, even when traced on a CPU host.

On the CPU branch:
- dense 2-D NHWC/HWIO convolutions from MIN_ONEDNN_MACS multiply-adds per
  example up (every paper-scale VGG layer, no tiny one) take `onednn_conv`:
  - float32 3x3 convolutions of stride 1 and padding 1 (VGG's "SAME": all but
    each tower's first layer) by Winograd's F(2x2, 3x3), forward and both
    gradients (winograd_conv.cc);
  - the others by oneDNN's primitives (onednn_conv.cc), in float32, and in
    bfloat16 where the CPU computes it natively (onednn.takes);
- 2x2 max pooling from MIN_POOL_ELEMENTS inputs per example up takes
  `elementwise_max_pool_2x2`, whose gradient is elementwise ops where lax's is a
  scatter.

Everything smaller keeps lax's, on every platform. What each choice buys is
measured by avjax_cpu/benchmarks/conv_layers.py (per layer) and
benchmarks/train_step.py (the whole update, both settings of config.model.conv
and PyTorch).
"""
from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from avjax_cpu import onednn

# Per call, so that a larger batch does not move a layer across the gate. The
# tiny configs' layers stay below it: oneDNN's per-call overhead outweighs its
# speed there (benchmarks/train_step.py --tiny).
MIN_ONEDNN_MACS = 5_000_000
# Per example (H*W*C); the tiny configs' maps stay below, as above.
MIN_POOL_ELEMENTS = 100_000


def takes_winograd(w_shape, strides, pads, dtype, *, winograd: bool = True) -> bool:
  """Whether `onednn_conv` computes a convolution by Winograd's F(2x2, 3x3):
  float32, a 3x3 kernel, stride 1, padding 1 on every side."""
  return (winograd and dtype == jnp.float32 and tuple(w_shape[:2]) == (3, 3)
          and tuple(strides) == (1, 1) and tuple(map(tuple, pads)) == ((1, 1), (1, 1)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def onednn_conv(x, w, strides, pads, winograd=True):
  """An NHWC/HWIO convolution (float32 or bfloat16) with explicit padding whose
  forward and both gradients are Winograd's where `takes_winograd`, else
  oneDNN's primitives (onednn.py). CPU only: callers reach it through
  `conv_general_dilated`'s platform_dependent."""
  return _onednn_forward(x, w, strides, pads, winograd)


def _onednn_forward(x, w, strides, pads, winograd):
  if takes_winograd(w.shape, strides, pads, x.dtype, winograd=winograd):
    return onednn.winograd_conv(x, w)
  return onednn.conv_forward(x, w, strides, pads)


def _onednn_conv_fwd(x, w, strides, pads, winograd):
  return _onednn_forward(x, w, strides, pads, winograd), (x, w)


def _onednn_conv_bwd(strides, pads, winograd, residuals, g):
  x, w = residuals
  if takes_winograd(w.shape, strides, pads, g.dtype, winograd=winograd):
    return onednn.winograd_conv(g, w, flip=True), onednn.winograd_filter_grad(x, g)
  return (onednn.conv_input_grad(g, w, x.shape, strides, pads),
          onednn.conv_filter_grad(x, g, w.shape[:2], strides, pads))


onednn_conv.defvjp(_onednn_conv_fwd, _onednn_conv_bwd)


def takes_onednn_route(x_shape, w_shape, strides, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, dtype=jnp.float32) -> bool:
  """Whether a convolution of these settings takes `onednn_conv` on a CPU: a
  dense 2-D NHWC/HWIO convolution, any stride, from MIN_ONEDNN_MACS per example
  up, of a dtype that oneDNN's kernels take here (onednn.takes)."""
  if not (len(x_shape) == 4 and _dense(lhs_dilation, rhs_dilation, feature_group_count)
          and _nhwc(x_shape, w_shape, dimension_numbers)):
    return False
  return macs_per_example(x_shape, w_shape, strides) >= MIN_ONEDNN_MACS and onednn.takes(dtype)


def macs_per_example(x_shape, w_shape, strides) -> int:
  """Multiply-adds of one example of a dense NHWC/HWIO convolution: H * W * C
  inputs, each in kh * kw * F products, once per stride step."""
  return math.prod(x_shape[1:]) * math.prod(w_shape) // (x_shape[3] * math.prod(strides))


def _dense(lhs_dilation, rhs_dilation, feature_group_count) -> bool:
  """Neither dilated nor grouped."""
  return (all(tuple(d or (1, 1)) == (1, 1) for d in (lhs_dilation, rhs_dilation))
          and feature_group_count == 1)


def _nhwc(x_shape, w_shape, dimension_numbers) -> bool:
  return lax.conv_dimension_numbers(x_shape, w_shape, dimension_numbers) == \
      lax.conv_dimension_numbers(x_shape, w_shape, ("NHWC", "HWIO", "NHWC"))


def explicit_pads(x_shape, w_shape, strides, padding):
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides, padding)
  return tuple(tuple(int(p) for p in pair) for pair in padding)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None,
                         winograd: bool = True, **kwargs):
  """lax.conv_general_dilated (flax's nn.Conv hook) that lowers to
  `onednn_conv` for a CPU where the layer takes it, and to lax's elsewhere."""
  def xla(x, w):
    return lax.conv_general_dilated(x, w, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, precision=precision,
                                    **kwargs)

  if not (precision is None and not kwargs and lhs.dtype == rhs.dtype
          and takes_onednn_route(lhs.shape, rhs.shape, window_strides, lhs_dilation, rhs_dilation,
                                 dimension_numbers, feature_group_count, lhs.dtype)):
    return xla(lhs, rhs)
  strides = tuple(int(s) for s in window_strides)
  pads = explicit_pads(lhs.shape, rhs.shape, window_strides, padding)
  cpu = lambda x, w: onednn_conv(x, w, strides, pads, winograd)
  return lax.platform_dependent(lhs, rhs, cpu=cpu, default=xla)


# ----------------------------------------------------------------------------
# 2x2 max pooling
# ----------------------------------------------------------------------------
def flax_max_pool_2x2(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def max_pool_2x2(x):
  """2x2 max pooling, stride 2 (VALID): lowered for a CPU, from
  MIN_POOL_ELEMENTS input elements per example up, as `elementwise_max_pool_2x2`;
  elsewhere flax's."""
  if x.shape[1] * x.shape[2] * x.shape[3] >= MIN_POOL_ELEMENTS:
    return lax.platform_dependent(x, cpu=elementwise_max_pool_2x2, default=flax_max_pool_2x2)
  return flax_max_pool_2x2(x)


def _windows(x):
  """[B, H, W, C] -> [B, H/2, 2, W/2, 2, C], an odd last row or column dropped
  (VALID pooling)."""
  b, h, w, c = x.shape
  return x[:, :h - h % 2, :w - w % 2].reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def elementwise_max_pool_2x2(x):
  """flax_max_pool_2x2 with a gradient of elementwise ops: XLA:CPU runs lax's
  (a reduce-window that tracks argmax indices in int32 maps of the input's
  size, then a scatter) several times slower. The gradient goes to each
  window's first maximum in row-major order, as lax's does."""
  return jnp.max(_windows(x), axis=(2, 4))


def _max_pool_fwd(x):
  y = jnp.max(_windows(x), axis=(2, 4))
  return y, (x, y)


def _max_pool_bwd(residuals, g):
  x, y = residuals
  win = _windows(x)
  hit = win == y[:, :, None, :, None]
  # The first hit in (row, column) order takes the gradient, as in lax's.
  h00, h01, h10, h11 = (hit[:, :, i, :, j] for i in range(2) for j in range(2))
  f01 = h01 & ~h00
  f10 = h10 & ~(h00 | h01)
  f11 = h11 & ~(h00 | h01 | h10)
  first = jnp.stack([jnp.stack([h00, f01], axis=3), jnp.stack([f10, f11], axis=3)], axis=2)
  d = jnp.where(first, g[:, :, None, :, None], jnp.zeros((), g.dtype))
  b, h, w, c = x.shape
  d = d.reshape(b, h - h % 2, w - w % 2, c)
  return (jnp.pad(d, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


elementwise_max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def ops():
  """The seam's (conv_general_dilated, max_pool_2x2) for avjax/models/conv.py;
  raises RuntimeError, in one line saying why, where oneDNN's kernels cannot be
  had here."""
  if not onednn.available():
    raise RuntimeError(f"oneDNN's kernels are unavailable ({onednn.unavailable()}); install "
                       "the cpu extra (pip install 'avjax[cpu]') and a C++ compiler, or use "
                       "config.model.conv='xla'")
  return conv_general_dilated, max_pool_2x2
