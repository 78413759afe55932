"""Model shapes at paper scale (shape inference only) and behaviour at tiny scale."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from avjax import maths, models
from avjax.models import vgg
from tests.conftest import init_with_output


def paper_inputs(batch=2):
  return (jax.ShapeDtypeStruct((batch, 224, 224, 3), jnp.float32),
          jax.ShapeDtypeStruct((batch, 257, 199, 1), jnp.float32))


def test_vgg_subnets_at_paper_scale():
  net = vgg.VGGSubnet()
  frames, spec = paper_inputs()
  out = jax.eval_shape(lambda x: net.init_with_output(jax.random.PRNGKey(0), x, False)[0], frames)
  assert out.shape == (2, 14, 14, 512)
  out = jax.eval_shape(lambda x: net.init_with_output(jax.random.PRNGKey(0), x, False)[0], spec)
  assert out.shape == (2, 16, 12, 512)


@pytest.mark.parametrize("name,keys", [
    ("l3", {"logits": (2, 2)}),
    ("avenet", {"logits": (2, 2), "frame_embedding": (2, 128), "audio_embedding": (2, 128)}),
    ("avolnet", {"logits": (2,), "heatmap": (2, 14, 14), "frame_embedding_map": (2, 14, 14, 128),
                 "audio_embedding": (2, 128)}),
    ("selavi", {"frame_head_logits": (10, 2, 400), "audio_cluster_logits": (2, 400),
                "frame_embedding": (2, 128), "modality_keep": (2, 2)}),
])
def test_paper_scale_outputs(name, keys):
  model = models.build(ConfigDict({"name": name}))
  frames, spec = paper_inputs()
  out = jax.eval_shape(
      lambda f, s: model.init_with_output(jax.random.PRNGKey(0), f, s, False)[0], frames, spec)
  for k, shape in keys.items():
    assert out[k].shape == shape, k


def tiny(name, **kw):
  return models.build(ConfigDict(dict(name=name, vision_widths=(4, 8), audio_widths=(4, 8), **kw)))


def tiny_inputs(seed=0):
  r = np.random.default_rng(seed)
  return (jnp.asarray(r.normal(size=(3, 32, 32, 3)), jnp.float32),
          jnp.asarray(r.normal(size=(3, 33, 40, 1)), jnp.float32))


@pytest.mark.parametrize("name", ["avenet", "avolnet"])
def test_embeddings_are_unit_norm(name):
  model = tiny(name, embed_dim=16)
  out, _ = init_with_output(model, jax.random.PRNGKey(0), *tiny_inputs())
  np.testing.assert_allclose(np.linalg.norm(out["audio_embedding"], axis=-1), 1, rtol=1e-5)
  key = "frame_embedding_map" if name == "avolnet" else "frame_embedding"
  np.testing.assert_allclose(np.linalg.norm(out[key], axis=-1), 1, rtol=1e-5)


@pytest.mark.parametrize("last_kernel,seen", [(3, 61), (1, 29)])
def test_last_kernel_sets_what_a_map_cell_sees(last_kernel, seen):
  """Three blocks (the tiny AVOL-Net's vision net): a cell of the map depends on
  61 rows of pixels with 3x3 convs throughout, on 29 when the last block's are
  1x1 (a 128 px frame, so that the frame's edge does not cut the window)."""
  net = vgg.VGGSubnet((4, 4, 4), last_kernel=last_kernel)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 128, 128, 3)), jnp.float32)
  variables = net.init(jax.random.PRNGKey(0), x, False)
  assert net.apply(variables, x, False).shape == (1, 16, 16, 4)
  grad = jax.grad(lambda x: net.apply(variables, x, False)[0, 8, 8].sum())(x)
  rows = np.flatnonzero(np.abs(np.asarray(grad)).sum(axis=(0, 2, 3)) > 0)
  assert rows.max() - rows.min() + 1 == seen


def test_avol_score_is_max_of_map():
  model = tiny("avolnet", embed_dim=16)
  out, _ = init_with_output(model, jax.random.PRNGKey(1), *tiny_inputs())
  np.testing.assert_allclose(jax.nn.sigmoid(out["logits"]), out["heatmap"].max(axis=(1, 2)),
                             rtol=1e-6)


