"""The accelerator settings every model takes: the bfloat16 policy (parameters and
optimiser state float32, compute bfloat16, losses float32 and finite) and
rematerialisation (config.model.remat: the same loss and gradients, recomputed)."""
import importlib
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs
from avjax import input as input_lib
from avjax import mesh as mesh_lib
from avjax import models, predict, step_inputs, train

CONFIGS = sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
                 if not m.ispkg and m.name != "common")
BATCH = 4


def tiny(name: str, **model):
  config = importlib.import_module(f"configs.{name}").get_config("tiny")
  if "classifier_classes" in config.model:  # the labelled baselines: as many as the labels
    config.model.classifier_classes = config.data.num_classes = (
        config.model.classifier_classes or 10)
  config.batch_size = BATCH
  config.model.update(model)
  return config


def synthetic_batch(config) -> dict:
  return jax.tree.map(jnp.asarray, input_lib.plausible_train_batch(config, BATCH))


@pytest.mark.parametrize("name", CONFIGS)
def test_bfloat16_policy_keeps_float32_state_and_finite_losses(name):
  config = tiny(name, dtype="bfloat16")
  fns = train.make_train_functions(config, mesh_lib.make_mesh(config))
  state = fns.init(jax.random.PRNGKey(0))
  state, metrics = fns.update(state, synthetic_batch(config))
  dtypes = {str(x.dtype) for x in jax.tree.leaves((state.params, state.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)}
  assert dtypes == {"float32"}, dtypes
  assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"])), metrics
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("name", ["avenet", "l3", "sync"])
def test_remat_gives_the_same_loss_and_gradients(name):
  """Each VGG layer (or sync residual block) recomputed in the backward pass:
  the same numbers, and the program does hold the recomputation."""
  config = tiny(name)
  batch = step_inputs.model_inputs(synthetic_batch(config), input_lib.spectrogram_spec(config.data))
  rng = jax.random.PRNGKey(0)
  variables = None
  results = []
  for remat in (False, True):
    config.model.remat = remat
    model = models.build(config.model)
    if variables is None:  # one initialisation: remat leaves the parameter names as they are
      variables = predict.jit_once(predict.model_fns(model, config.data).init)(rng)
    loss_fn = train.make_loss_fn(model, config)
    f = lambda p: loss_fn(p, variables["batch_stats"], batch, rng)[0]
    results.append(jax.jit(jax.value_and_grad(f))(variables["params"]))
    jaxpr = str(jax.make_jaxpr(jax.grad(f))(variables["params"]))
    assert ("remat" in jaxpr or "checkpoint" in jaxpr) == remat
  (loss, grads), (loss_r, grads_r) = results
  np.testing.assert_allclose(loss_r, loss, rtol=1e-5)
  for (path, g), g_r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads_r)):
    np.testing.assert_allclose(g_r, g, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_remat_on_a_model_without_it_is_a_config_error():
  config = tiny("soundnet", remat=True)
  with pytest.raises(ValueError, match="config.model.remat: SoundNet has no rematerialisation"):
    models.build(config.model)
