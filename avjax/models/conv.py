"""Convolutions (and the VGG towers' pooling) whose training step XLA:CPU runs well.

On CPU, where oneDNN is installed (the `cpu` extra), `conv_general_dilated`
gives dense NHWC convolutions from MIN_ONEDNN_MACS multiply-adds per example up
(every paper-scale VGG layer, no tiny one) to `onednn_conv`: the float32 3x3
ones of stride 1 and padding 1 (all but each tower's first) by Winograd's
F(2x2, 3x3) (takes_winograd; winograd_conv.cc), forward and both gradients;
the others by oneDNN's primitives, the kernels PyTorch's CPU convolutions run
(onednn.py), in float32, and in bfloat16 where the CPU computes it natively
(onednn.takes). The rest of this docstring is the route everywhere else on CPU:
smaller convolutions, and every one where oneDNN is not installed.

XLA:CPU computes a 3x3 convolution's filter gradient as one convolution whose
window is the whole feature map, and runs it at 20-35 GFLOP/s on maps of 56x56
or more, where the forward convolution and the input gradient run at 110-180
(benchmarks/conv_layers.py, AVX-512, 2 cores). On CPU, `conv_general_dilated`
gives those layers a custom gradient (`tap_conv`: lax's forward and input
gradient) whose filter gradient is:
- the native kernel (native.py, filter_grad.cc; 120-170 GFLOP/s) for float32
  layers of 8k channels and 32k features on one device, from MIN_NATIVE_PIXELS
  (28x28 maps) up;
- else one dot per kernel tap (the tap's shifted input against the output
  gradient, contracting over batch and pixels; 40-75 GFLOP/s), from
  MIN_TAP_PIXELS (56x56) up, below which XLA's own is faster.
Where the native forward kernel (conv_fwd.cc) takes a layer's (channels,
features) pair (NATIVE_FORWARD_PAIRS: 128 into 64, which YNNPACK runs at half its
usual speed), it computes that layer's forward, or its input gradient (a
convolution of the output gradient with the flipped kernel), in lax's place.
Accelerators and every other convolution keep lax's. `max_pool_2x2` chooses the
same way for the towers' 2x2 max pooling.
"""
from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from avjax.models import native
from avjax.models import onednn

# Output maps from this many pixels up take the per-tap filter gradient on CPU:
# at 56x56 (3,136) it was 2.4x XLA's; at 28x28 (784) 0.85x.
MIN_TAP_PIXELS = 3000
# Whether filter gradients take the native kernel (native.py) where it applies
# (benchmarks/train_step.py turns it off for its reference rows), and from how
# many output pixels: at 28x28 and 32x25 it ran at 140-163 GFLOP/s against XLA's
# 95-101; at 14x14 and 16x12 (512 channels) at 122-131 against 128-132.
NATIVE_FILTER_GRAD = True
MIN_NATIVE_PIXELS = 600
# (input channels, output features) of the stride-1 convolutions that the native
# forward kernel computes on CPU, where tap_conv computes them (its forward, or
# its input gradient: the output gradient's convolution into the layer's input
# channels). 128 into 64 ran at 163-185 GFLOP/s against lax's (YNNPACK) 82-104
# on 56x56 and 64x50 maps; AVE-Net's other pairs at 0.8-1.0x lax's speed.
NATIVE_FORWARD_PAIRS = frozenset({(128, 64)})
# Whether the towers' 2x2 max pooling takes `elementwise_max_pool_2x2` on CPU
# (benchmarks/train_step.py turns it off for its reference row), and from how
# many input elements per example (H*W*C): forward + gradient at batch 16, it
# was 15-36x lax's from 14x14x512 (100k) to 56x56x128 (400k), and 4-7x on the
# tiny configs' maps (8k-26k), which stay below so their programs are unchanged.
CPU_MAX_POOL = True
MIN_POOL_ELEMENTS = 100_000
# Whether dense NHWC convolutions take oneDNN's kernels (onednn.py) on
# CPU where they are installed (benchmarks/train_step.py turns it off for its
# reference rows), and from how many multiply-adds per example (per call, so
# that a larger batch does not move a layer across): the paper-scale AVE-Net's
# (7.4M-231M) took a whole update from 2764 to 2489 ms; the tiny configs'
# (0.2M-3.7M) took a batch-16 update from 44.5 to 54.9 ms, so they stay below.
ONEDNN = True
MIN_ONEDNN_MACS = 5_000_000
# Whether, on that route, float32 3x3 convolutions of stride 1 and padding 1
# take Winograd's F(2x2, 3x3) for their forward and both gradients
# (onednn.winograd_conv, winograd_filter_grad: 16 multiplies per 2x2 outputs
# where oneDNN's direct kernels do 36). Over AVE-Net's stride-1 layers, batch
# 16, forward and input gradient ran at 1.4-1.8x oneDNN's direct kernels from
# 56x56x128 down to 14x14x512, 1.2x at 56x56x64 and 1.0-1.05x at 112x112x64;
# the filter gradient at 1.2-1.8x (benchmarks/conv_layers.py).
WINOGRAD = True