def test_avol_soft_pooling():
  """lse tends to the max as its temperature falls and to the mean as it grows;
  topk averages the highest fraction of cells; the model uses the one it is given."""
  m = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 4)), jnp.float32)
  flat = np.asarray(m).reshape(3, -1)
  np.testing.assert_allclose(maths.pool_map(m, "lse", temperature=1e-3), flat.max(1), atol=1e-2)
  np.testing.assert_allclose(maths.pool_map(m, "lse", temperature=1e2), flat.mean(1), atol=2e-2)
  assert np.all(np.asarray(maths.pool_map(m, "lse", temperature=1.0)) < flat.max(1))
  np.testing.assert_allclose(maths.pool_map(m, "topk", topk=0.25),
                             np.sort(flat, 1)[:, -4:].mean(1), rtol=1e-6)
  np.testing.assert_allclose(maths.pool_map(m, "topk", topk=1e-3), flat.max(1), rtol=1e-6)
  np.testing.assert_allclose(maths.pool_map(m, "mean"), flat.mean(1), rtol=1e-6)
  with pytest.raises(ValueError, match="config.model.pooling: unknown 'median'"):
    maths.pool_map(m, "median")
  model = tiny("avolnet", embed_dim=16, pooling="topk", pooling_topk=0.25)
  out, _ = init_with_output(model, jax.random.PRNGKey(1), *tiny_inputs())
  logit_map = jnp.log(out["heatmap"]) - jnp.log1p(-out["heatmap"])
  np.testing.assert_allclose(out["logits"], maths.pool_map(logit_map, "topk", topk=0.25),
                             rtol=1e-4, atol=1e-4)


def test_ave_distance_calibration_prefers_close_pairs():
  model = tiny("avenet", embed_dim=16, calibration="distance")
  _, variables = init_with_output(model, jax.random.PRNGKey(0), *tiny_inputs())
  cal = variables["params"]["calibration"]
  # logit(match) - logit(mismatch) falls as the distance grows.
  slope = cal["kernel"][0, 1] - cal["kernel"][0, 0]
  assert slope < 0


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  model = tiny("avenet", embed_dim=16, dtype="bfloat16")
  out, variables = init_with_output(model, jax.random.PRNGKey(0), *tiny_inputs())
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  assert out["logits"].dtype == jnp.float32


def test_unknown_model_key_is_named():
  with pytest.raises(ValueError, match="embed_dimm"):
    tiny("avenet", embed_dimm=3)
  with pytest.raises(ValueError, match="unknown model 'avenett'"):
    models.build(ConfigDict({"name": "avenett"}))


@pytest.mark.parametrize("name,kw", [("l3", {"contrastive_dim": 8}), ("avenet", {"embed_dim": 16}),
                                     ("avolnet", {"embed_dim": 16}),
                                     ("selavi", {"embed_dim": 16, "num_clusters": 5})])
def test_one_modality_alone_gives_the_joint_call_outputs(name, kw):
  """Embedding extraction runs one branch; it must agree with the full forward pass."""
  model = tiny(name, **kw)
  frames, spec = tiny_inputs()
  joint, variables = init_with_output(model, jax.random.PRNGKey(0), frames, spec)
  vision = model.apply(variables, frames, None, False)
  audio = model.apply(variables, None, spec, False)
  assert "logits" not in vision and "logits" not in audio
  assert {"frame_features", "frame_embedding"} <= set(vision)
  assert {"audio_features", "audio_embedding"} <= set(audio)
  for k, v in {**vision, **audio}.items():
    np.testing.assert_allclose(v, joint[k], rtol=1e-6, atol=1e-6, err_msg=k)


