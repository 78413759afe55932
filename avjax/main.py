"""Train from a config: python -m avjax.main --config=configs/avenet.py:tiny --workdir=DIR

Any config field can be overridden, e.g. --config.optimizer.lr=3e-4; a field that
does not exist is an error. With no config.data.dir the embedded default dataset
is generated (once) and used.
"""
from __future__ import annotations

from absl import flags, logging
from ml_collections import config_flags

from avjax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints and logs go")
_MULTIHOST = flags.DEFINE_bool("multihost", False,
                               "call jax.distributed.initialize() (TPU pods, multi-node GPU)")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 (with --multihost)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "with --multihost")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "with --multihost")
_CONFIG_CHANGES_OK = flags.DEFINE_bool(
    "config_changes_ok", False, "continue a workdir with a config unlike the one it started with")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  config = cli.loaded_config(_CONFIG)
  from avjax import config_check
  config_check.check(config)  # before any data is touched
  cli.quiet_logging()
  cli.hide_accelerators_from_tf()
  from avjax.models import conv
  conv.configure_process(config.model.conv)  # before JAX creates its backends
  import jax
  if _MULTIHOST.value:
    # With no arguments JAX detects TPU pods, SLURM and Open MPI by itself.
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from avjax import train
  logging.info("devices: %s", jax.devices())
  metrics = train.train_and_evaluate(config, _WORKDIR.value,
                                     config_changes_ok=_CONFIG_CHANGES_OK.value)
  if jax.process_index() == 0:
    cli.print_table("final validation metrics:", metrics)


def run():
  cli.run("avjax-train", main)


if __name__ == "__main__":
  run()
