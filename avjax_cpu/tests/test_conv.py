"""avjax_cpu's convolutions (oneDNN, Winograd) and pooling against lax's, in
float64 where rounding matters; the platform they lower for."""
import functools
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from avjax_cpu import conv, onednn


def require_onednn() -> None:
  """On x86-64 Linux the project's `test` extra installs the `cpu` extra's
  oneDNN and CI has a C++ compiler, so the kernels must build there; elsewhere
  there is no oneDNN wheel to build against."""
  if not (sys.platform == "linux" and platform.machine() == "x86_64"):
    pytest.skip("no oneDNN wheel for this platform")
  assert onednn.available(), onednn.unavailable()


def onednn_conv_and_float64_lax(x, w, g, strides, pads, impl=conv.conv_general_dilated):
  """(the HLO text of impl's forward and both gradients, jitted for this CPU,
  their values, and float64 lax's on the same operands): the route's checks."""
  dims = ("NHWC", "HWIO", "NHWC")
  ours = lambda x, w: impl(x, w, strides, pads, dimension_numbers=dims)
  ref = lambda x, w: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=dims)
  f64 = lambda a: np.asarray(a, np.float64)
  with jax.enable_x64():
    want_y, vjp = jax.vjp(ref, f64(x), f64(w))
    want = [np.asarray(want_y), *map(np.asarray, vjp(f64(g)))]

  def update(x, w, g):
    y, vjp = jax.vjp(ours, x, w)
    return (y, *vjp(g))

  return jax.jit(update).lower(x, w, g).as_text(), jax.jit(update)(x, w, g), want