def _padded(x, pads):
  (lo_h, hi_h), (lo_w, hi_w) = pads
  return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)])


def tap_filter_grad(x, g, pads, kernel_hw):
  """The filter gradient of a stride-1 NHWC/HWIO convolution: for each tap
  (i, j), the padded input shifted by it against the output gradient g."""
  xp = _padded(x, pads)
  ho, wo, c, f = g.shape[1], g.shape[2], x.shape[-1], g.shape[-1]
  g2 = g.reshape(-1, f)
  taps = [jnp.einsum("kc,kf->cf", xp[:, i:i + ho, j:j + wo].reshape(-1, c), g2,
                     preferred_element_type=jnp.float32)
          for i in range(kernel_hw[0]) for j in range(kernel_hw[1])]
  return jnp.stack(taps).reshape(*kernel_hw, c, f)


def _plain(x, w, pads):
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def takes_native_forward(channels: int, features: int, dtype) -> bool:
  return (channels, features) in NATIVE_FORWARD_PAIRS and native.takes_forward_kernel(
      features, dtype)


def forward(x, w, pads):
  """A stride-1 NHWC/HWIO convolution: the native kernel where it takes the
  (channels, features) pair, else lax's."""
  if x.dtype == w.dtype and takes_native_forward(x.shape[-1], w.shape[-1], x.dtype):
    return native.conv_forward(_padded(x, pads), w)
  return _plain(x, w, pads)