def test_selavi_heads_and_modality_dropout():
  model = tiny("selavi", embed_dim=16, num_heads=3, num_clusters=5, modality_dropout=1.0)
  frames, spec = tiny_inputs()
  out, variables = init_with_output(model, jax.random.PRNGKey(0), frames, spec)
  assert out["frame_head_logits"].shape == (3, 3, 5)
  np.testing.assert_array_equal(out["audio_cluster_logits"], out["audio_head_logits"][0])
  np.testing.assert_array_equal(out["modality_keep"], np.ones((3, 2)))  # evaluation: both
  # Training with drop-out 1: every example labels from exactly one modality.
  keep, _ = model.apply(variables, frames, spec, True, rngs={"dropout": jax.random.PRNGKey(3)},
                        mutable=["batch_stats"])
  np.testing.assert_array_equal(np.asarray(keep["modality_keep"]).sum(-1), np.ones(3))
  keeps = [np.asarray(model.apply(variables, frames, spec, True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.PRNGKey(s)})[0]["modality_keep"])
           for s in range(8)]
  assert 0 < np.mean([k[:, 0] for k in keeps]) < 1  # both modalities get dropped


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ambient", "cosine"])
def test_one_paper_scale_update_step_on_small_inputs(name):
  """The paper-scale networks of the ambient-sound and cosine configs (SoundNet's
  and sync's are in their own tests): one update on 32 px frames and a short
  spectrogram is finite and moves the weights."""
  import importlib
  from avjax import predict, train
  c = importlib.import_module(f"configs.{name}").get_config()
  c.data.crop, c.data.spectrogram.seconds = 32, 0.25
  model = models.build(c.model)
  fns = predict.model_fns(model, c.data)
  schedule = train.make_schedule(c)
  tx = train.make_optimizer(c, schedule)
  state = predict.jit_once(train.make_init_fn(fns.init, tx))(jax.random.PRNGKey(0))
  frames, spectrogram = predict.dummy_inputs(c.data, 4)
  r = np.random.default_rng(0)
  batch = {"frames": r.integers(0, 255, frames.shape, dtype=np.uint8),
           "spectrogram": r.normal(size=spectrogram.shape).astype(np.float32),
           "label": np.ones(4, np.int32),
           "labels": np.eye(4, 12, dtype=np.int32),
           "sound_target": np.arange(4, dtype=np.int32)[:, None]}
  new, metrics = jax.jit(train.make_update_fn(model, tx, schedule, c))(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new.params),
                                                        jax.tree.leaves(state.params))]
  assert max(moved) > 0


def lax_conv(x, w, pads):
  """The reference: lax's stride-1 NHWC/HWIO convolution with explicit padding."""
  from jax import lax
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def skip_without_compiler(fallback: str) -> None:
  """The native kernels build with the system C++ compiler; without one, `fallback`."""
  import shutil
  if shutil.which(os.environ.get("CXX", "c++")) is None:
    pytest.skip(f"no C++ compiler: {fallback}")


@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((0, 2), (2, 0))])
def test_tap_conv_gradients_equal_lax(pads):
  """The per-tap filter gradient (conv.tap_conv, taken on CPU from 3,000 output
  pixels up) gives lax's gradients, with lax's forward and input gradient."""
  from avjax.models import conv
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=(2, 9, 7, 5)).astype(np.float32))
  w = jnp.asarray(r.normal(size=(3, 3, 5, 4)).astype(np.float32))
  plain = lambda x, w: lax_conv(x, w, pads)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  np.testing.assert_array_equal(conv.tap_conv(x, w, pads), plain(x, w))
  ours, theirs = (jax.grad(loss(f), (0, 1))(x, w)
                  for f in (lambda x, w: conv.tap_conv(x, w, pads), plain))
  np.testing.assert_array_equal(ours[0], theirs[0])
  np.testing.assert_allclose(ours[1], theirs[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((0, 2), (2, 0))])
def test_native_filter_gradient_equals_float64_and_lax(pads):
  """The native CPU kernel (models/native.py) builds, is taken for float32 maps
  of 8k channels and 32k features, and gives the filter gradient of a float64
  einsum to float32 rounding, and lax's to the tap route's tolerance. Three
  images of 9x7 put image boundaries inside the kernel's row chunks."""
  from avjax.models import conv, native
  skip_without_compiler("the library falls back to tap_filter_grad (tested above)")
  assert native.filter_grad_target() == native.TARGET
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=(3, 9, 7, 8)).astype(np.float32))
  w = jnp.asarray(r.normal(size=(3, 3, 8, 64)).astype(np.float32))
  plain = lambda x, w: lax_conv(x, w, pads)
  g = jnp.asarray(r.normal(size=plain(x, w).shape).astype(np.float32))
  assert native.takes_kernel(8, 64, jnp.float32) and not native.takes_kernel(4, 64, jnp.float32)
  assert not native.takes_kernel(8, 64, jnp.bfloat16)
  ours = jax.jit(lambda x, g: conv.filter_grad(x, g, pads, (3, 3)))(x, g)
  assert "avjax_filter_grad" in jax.jit(
      lambda x, g: conv.filter_grad(x, g, pads, (3, 3))).lower(x, g).as_text()
  (lo_h, hi_h), (lo_w, hi_w) = pads
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
  ho, wo = g.shape[1:3]
  want = np.stack([np.einsum("nhwc,nhwf->cf", xp[:, i:i + ho, j:j + wo], np.asarray(g, np.float64))
                   for i in range(3) for j in range(3)]).reshape(3, 3, 8, 64)
  np.testing.assert_allclose(ours, want, atol=1e-5 * np.abs(want).max(), rtol=0)
  theirs = jax.vjp(lambda w: plain(x, w), w)[1](g)[0]
  np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
  # Many-core splits: row groups (with their buffers) and feature ranges.
  for n in (1, 3, 8):
    split = native.filter_grad(conv._padded(x, pads), g, (3, 3), num_threads=n)
    np.testing.assert_allclose(split, want, atol=1e-5 * np.abs(want).max(), rtol=0)
  # Two independent calls in one program, which XLA may run side by side on its
  # pool (as the two towers' layers), each putting parts on that pool.
  both = jax.jit(lambda x, g: (conv.filter_grad(x, g, pads, (3, 3)),
                               conv.filter_grad(x, -g, pads, (3, 3))))(x, g)
  np.testing.assert_array_equal(both[0], ours)
  np.testing.assert_allclose(both[1], -want, atol=1e-5 * np.abs(want).max(), rtol=0)


