"""The localisation evaluator's image pyramid (config.evals.localisation.scales)."""
import jax
import numpy as np
import pytest

from avjax import config_check, evaluators, mesh as mesh_lib, predict
from avjax.evaluators import localisation
from tests.conftest import tiny_config


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


def test_pyramid_map_is_the_per_pixel_max_over_scales(data_dir):
  """scales "1,2" gives exactly the larger of the plain map and the map of the
  frame enlarged twice (each resized to the crop), and the two differ."""
  config = tiny_config("avolnet", data_dir)
  config.data.eval_split = "validation"
  model = config_check.check(config, training=False)
  fns = predict.model_fns(model, config.data)
  variables = predict.jit_once(fns.init)(jax.random.PRNGKey(0))
  mesh = mesh_lib.make_mesh(config)

  def maps(scales):
    cfg = config.evals.localisation.copy_and_resolve_references()
    cfg.update(batch_size=8, scales=scales)
    ev = evaluators.build("localisation", cfg, fns=fns, mesh=mesh, data_config=config.data,
                          default_split="validation")
    return ev.boxed(variables)["map"]

  one, two, both = maps("1"), maps("2"), maps("1,2")
  assert one.shape == two.shape == both.shape and one.shape[1:] == (config.data.crop,) * 2
  np.testing.assert_allclose(both, np.maximum(one, two), rtol=1e-6, atol=1e-6)
  assert np.abs(one - two).max() > 1e-3
