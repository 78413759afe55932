"""Evaluate a checkpoint: python -m avjax.evaluate --config=configs/avolnet.py:tiny \\
    --workdir=DIR --evals=avc,localisation --split=test_crowded

Loads the best checkpoint's parameters (highest config.checkpoint.best_metric;
--checkpoint=latest or a step number picks another), runs the chosen evaluators (default: those with
config.evals.<name>.every > 0) on any prepared split, and writes
DIR/eval/metrics_<split>_<step>.json, TensorBoard events under DIR/eval and
PNG pictures under DIR/eval/pictures_<split>_<step>/, then prints a table.
--random_init evaluates the same network at its initialisation instead.
"""
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from avjax import cli
from avjax.evaluators.runner import evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "the training run's workdir")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "best, latest, or a step")
_EVALS = flags.DEFINE_list("evals", [], "evaluators to run (default: those with every > 0)")
_SPLIT = flags.DEFINE_string("split", "", "split for every evaluator without its own split "
                             "(default config.data.eval_split)")
_RANDOM_INIT = flags.DEFINE_bool("random_init", False, "evaluate the network at initialisation")
_PICTURES = flags.DEFINE_bool("pictures", True, "write heatmap overlays and retrieval grids")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  cli.quiet_logging()
  cli.hide_accelerators_from_tf()
  config = cli.loaded_config(_CONFIG)
  from avjax.models import conv
  conv.configure_process(config.model.conv)  # before JAX creates its backends
  record = evaluate(config, _WORKDIR.value, evals=_EVALS.value, checkpoint=_CHECKPOINT.value,
                    split=_SPLIT.value, random_init=_RANDOM_INIT.value, pictures=_PICTURES.value)
  import jax
  if jax.process_index() == 0:
    what = "random init" if record["random_init"] else f"checkpoint step {record['step']}"
    splits = ", ".join(f"{n}: {s}" for n, s in record["splits"].items())
    cli.print_table(f"{what} ({splits})", record["metrics"])
    for p in record["pictures"]:
      print(f"wrote {p}")


def run():
  cli.run("avjax-evaluate", main)


if __name__ == "__main__":
  run()