def input_grad(x, w, pads, g):
  """dx of forward(x, w, pads) for output gradient g: where the native kernel
  takes the swapped (features, channels) pair, g padded by the kernel's size
  less the forward's padding, convolved with the kernel flipped and its channels
  and features swapped; else (and where those pads would be negative) lax's
  transpose."""
  (lo_h, hi_h), (lo_w, hi_w) = pads
  kh, kw = w.shape[:2]
  back = ((kh - 1 - lo_h, kh - 1 - hi_h), (kw - 1 - lo_w, kw - 1 - hi_w))
  if (min(min(p) for p in back) >= 0 and g.dtype == w.dtype
      and takes_native_forward(w.shape[3], w.shape[2], g.dtype)):
    return native.conv_forward(_padded(g, back), jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
  return jax.vjp(lambda x: _plain(x, w, pads), x)[1](g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def tap_conv(x, w, pads):
  """A stride-1 NHWC/HWIO convolution with explicit padding, `forward` and
  `input_grad` (lax's, or the native kernel's for NATIVE_FORWARD_PAIRS), and
  `filter_grad` as its filter gradient."""
  return forward(x, w, pads)


def _tap_conv_fwd(x, w, pads):
  return forward(x, w, pads), (x, w)


def _tap_conv_bwd(pads, residuals, g):
  x, w = residuals
  return input_grad(x, w, pads, g), filter_grad(x, g, pads, w.shape[:2]).astype(w.dtype)


def filter_grad(x, g, pads, kernel_hw):
  """The native kernel's filter gradient where it takes these operands (and
  NATIVE_FILTER_GRAD is on), else `tap_filter_grad`."""
  if x.dtype == g.dtype and takes_native_filter_grad(x.shape[-1], g.shape[-1], x.dtype):
    return native.filter_grad(_padded(x, pads), g, kernel_hw)
  return tap_filter_grad(x, g, pads, kernel_hw)


tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)


def takes_native_filter_grad(channels: int, features: int, dtype) -> bool:
  return NATIVE_FILTER_GRAD and native.takes_kernel(channels, features, dtype)


def takes_tap_route(x_shape, w_shape, strides, lhs_dilation, rhs_dilation, dimension_numbers,
                    feature_group_count, dtype=jnp.float32) -> bool:
  """Whether a convolution of these settings takes `tap_conv` on CPU: from
  MIN_TAP_PIXELS input pixels up, or from MIN_NATIVE_PIXELS where the native
  filter gradient takes it (the settings are read when the call is traced)."""
  dense = tuple(strides) == (1, 1) and _dense(lhs_dilation, rhs_dilation, feature_group_count)
  if not (len(x_shape) == 4 and dense and _nhwc(x_shape, w_shape, dimension_numbers)
          and w_shape[0] * w_shape[1] > 1):
    return False
  pixels = x_shape[1] * x_shape[2]
  return pixels >= MIN_TAP_PIXELS or (
      pixels >= MIN_NATIVE_PIXELS and takes_native_filter_grad(x_shape[3], w_shape[3], dtype))


def takes_winograd(w_shape, strides, pads, dtype) -> bool:
  """Whether `onednn_conv` computes a convolution's forward and both gradients
  by Winograd's F(2x2, 3x3): float32, a 3x3 kernel, stride 1, padding 1 on
  every side (VGG's "SAME"), and WINOGRAD on."""
  return (WINOGRAD and dtype == jnp.float32 and tuple(w_shape[:2]) == (3, 3)
          and tuple(strides) == (1, 1) and tuple(map(tuple, pads)) == ((1, 1), (1, 1)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def onednn_conv(x, w, strides, pads):
  """An NHWC/HWIO convolution (float32 or bfloat16) with explicit padding whose
  forward and both gradients are Winograd's where `takes_winograd`, else
  oneDNN's primitives (onednn.py)."""
  return _onednn_forward(x, w, strides, pads)


def _onednn_forward(x, w, strides, pads):
  if takes_winograd(w.shape, strides, pads, x.dtype):
    return onednn.winograd_conv(x, w)
  return onednn.conv_forward(x, w, strides, pads)


def _onednn_conv_fwd(x, w, strides, pads):
  return _onednn_forward(x, w, strides, pads), (x, w)


def _onednn_conv_bwd(strides, pads, residuals, g):
  x, w = residuals
  if takes_winograd(w.shape, strides, pads, g.dtype):
    return onednn.winograd_conv(g, w, flip=True), onednn.winograd_filter_grad(x, g)
  return (onednn.conv_input_grad(g, w, x.shape, strides, pads),
          onednn.conv_filter_grad(x, g, w.shape[:2], strides, pads))


onednn_conv.defvjp(_onednn_conv_fwd, _onednn_conv_bwd)


def takes_onednn_route(x_shape, w_shape, strides, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, dtype=jnp.float32) -> bool:
  """Whether a convolution of these settings takes `onednn_conv` on CPU: a dense
  2-D NHWC/HWIO convolution, any stride, from MIN_ONEDNN_MACS per example up, of a
  dtype that oneDNN's kernels take here (onednn.takes; the settings are read
  when the call is traced)."""
  if not (ONEDNN and len(x_shape) == 4 and _dense(lhs_dilation, rhs_dilation, feature_group_count)
          and _nhwc(x_shape, w_shape, dimension_numbers)):
    return False
  # H * W * C inputs of an example, each in kh * kw * F products, once per stride step.
  macs = math.prod(x_shape[1:]) * math.prod(w_shape) // (x_shape[3] * math.prod(strides))
  return macs >= MIN_ONEDNN_MACS and onednn.takes(dtype)


def _dense(lhs_dilation, rhs_dilation, feature_group_count) -> bool:
  """Neither dilated nor grouped."""
  return (all(tuple(d or (1, 1)) == (1, 1) for d in (lhs_dilation, rhs_dilation))
          and feature_group_count == 1)


def _nhwc(x_shape, w_shape, dimension_numbers) -> bool:
  return lax.conv_dimension_numbers(x_shape, w_shape, dimension_numbers) == \
      lax.conv_dimension_numbers(x_shape, w_shape, ("NHWC", "HWIO", "NHWC"))


def _explicit_pads(x_shape, w_shape, strides, padding):
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides, padding)
  return tuple(tuple(int(p) for p in pair) for pair in padding)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None,
                         **kwargs):
  """lax.conv_general_dilated (flax's nn.Conv hook): on CPU, oneDNN's kernels or
  the per-tap filter gradient where they are faster (see the module's docstring)."""
  cpu = jax.default_backend() == "cpu" and precision is None and not kwargs
  if (cpu and lhs.dtype == rhs.dtype
      and takes_onednn_route(lhs.shape, rhs.shape, window_strides, lhs_dilation, rhs_dilation,
                             dimension_numbers, feature_group_count, lhs.dtype)):
    return onednn_conv(lhs, rhs, tuple(int(s) for s in window_strides),
                       _explicit_pads(lhs.shape, rhs.shape, window_strides, padding))
  if cpu and takes_tap_route(lhs.shape, rhs.shape, window_strides, lhs_dilation, rhs_dilation,
                             dimension_numbers, feature_group_count, lhs.dtype):
    return tap_conv(lhs, rhs, _explicit_pads(lhs.shape, rhs.shape, window_strides, padding))
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                  dimension_numbers, feature_group_count, precision=precision,
                                  **kwargs)


# ----------------------------------------------------------------------------
# 2x2 max pooling
# ----------------------------------------------------------------------------
def _windows(x):
  """[B, H, W, C] -> [B, H/2, 2, W/2, 2, C], an odd last row or column dropped
  (VALID pooling)."""
  b, h, w, c = x.shape
  return x[:, :h - h % 2, :w - w % 2].reshape(b, h // 2, 2, w // 2, 2, c)


def max_pool_2x2(x):
  """2x2 max pooling, stride 2 (VALID): on CPU, from MIN_POOL_ELEMENTS input
  elements per example up, `elementwise_max_pool_2x2`; elsewhere flax's."""
  if (jax.default_backend() == "cpu" and CPU_MAX_POOL
      and x.shape[1] * x.shape[2] * x.shape[3] >= MIN_POOL_ELEMENTS):
    return elementwise_max_pool_2x2(x)
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


@jax.custom_vjp
def elementwise_max_pool_2x2(x):
  """nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID") with a gradient of
  elementwise ops: XLA:CPU runs lax's (a reduce-window that tracks argmax
  indices in int32 maps of the input's size, then a scatter) 3-10x slower. The
  gradient goes to each window's first maximum in row-major order, as lax's does."""
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