@pytest.mark.parametrize("strides,pads,hw", [
    ((1, 1), ((1, 1), (1, 1)), (9, 7)),
    ((2, 2), ((1, 1), (1, 1)), (9, 8)),
    ((2, 1), ((0, 2), (1, 0)), (10, 7)),
])
def test_onednn_convolution_and_gradients_equal_float64(strides, pads, hw, monkeypatch):
  """conv.onednn_conv (oneDNN's forward, input gradient and filter gradient,
  avjax_cpu/onednn.py) is taken by conv_general_dilated for a dense float32 NHWC
  convolution (here from 0 multiply-adds up) and is within float32 rounding of
  float64 lax, at strides 1 and 2, uneven pads, and odd map sizes (a stride-2
  convolution then leaves the last row unread)."""
  require_onednn()
  monkeypatch.setattr(conv, "MIN_ONEDNN_MACS", 0)
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=(3, *hw, 5)).astype(np.float32))
  w = jnp.asarray(r.normal(size=(3, 3, 5, 24)).astype(np.float32))
  ours = lambda x, w: conv.conv_general_dilated(x, w, strides, pads,
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
  g = jnp.asarray(r.normal(size=ours(x, w).shape).astype(np.float32))
  text, gots, want = onednn_conv_and_float64_lax(x, w, g, strides, pads)
  # 3x3, stride 1, padding 1: Winograd's (next test).
  winograd = conv.takes_winograd(w.shape, strides, pads, w.dtype)
  assert winograd == (strides == (1, 1))
  for target in ("forward", "input_grad", "filter_grad"):
    assert (f"avjax_onednn_conv_{target}" in text) != winograd
  for got, expected in zip(gots, want):
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
  # Two calls of one shape in one program, which XLA may run side by side (as
  # the two towers' layers): each has its own scratch memory.
  both = jax.jit(lambda x, w: (ours(x, w), ours(-x, w)))(x, w)
  np.testing.assert_allclose(both[0], want[0], atol=1e-5 * np.abs(want[0]).max(), rtol=0)
  np.testing.assert_allclose(both[1], -want[0], atol=1e-5 * np.abs(want[0]).max(), rtol=0)


@pytest.mark.parametrize("hw,channels,features", [((9, 7), 5, 24), ((6, 8), 24, 5),
                                                  ((14, 14), 128, 64)])
def test_winograd_convolution_and_gradients_equal_float64(hw, channels, features, monkeypatch):
  """A float32 3x3 convolution of stride 1 and padding 1 on conv.onednn_conv's
  route takes Winograd's F(2x2, 3x3) (onednn.winograd_conv,
  winograd_filter_grad) for its forward and both gradients, and all three are
  within float32 rounding of float64 lax: odd map sizes (a tile half outside the
  map), more channels than features and fewer, and a paper-scale depth. Its
  workspace is a result of the custom call, one per call, so two calls in one
  program (as the two towers') do not share it."""
  require_onednn()
  monkeypatch.setattr(conv, "MIN_ONEDNN_MACS", 0)
  r = np.random.default_rng(1)
  x = jnp.asarray(r.normal(size=(3, *hw, channels)).astype(np.float32))
  w = jnp.asarray(r.normal(size=(3, 3, channels, features)).astype(np.float32))
  g = jnp.asarray(r.normal(size=(3, *hw, features)).astype(np.float32))
  pads = ((1, 1), (1, 1))
  text, gots, want = onednn_conv_and_float64_lax(x, w, g, (1, 1), pads)
  assert text.count("avjax_winograd_conv") == 2 and "avjax_winograd_filter_grad" in text
  assert "avjax_onednn_conv" not in text
  for got, expected in zip(gots, want):
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
  ours = lambda x: conv.conv_general_dilated(x, w, (1, 1), pads,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
  both = jax.jit(lambda x: (ours(x), ours(-x)))(x)
  np.testing.assert_allclose(both[0], want[0], atol=1e-5 * np.abs(want[0]).max(), rtol=0)
  np.testing.assert_allclose(both[1], -want[0], atol=1e-5 * np.abs(want[0]).max(), rtol=0)
  # Winograd off: oneDNN's direct kernels again.
  direct = functools.partial(conv.conv_general_dilated, winograd=False)
  assert "avjax_winograd_conv" not in onednn_conv_and_float64_lax(x, w, g, (1, 1), pads, direct)[0]


def test_onednn_bfloat16_convolution_and_gradients_within_one_bfloat16_step(monkeypatch):
  """In bfloat16 (on CPUs that compute it natively) conv.onednn_conv's forward
  and both gradients are bfloat16 and within one bfloat16 step (2^-7 relative)
  of float64 lax on the same bfloat16 operands: oneDNN accumulates in float32
  and rounds once."""
  require_onednn()
  if not onednn.native_bfloat16():
    pytest.skip("this CPU has no native bfloat16: bfloat16 convolutions keep lax's")
  monkeypatch.setattr(conv, "MIN_ONEDNN_MACS", 0)
  r = np.random.default_rng(0)
  x, w = (jnp.asarray(r.normal(size=s), jnp.bfloat16) for s in ((3, 9, 7, 5), (3, 3, 5, 24)))
  g = jnp.asarray(r.normal(size=(3, 5, 4, 24)), jnp.bfloat16)
  text, gots, want = onednn_conv_and_float64_lax(x, w, g, (2, 2), ((1, 1), (1, 1)))
  assert "avjax_onednn_conv_filter_grad" in text
  for got, expected in zip(gots, want):
    assert got.dtype == jnp.bfloat16 and got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=2.0 ** -7,
                               atol=1e-5 * np.abs(expected).max())


def test_paper_scale_convolutions_take_onednn_and_tiny_ones_do_not():
  """The route's rule (conv.takes_onednn_route): dense float32 NHWC convolutions
  of MIN_ONEDNN_MACS multiply-adds per example and more, any stride, whatever
  the batch, in float32 and (where the CPU has it) bfloat16; dilated, grouped and
  NCHW convolutions keep lax's."""
  require_onednn()
  nhwc = ("NHWC", "HWIO", "NHWC")
  route = lambda x, w, strides=(1, 1), dtype=jnp.float32, dilation=None, groups=1, dims=nhwc: \
      conv.takes_onednn_route(x, w, strides, None, dilation, dims, groups, dtype)
  assert route((16, 224, 224, 3), (3, 3, 3, 64), (2, 2))  # AVE-Net's first vision layer
  assert route((1, 257, 199, 1), (3, 3, 1, 64), (2, 2))  # and first audio layer: 7.4M
  assert route((16, 14, 14, 512), (3, 3, 512, 512))
  # The tiny config's largest (3.7M per example), at its training and eval batches.
  assert not any(route((b, 65, 25, 16), (3, 3, 16, 16)) for b in (16, 64, 100, 256))
  # bfloat16 where the CPU computes it natively (AVX512_BF16, AMX), else lax's.
  assert route((16, 14, 14, 512), (3, 3, 512, 512), dtype=jnp.bfloat16) == \
      onednn.native_bfloat16()
  assert not route((16, 14, 14, 512), (3, 3, 512, 512), dtype=jnp.float16)
  assert not route((16, 14, 14, 512), (3, 3, 512, 512), dilation=(2, 2))
  assert not route((16, 14, 14, 512), (3, 3, 256, 512), groups=2)
  assert not route((16, 512, 14, 14), (3, 3, 512, 512), dims=("NCHW", "HWIO", "NCHW"))


def test_onednn_unavailable_says_why(monkeypatch, tmp_path):
  """A oneDNN prefix without its header: no kernels, and the reason names the
  prefix."""
  monkeypatch.setenv("AVJAX_ONEDNN_ROOT", str(tmp_path))
  library, why = onednn._loaded.__wrapped__()
  assert library is None and str(tmp_path) in why and "dnnl.hpp" in why


@pytest.mark.parametrize("compiler", ["avjax-no-such-compiler", "false"])
def test_no_compiler_is_one_line_and_leaves_the_cache_empty(compiler, monkeypatch, tmp_path):
  """No compiler on PATH, or one that fails (`false` exits 1): the build says
  why, naming the compiler, and nothing is left in the kernel cache."""
  monkeypatch.setenv("CXX", compiler)
  monkeypatch.setenv("AVJAX_KERNEL_CACHE", str(tmp_path))
  library, why = onednn._loaded.__wrapped__()
  assert library is None and compiler in why and "\n" not in why
  assert not list(tmp_path.iterdir())

@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (2, 7, 5, 3)])
def test_max_pool_2x2_equals_flax_with_ties(shape):
  """conv.elementwise_max_pool_2x2 (the towers' pooling lowered for a CPU) gives nn.max_pool's
  values and gradients, ties included: the first maximum in row-major order takes it."""
  r = np.random.default_rng(0)
  ref = conv.flax_max_pool_2x2
  for x in (r.normal(size=shape), np.round(np.maximum(r.normal(size=shape), 0))):  # ties: zeros, ones
    x = jnp.asarray(x.astype(np.float32))
    g = jnp.asarray(r.normal(size=ref(x).shape).astype(np.float32))
    pool = conv.elementwise_max_pool_2x2
    np.testing.assert_array_equal(pool(x), ref(x))
    np.testing.assert_array_equal(jax.vjp(pool, x)[1](g)[0], jax.vjp(ref, x)[1](g)[0])