@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((0, 2), (2, 0))])
def test_native_forward_and_input_gradient_equal_float64_and_lax(pads, monkeypatch):
  """conv_fwd.cc (models/native.py) computes tap_conv's forward and input
  gradient where conv.NATIVE_FORWARD_PAIRS names the layer's (channels,
  features), both within float32 rounding of float64 and of lax's. The map is
  14 wide, so a row holds one full 12-pixel tile and a short one."""
  from avjax.models import conv, native
  skip_without_compiler("the library keeps lax's forward and input gradient")
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=(2, 5, 14, 32)).astype(np.float32))
  w = jnp.asarray(r.normal(size=(3, 3, 32, 64)).astype(np.float32))
  plain = lambda x, w: lax_conv(x, w, pads)
  g = jnp.asarray(r.normal(size=plain(x, w).shape).astype(np.float32))
  f64 = lambda a: np.asarray(a, np.float64)
  with jax.enable_x64():
    want_y, vjp = jax.vjp(lambda x: lax_conv(x, f64(w), pads), f64(x))
    want_dx = np.asarray(vjp(f64(g))[0])
    want_y = np.asarray(want_y)
  # The forward of a (32, 64) layer, and the input gradient of a (64, 32) one.
  monkeypatch.setattr(conv, "NATIVE_FORWARD_PAIRS", frozenset({(32, 64)}))
  assert conv.takes_native_forward(32, 64, jnp.float32)
  assert not conv.takes_native_forward(64, 32, jnp.float32)
  fwd = jax.jit(lambda x, w: conv.tap_conv(x, w, pads))
  assert "avjax_conv_forward" in fwd.lower(x, w).as_text()
  tol = lambda want: dict(atol=1e-5 * np.abs(want).max(), rtol=0)
  np.testing.assert_allclose(fwd(x, w), want_y, **tol(want_y))
  np.testing.assert_allclose(fwd(x, w), plain(x, w), **tol(want_y))
  monkeypatch.setattr(conv, "NATIVE_FORWARD_PAIRS", frozenset({(64, 32)}))
  dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv.tap_conv(x, w, pads), x)[1](g)[0])
  assert "avjax_conv_forward" in dx.lower(x, w, g).as_text()
  np.testing.assert_allclose(dx(x, w, g), want_dx, **tol(want_dx))
  theirs = jax.vjp(lambda x: plain(x, w), x)[1](g)[0]
  np.testing.assert_allclose(dx(x, w, g), theirs, **tol(want_dx))
  # Many threads: rows split unevenly.
  for n in (1, 3, 7):
    split = native.conv_forward(conv._padded(x, pads), w, num_threads=n)
    np.testing.assert_allclose(split, want_y, **tol(want_y))


@pytest.mark.parametrize("compiler", ["avjax-no-such-compiler", "false"])
def test_native_kernel_unavailable_logs_why_and_falls_back(compiler, monkeypatch, tmp_path,
                                                           caplog):
  """No compiler on PATH, or one that fails (`false` exits 1): no target, one
  warning naming the cause, and nothing left in the kernel cache."""
  from avjax.models import native
  monkeypatch.setenv("CXX", compiler)
  monkeypatch.setenv("AVJAX_KERNEL_CACHE", str(tmp_path))
  with caplog.at_level("WARNING"):
    assert native.filter_grad_target.__wrapped__() is None
  assert "convolution kernels are unavailable" in caplog.text
  assert (compiler in caplog.text) and not list(tmp_path.iterdir())


def require_onednn() -> None:
  """On x86-64 Linux the project's `cpu` extra (in `test`) installs oneDNN, so
  its kernels must build there; elsewhere the library keeps its own kernels."""
  import platform
  import sys
  from avjax.models import onednn
  skip_without_compiler("the library keeps its own kernels and lax's convolutions")
  if not (sys.platform == "linux" and platform.machine() == "x86_64"):
    pytest.skip("no oneDNN wheel for this platform: the library keeps its own kernels")
  assert onednn.available()


