"""Convolutions whose training step XLA:CPU runs well.

XLA:CPU computes a 3x3 convolution's filter gradient as one convolution whose
window is the whole feature map, and runs it at 20-35 GFLOP/s on maps of 56x56
or more, where the forward convolution and the input gradient run at 110-180
(benchmarks/conv_layers.py, AVX-512, 2 cores). The same gradient as one dot per
kernel tap (the tap's shifted input against the output gradient, contracting
over batch and pixels) runs at 40-75 GFLOP/s there, and slower than XLA's from
28x28 down. `conv_general_dilated` takes that route for those layers on CPU
only: accelerators and every other convolution keep lax's.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# Output maps from this many pixels up take the per-tap filter gradient on CPU:
# at 56x56 (3,136) it was 2.4x XLA's; at 28x28 (784) 0.85x.
MIN_TAP_PIXELS = 3000


def tap_filter_grad(x, g, pads, kernel_hw):
  """The filter gradient of a stride-1 NHWC/HWIO convolution: for each tap
  (i, j), the padded input shifted by it against the output gradient g."""
  (lo_h, hi_h), (lo_w, hi_w) = pads
  xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)])
  ho, wo, c, f = g.shape[1], g.shape[2], x.shape[-1], g.shape[-1]
  g2 = g.reshape(-1, f)
  taps = [jnp.einsum("kc,kf->cf", xp[:, i:i + ho, j:j + wo].reshape(-1, c), g2,
                     preferred_element_type=jnp.float32)
          for i in range(kernel_hw[0]) for j in range(kernel_hw[1])]
  return jnp.stack(taps).reshape(*kernel_hw, c, f)


def _plain(x, w, pads):
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def tap_conv(x, w, pads):
  """A stride-1 NHWC/HWIO convolution with explicit padding, lax's forward and
  input gradient, and `tap_filter_grad` as its filter gradient."""
  return _plain(x, w, pads)


def _tap_conv_fwd(x, w, pads):
  return _plain(x, w, pads), (x, w)


def _tap_conv_bwd(pads, residuals, g):
  x, w = residuals
  dx = jax.vjp(lambda x: _plain(x, w, pads), x)[1](g)[0]
  return dx, tap_filter_grad(x, g, pads, w.shape[:2]).astype(w.dtype)


tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)


def takes_tap_route(x_shape, w_shape, strides, lhs_dilation, rhs_dilation, dimension_numbers,
                    feature_group_count, min_pixels: int | None = None) -> bool:
  """Whether a convolution of these settings takes `tap_conv` (on CPU); the
  threshold is MIN_TAP_PIXELS when the call is traced, unless given."""
  min_pixels = MIN_TAP_PIXELS if min_pixels is None else min_pixels
  dense = (tuple(strides) == (1, 1) and all(tuple(d or (1, 1)) == (1, 1)
                                             for d in (lhs_dilation, rhs_dilation))
           and feature_group_count == 1)
  nhwc = lax.conv_dimension_numbers(x_shape, w_shape, dimension_numbers) == \
      lax.conv_dimension_numbers(x_shape, w_shape, ("NHWC", "HWIO", "NHWC"))
  return (len(x_shape) == 4 and dense and nhwc and w_shape[0] * w_shape[1] > 1
          and x_shape[1] * x_shape[2] >= min_pixels)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None,
                         **kwargs):
  """lax.conv_general_dilated (flax's nn.Conv hook), with the per-tap filter
  gradient on CPU where it is faster (see the module's docstring)."""
  if (jax.default_backend() == "cpu" and precision is None and not kwargs
      and takes_tap_route(lhs.shape, rhs.shape, window_strides, lhs_dilation, rhs_dilation,
                          dimension_numbers, feature_group_count)):
    pads = padding
    if isinstance(padding, str):
      pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    return tap_conv(lhs, rhs, tuple(tuple(int(p) for p in pair) for pair in pads))
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                  dimension_numbers, feature_group_count, precision=precision,
                                  **kwargs)
