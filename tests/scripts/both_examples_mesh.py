"""One sync update on 2 host devices, each clip's frames shipped once
(config.data.both_examples) and, for reference, twice; prints both losses and
the compiled updates' collective ops.

  python tests/scripts/both_examples_mesh.py
"""
import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from avjax import input as input_lib  # noqa: E402
from avjax import mesh as mesh_lib  # noqa: E402
from avjax import train  # noqa: E402
from configs import sync  # noqa: E402
from data_pipelines import contract  # noqa: E402

COLLECTIVES = ("all-gather", "all-to-all", "collective-permute", "all-reduce")


def update(both: bool, batch: dict) -> dict:
  config = sync.get_config("tiny")
  config.data.both_examples, config.batch_size = both, 8
  mesh = mesh_lib.make_mesh(config)
  fns = train.make_train_functions(config, mesh)
  sharding = mesh_lib.batch_sharding(mesh)
  state = fns.init(jax.random.PRNGKey(0))
  placed = {k: jax.device_put(v, sharding) for k, v in batch.items()}
  text = fns.update.lower(state, placed).compile().as_text()
  _, metrics = fns.update(state, placed)
  return {"loss": float(metrics["loss"]), "collectives": {op: text.count(op) for op in COLLECTIVES}}


def main():
  assert jax.device_count() == 2, jax.devices()
  config = sync.get_config("tiny")
  config.data.both_examples = True
  shared = input_lib.plausible_train_batch(config, 8)
  twice = {k: np.repeat(v, 2, axis=0) if k in contract.FRAME_KEYS else v for k, v in shared.items()}
  print(json.dumps({"shared": update(True, shared), "twice": update(False, twice)}))


if __name__ == "__main__":
  main()
