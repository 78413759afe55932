"""The localisation evaluator: its image pyramid (config.evals.localisation.scales)
and the map it scores (config.evals.localisation.map)."""
import jax
import numpy as np
import pytest

from avjax import config_check, evaluators, mesh as mesh_lib, predict
from avjax.evaluators import localisation
from tests.conftest import init_with_output, tiny_config


def test_enlarge_keeps_uint8_and_the_picture():
  frames = np.zeros((2, 8, 8, 3), np.uint8)
  frames[:, 2:4, 4:6] = 200
  big = np.asarray(localisation.enlarge(frames, 2.0))
  assert big.dtype == np.uint8 and big.shape == (2, 16, 16, 3)
  assert big[:, 5:7, 9:11].min() == 200 and big[:, :3].max() == 0
  assert localisation.enlarge(frames, 1.0) is frames
  stack = np.zeros((2, 3, 8, 8, 3), np.uint8)  # a sync network's frame stacks
  assert localisation.enlarge(stack, 1.5).shape == (2, 3, 12, 12, 3)


@pytest.mark.parametrize("bad", ["", "0.5", "1,x", "2,0"])
def test_bad_scales_name_the_key(bad):
  with pytest.raises(ValueError, match="config.evals.localisation.scales"):
    localisation.parse_scales(bad)


def test_pyramid_map_is_the_per_pixel_max_or_mean_over_scales(data_dir):
  """scales "1,2" gives exactly the larger of the plain map and the map of the
  frame enlarged twice (each resized to the crop), and the two differ; fusion
  "mean" their mean; an unknown fusion names the key."""
  config = tiny_config("avolnet", data_dir)
  config.data.eval_split = "validation"
  model = config_check.check(config, training=False)
  fns = predict.model_fns(model, config.data)
  variables = predict.jit_once(fns.init)(jax.random.PRNGKey(0))
  mesh = mesh_lib.make_mesh(config)

  def maps(scales, fusion="max"):
    cfg = config.evals.localisation.copy_and_resolve_references()
    cfg.update(batch_size=8, scales=scales, fusion=fusion)
    ev = evaluators.build("localisation", cfg, fns=fns, mesh=mesh, data_config=config.data,
                          default_split="validation")
    return ev.boxed(variables)["map"]

  one, two, both = maps("1"), maps("2"), maps("1,2")
  assert one.shape == two.shape == both.shape and one.shape[1:] == (config.data.crop,) * 2
  np.testing.assert_allclose(both, np.maximum(one, two), rtol=1e-6, atol=1e-6)
  assert np.abs(one - two).max() > 1e-3
  np.testing.assert_allclose(maps("1,2", "mean"), (one + two) / 2, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="config.evals.localisation.fusion: unknown 'median'"):
    maps("1,2", "median")


def _avol_outputs():
  from avjax import models
  config = tiny_config("avolnet", "unused")
  model = models.build(config.model)
  frames = jax.random.uniform(jax.random.PRNGKey(1), (3, 64, 64, 3))  # a 4x4 map
  spec = jax.random.normal(jax.random.PRNGKey(2), (3, 40, 64, 1))
  return init_with_output(model, jax.random.PRNGKey(0), frames, spec)[0]


def test_similarity_map_is_the_logit_map_under_min_max():
  """AVOL-Net's "similarity" map is its calibrated logit map up to a positive
  affine map: the same after min-max normalisation, so the same fixed-threshold
  foreground, and the sigmoid "heatmap" has the same peak but a smaller one."""
  from avjax import metrics
  out = _avol_outputs()
  # At the map's own size: upsampling after the sigmoid is another matter.
  sim = np.asarray(localisation.localisation_map(out, 4, "similarity"))
  heat = np.asarray(localisation.localisation_map(out, 4, "heatmap"))
  logit = np.log(heat) - np.log1p(-heat)
  np.testing.assert_allclose(metrics.min_max_normalise(sim), metrics.min_max_normalise(logit),
                             atol=1e-3)
  assert (sim.reshape(3, -1).argmax(1) == heat.reshape(3, -1).argmax(1)).all()
  # The sigmoid is convex below 0 (an untrained map's logits): its min-max
  # normalised map sits under the logit's, so fewer pixels pass the threshold.
  fg_sim, fg_heat = metrics.binarise(sim, "fixed"), metrics.binarise(heat, "fixed")
  assert (fg_heat <= fg_sim).all() and fg_heat.sum() < fg_sim.sum()


def test_unknown_map_names_the_key():
  with pytest.raises(ValueError, match="config.evals.localisation.map: unknown 'cam'"):
    localisation.localisation_map(_avol_outputs(), 32, "cam")
  with pytest.raises(ValueError, match="config.evals.localisation.map='heatmap' needs"):
    localisation.localisation_map({"frame_embedding_map": np.zeros((1, 2, 2, 4)),
                                   "audio_embedding": np.zeros((1, 4))}, 32, "heatmap")
