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

import json

from absl import flags
from ml_collections import config_flags

from avjax import cli
from data_pipelines import fs

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


def evaluate(config, workdir: str, *, evals: list[str] = (), checkpoint: str = "best",
             split: str = "", random_init: bool = False, pictures: bool = True) -> dict:
  """Runs the evaluators on a checkpoint; -> the record written to the metrics JSON."""
  import jax

  from avjax import checkpoint as checkpoint_lib
  from avjax import config_check
  from avjax import evaluators
  from avjax import mesh as mesh_lib
  from avjax import predict
  from avjax import summaries

  if split:
    config.data.eval_split = split
  names = list(evals) or list(evaluators.enabled(config.evals))
  unknown = [n for n in names if n not in config.evals]
  if unknown:
    raise ValueError(f"--evals: unknown {unknown}; configured: {sorted(config.evals)}")
  model = config_check.check(config, training=False)
  mesh = mesh_lib.make_mesh(config)
  fns = predict.model_fns(model, config.data)
  if random_init:
    variables, step, tag = fns.init(jax.random.PRNGKey(config.seed)), 0, "random_init"
  else:
    variables, step = checkpoint_lib.load_variables(workdir, config, fns.init, which=checkpoint,
                                                    sharding=mesh_lib.replicated(mesh))
    tag = f"step{step}"
  tag = f"{config.data.eval_split}_{tag}"
  evs = evaluators.build_all({n: config.evals[n] for n in names}, config, fns=fns, mesh=mesh)

  out_dir = fs.join(workdir, "eval")
  metrics, paths = {}, []
  for name, ev in evs.items():
    metrics.update(ev.run(variables))
    if pictures:
      paths += ev.pictures(variables, fs.join(out_dir, f"pictures_{tag}"))
  record = {"step": step, "random_init": random_init, "checkpoint": None if random_init else checkpoint,
            "splits": {n: ev.split for n, ev in evs.items()}, "metrics": metrics, "pictures": paths}
  if jax.process_index() == 0:
    fs.makedirs(out_dir)
    fs.write_text(fs.join(out_dir, f"metrics_{tag}.json"), json.dumps(record, indent=1))
    writer = summaries.SummaryWriter(out_dir)
    prefix = config.data.eval_split + ("_random_init" if random_init else "")
    writer.scalars(step, {f"{prefix}/{k}": v for k, v in metrics.items()})
    writer.close()
  return record


def main(argv):
  del argv
  cli.quiet_logging()
  cli.hide_accelerators_from_tf()
  record = evaluate(cli.loaded_config(_CONFIG), _WORKDIR.value, evals=_EVALS.value, checkpoint=_CHECKPOINT.value,
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
