"""Evaluators on a checkpoint, as a function: what `avjax-evaluate` and
`avjax-sweep` run. No flags here, so any command can import it."""
from __future__ import annotations

import json

from data_pipelines import fs


def evaluate(config, workdir: str, *, evals: list[str] = (), checkpoint: str = "best",
             split: str = "", random_init: bool = False, pictures: bool = True,
             name: str = "") -> dict:
  """Runs the evaluators on a checkpoint; -> the record written to the metrics JSON
  (metrics_<split>_<step>[_<name>].json: `name` tells apart evaluations of one
  split with different settings)."""
  import jax

  from avjax import checkpoint as checkpoint_lib
  from avjax import config_check
  from avjax import evaluators
  from avjax import input as input_lib
  from avjax import mesh as mesh_lib
  from avjax import predict
  from avjax import summaries

  split = split or config.data.eval_split
  names = list(evals) or list(evaluators.enabled(config.evals))
  unknown = [n for n in names if n not in config.evals]
  if unknown:
    raise ValueError(f"--evals: unknown {unknown}; configured: {sorted(config.evals)}")
  model = config_check.check(config, training=False)  # before any data is touched
  input_lib.ensure_data(config, [split, *(config.evals[n].split for n in names
                                          if config.evals[n].get("split"))])
  mesh = mesh_lib.make_mesh(config)
  fns = predict.model_fns(model, config.data)
  if random_init:
    variables = predict.jit_once(fns.init)(jax.random.PRNGKey(config.seed))
    step, tag = 0, "random_init"
  else:
    variables, step = checkpoint_lib.load_variables(workdir, config, fns.init, which=checkpoint,
                                                    sharding=mesh_lib.replicated(mesh))
    tag = f"step{step}"
  tag = f"{split}_{tag}" + (f"_{name}" if name else "")
  evs = evaluators.build_all({n: config.evals[n] for n in names}, config, fns=fns, mesh=mesh,
                             default_split=split)

  out_dir = fs.join(workdir, "eval")
  metrics, paths = {}, []
  for ev in evs.values():
    metrics.update(ev.run(variables))
    if pictures:
      paths += ev.pictures(variables, fs.join(out_dir, f"pictures_{tag}"))
  record = {"step": step, "random_init": random_init, "checkpoint": None if random_init else checkpoint,
            "splits": {n: ev.split for n, ev in evs.items()}, "metrics": metrics, "pictures": paths}
  if jax.process_index() == 0:
    fs.makedirs(out_dir)
    fs.write_text(fs.join(out_dir, f"metrics_{tag}.json"), json.dumps(record, indent=1))
    writer = summaries.SummaryWriter(out_dir)
    prefix = (split + (f"_{name}" if name else "")
              + ("_random_init" if random_init else ""))
    writer.scalars(step, {f"{prefix}/{k}": v for k, v in metrics.items()})
    writer.close()
  return record