def onednn_conv_and_float64_lax(x, w, g, strides, pads):
  """(the HLO text of conv_general_dilated's forward and both gradients, jitted,
  their values, and float64 lax's on the same operands): the route's checks."""
  from jax import lax
  from avjax.models import conv
  dims = ("NHWC", "HWIO", "NHWC")
  ours = lambda x, w: conv.conv_general_dilated(x, w, strides, pads, dimension_numbers=dims)
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
  models/onednn.py) is taken by conv_general_dilated for a dense float32 NHWC
  convolution (here from 0 multiply-adds up) and is within float32 rounding of
  float64 lax, at strides 1 and 2, uneven pads, and odd map sizes (a stride-2
  convolution then leaves the last row unread)."""
  from avjax.models import conv
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
  from avjax.models import conv
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
  # WINOGRAD off: oneDNN's direct kernels again.
  monkeypatch.setattr(conv, "WINOGRAD", False)
  assert "avjax_winograd_conv" not in onednn_conv_and_float64_lax(x, w, g, (1, 1), pads)[0]


def test_onednn_bfloat16_convolution_and_gradients_within_one_bfloat16_step(monkeypatch):
  """In bfloat16 (on CPUs that compute it natively) conv.onednn_conv's forward
  and both gradients are bfloat16 and within one bfloat16 step (2^-7 relative)
  of float64 lax on the same bfloat16 operands: oneDNN accumulates in float32
  and rounds once."""
  from avjax.models import conv, onednn
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
  from avjax.models import conv, onednn
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


def test_onednn_unavailable_logs_why(monkeypatch, tmp_path, caplog):
  """A oneDNN prefix without its header: no kernels, one warning naming the
  prefix, and conv.py's other routes (tested above) stay in use."""
  from avjax.models import onednn
  monkeypatch.setenv("AVJAX_ONEDNN_ROOT", str(tmp_path))
  with caplog.at_level("WARNING"):
    assert onednn._library.__wrapped__() is None
  assert "oneDNN's CPU convolutions are unavailable" in caplog.text
  assert str(tmp_path) in caplog.text


def test_vgg_convolutions_take_the_tap_route_on_large_cpu_maps_only():
  from avjax.models import conv, native
  route = lambda hw, strides=(1, 1): conv.takes_tap_route(
      (16, *hw, 64), (3, 3, 64, 64), strides, None, None, ("NHWC", "HWIO", "NHWC"), 1)
  assert route((56, 56)) and route((129, 100)) and not route((14, 14))
  # 28x28 maps take it only where the native filter gradient does.
  assert route((28, 28)) == (conv.NATIVE_FILTER_GRAD and native.takes_kernel(64, 64, jnp.float32))
  assert not route((112, 112), strides=(2, 2))
  assert not conv.takes_tap_route((16, 56, 56, 64), (1, 1, 64, 64), (1, 1), None, None,
                                  ("NHWC", "HWIO", "NHWC"), 1)
  # A VGG block at a 56x56 map takes it on CPU (tap_conv's gradients are tested above).
  block = vgg.ConvBNReLU(8)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 56, 56, 3)).astype(np.float32))
  variables = block.init(jax.random.PRNGKey(0), x, train=False)
  jaxpr = str(jax.make_jaxpr(lambda v: block.apply(v, x, train=False))(variables))
  assert ("custom_vjp_call" in jaxpr) == (jax.default_backend() == "cpu")


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (2, 7, 5, 3)])
def test_max_pool_2x2_equals_flax_with_ties(shape):
  """conv.elementwise_max_pool_2x2 (the towers' pooling on CPU) gives nn.max_pool's
  values and gradients, ties included: the first maximum in row-major order takes it."""
  import flax.linen as nn
  from avjax.models import conv
  r = np.random.default_rng(0)
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
  for x in (r.normal(size=shape), np.round(np.maximum(r.normal(size=shape), 0))):  # ties: zeros, ones
    x = jnp.asarray(x.astype(np.float32))
    g = jnp.asarray(r.normal(size=ref(x).shape).astype(np.float32))
    pool = conv.elementwise_max_pool_2x2
    np.testing.assert_array_equal(pool(x), ref(x))
    np.testing.assert_array_equal(jax.vjp(pool, x)[1](g)[0], jax.vjp(ref, x)[1](g)[0])
