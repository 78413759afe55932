"""Checkpoints: one orbax CheckpointManager per workdir, under WORKDIR/checkpoints.

A training save holds two items: `state` (the whole TrainState: parameters,
batch statistics, optimiser state, step, rng) and `input` (the input position,
{"step", "examples"}), so that a killed run resumes exactly. Saves carry the
evaluation metrics computed on that very state, and "best" ranks the steps by
`config.checkpoint.best_metric`.

Inference (`avjax-evaluate`, `avjax-embed`) needs only the parameters and batch
statistics: `load_variables` restores those two subtrees and nothing of the
optimiser, so it works whatever the config says about optimisation.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE, INPUT = "state", "input"
VARIABLES = ("params", "batch_stats")  # the TrainState fields inference needs


def best_metric(config) -> str:
  """The evaluation metric (higher is better) whose best checkpoint is kept and
  loaded as "best"; workdirs saved before the key existed used AVC accuracy."""
  return config.checkpoint.get("best_metric", "avc_accuracy")


def directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, config, *, create: bool = True) -> ocp.CheckpointManager:
  pp = ocp.checkpoint_managers
  metric = best_metric(config)
  score = lambda m: (m or {}).get(metric, float("-inf"))
  policy = pp.AnyPreservationPolicy([
      pp.LatestN(n=config.checkpoint.keep),
      pp.BestN(get_metric_fn=score, reverse=False, n=1, keep_checkpoints_without_metrics=False),
  ])
  # The policy decides what is kept; best_fn is what best_step() ranks by (without
  # it, best_step() is the latest step).
  options = ocp.CheckpointManagerOptions(
      enable_async_checkpointing=config.checkpoint.async_save,
      preservation_policy=policy, best_fn=score, best_mode="max", create=create)
  return ocp.CheckpointManager(directory(workdir), item_names=(STATE, INPUT), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, *, batch_size: int,
         metrics: dict | None) -> None:
  """Saves `state` at `step` with its input position; `metrics` must be those of
  an evaluation of this very state (they rank it for "best"), or None."""
  mngr.save(step, args=ocp.args.Composite(**{
      STATE: ocp.args.StandardSave(state),
      INPUT: ocp.args.JsonSave({"step": step, "examples": step * batch_size})}),
      metrics=metrics, force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """-> (state, input position) of `step` (default the latest), or (None, None)
  when there is nothing to resume."""
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None, None
  restored = mngr.restore(step, args=ocp.args.Composite(**{
      STATE: ocp.args.StandardRestore(abstract_state), INPUT: ocp.args.JsonRestore()}))
  position = restored[INPUT]
  if position["step"] != step:
    raise ValueError(f"checkpoint {step}: input position {position} does not match the step")
  return restored[STATE], position


def checkpoint_step(mngr: ocp.CheckpointManager, which: str | int) -> int:
  """"best" (highest best_metric; the latest if none was evaluated), "latest", or a step."""
  steps = mngr.all_steps()
  if not steps:
    raise FileNotFoundError(f"{mngr.directory}: no checkpoints; train first")
  if which == "best":
    best = mngr.best_step()
    return mngr.latest_step() if best is None else best
  if which == "latest":
    return mngr.latest_step()
  if not str(which).isdigit() or int(which) not in steps:
    raise ValueError(f"checkpoint {which!r}: use best, latest or one of the steps {sorted(steps)}")
  return int(which)


def with_sharding(shapes, sharding):
  """A tree of shapes -> ShapeDtypeStructs placed with `sharding` (restore targets)."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def load_variables(workdir: str, config, init_fn, *, which: str | int = "best",
                   sharding=None) -> tuple[dict[str, Any], int]:
  """-> ({"params", "batch_stats"}, step) of a training workdir's checkpoint.

  `init_fn` (rng -> variables, as predict.ModelFns.init) gives the tree's shapes;
  only those two subtrees are read, so no optimiser is built or restored.
  """
  if not os.path.isdir(directory(workdir)):
    raise FileNotFoundError(f"{directory(workdir)}: not found; train first")
  shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  target = {k: with_sharding(shapes.get(k, {}), sharding) for k in VARIABLES}
  mngr = make_manager(workdir, config, create=False)
  try:
    step = checkpoint_step(mngr, which)
    restored = mngr.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)}))
  finally:
    mngr.close()
  return dict(restored[STATE]), step
