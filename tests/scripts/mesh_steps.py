"""Runs 5 training steps on N host devices and saves the losses and params.

  python tests/scripts/mesh_steps.py N DATA_DIR OUT.npz
"""
import os
import sys

NUM_DEVICES = int(sys.argv[1])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={NUM_DEVICES}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from avjax import input as input_lib  # noqa: E402
from avjax import mesh as mesh_lib  # noqa: E402
from avjax import train  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402


def main(data_dir, out):
  assert jax.device_count() == NUM_DEVICES, jax.devices()
  config = tiny_config("avenet", data_dir)
  config.losses.infonce = 1.0  # the contrastive term couples examples across devices
  mesh = mesh_lib.make_mesh(config)
  fns = train.make_train_functions(config, mesh)
  state = fns.init(jax.random.PRNGKey(config.seed))
  batches = input_lib.make_reader(config.data, "train", global_batch=config.batch_size,
                                  seed=config.seed).train_iterator()
  sharding = mesh_lib.batch_sharding(mesh)
  losses = []
  for _ in range(5):
    state, metrics = fns.update(state, input_lib.to_global(next(batches), sharding))
    losses.append(float(metrics["loss"]))
  flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
          jax.tree_util.tree_leaves_with_path(train.variables_of(state))}
  np.savez(out, losses=np.array(losses), **flat)


if __name__ == "__main__":
  main(sys.argv[2], sys.argv[3])
