"""Model shapes at paper scale (shape inference only) and behaviour at tiny scale."""

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
  from avjax import predict
  from tests.conftest import one_update
  c = importlib.import_module(f"configs.{name}").get_config()
  c.data.crop, c.data.spectrogram.seconds = 32, 0.25
  frames, spectrogram = predict.dummy_inputs(c.data, 4)
  r = np.random.default_rng(0)
  batch = {"frames": r.integers(0, 255, frames.shape, dtype=np.uint8),
           "spectrogram": r.normal(size=spectrogram.shape).astype(np.float32),
           "label": np.ones(4, np.int32),
           "labels": np.eye(4, 12, dtype=np.int32),
           "sound_target": np.arange(4, dtype=np.int32)[:, None]}
  state, new, metrics = one_update(c, batch)
  assert np.isfinite(float(metrics["loss"]))
  moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new.params),
                                                        jax.tree.leaves(state.params))]
  assert max(moved) > 0
