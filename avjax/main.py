"""Train from a config: python -m avjax.main --config=configs/avenet.py:tiny --workdir=DIR

Any config field can be overridden, e.g. --config.optimizer.lr=3e-4; a field that
does not exist is an error. With no config.data.dir the embedded default dataset
is generated (once) and used.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints and logs go")
_MULTIHOST = flags.DEFINE_bool("multihost", False,
                               "call jax.distributed.initialize() (TPU pods, multi-node GPU)")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 (with --multihost)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "with --multihost")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "with --multihost")
flags.mark_flags_as_required(["config", "workdir"])


def hide_accelerators_from_tf():
  """tf.data runs on the CPU; without this TF would reserve GPU memory JAX needs."""
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  hide_accelerators_from_tf()
  import jax
  if _MULTIHOST.value:
    # With no arguments JAX detects TPU pods, SLURM and Open MPI by itself.
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from avjax import train
  logging.info("devices: %s", jax.devices())
  metrics = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print("final validation metrics:")
    for k, v in metrics.items():
      print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")


def parse_flags(argv):
  """absl flag parsing, with config errors said in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, ValueError, TypeError, flags.Error) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    # A config file that raised: its last line is the exception; else keep it all.
    detail = lines[-1] if "Traceback" in text else " ".join(lines)
    sys.exit(f"config error: {detail}" + (f" (overrides: {' '.join(overrides)})" if overrides else ""))


def run():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
