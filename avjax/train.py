"""The trainer: one jitted update over a device mesh, checkpoints that resume exactly.

    python -m avjax.main --config=configs/avenet.py:tiny --workdir=/tmp/avenet

Read top to bottom: Logging / Mesh / Input / Model / Init / Update /
Checkpoint / Evals / Loop, as in big_vision's train.py.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from avjax import evaluators
from avjax import frames as frames_lib
from avjax import input as input_lib
from avjax import losses as losses_lib
from avjax import models

log = logging.getLogger("avjax")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  # First step whose loss was not finite, or -1. Kept on device so that the
  # check costs no host sync per step, yet the error names the exact step.
  nonfinite_step: jax.Array


class NonFiniteError(FloatingPointError):
  pass


# ----------------------------------------------------------------------------
# Optimiser
# ----------------------------------------------------------------------------
def make_schedule(config) -> optax.Schedule:
  lr, s = config.optimizer.lr, config.schedule
  if s.name == "constant":
    if s.warmup_steps:
      return optax.join_schedules(
          [optax.linear_schedule(0.0, lr, s.warmup_steps), optax.constant_schedule(lr)],
          [s.warmup_steps])
    return optax.constant_schedule(lr)
  if s.name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(1, s.warmup_steps),
                                              max(config.total_steps, s.warmup_steps + 1))
  raise ValueError(f"config.schedule.name: unknown {s.name!r} (constant, warmup_cosine)")


def make_optimizer(config, schedule) -> optax.GradientTransformation:
  o = config.optimizer
  parts = [optax.clip_by_global_norm(o.grad_clip_norm)] if o.grad_clip_norm > 0 else []
  if o.name == "adam":  # L2 weight decay added to the gradient, as in the papers
    parts += [optax.add_decayed_weights(o.weight_decay), optax.scale_by_adam(o.b1, o.b2),
              optax.scale_by_learning_rate(schedule)]
  elif o.name == "adamw":  # decoupled decay
    parts += [optax.adamw(schedule, o.b1, o.b2, weight_decay=o.weight_decay)]
  else:
    raise ValueError(f"config.optimizer.name: unknown {o.name!r} (adam, adamw)")
  return optax.chain(*parts)


# ----------------------------------------------------------------------------
# Loss and update
# ----------------------------------------------------------------------------
def active_losses(config) -> dict[str, float]:
  weights = {k: float(v) for k, v in config.losses.items() if float(v) != 0.0}
  if not weights:
    raise ValueError("config.losses: every loss has weight 0")
  for name in weights:
    losses_lib.get(name)
  return weights


def make_loss_fn(model: nn.Module, config) -> Callable:
  weights = active_losses(config)
  kwargs = {k: dict(v) for k, v in config.loss_kwargs.items()}

  def loss_fn(params, batch_stats, batch, rng):
    outputs, new_vars = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["frames"], batch["spectrogram"],
        train=True, mutable=["batch_stats"], rngs={"dropout": rng})
    parts = {name: losses_lib.get(name)(outputs=outputs, batch=batch, **kwargs.get(name, {}))
             for name in weights}
    total = sum(w * parts[name] for name, w in weights.items())
    metrics = {f"loss_{k}": v for k, v in parts.items()}
    if "logits" in outputs:  # a correspondence head (not SeLaVi's)
      metrics["accuracy"] = jnp.mean(losses_lib.avc_predictions(outputs) == batch["label"])
    return total, (new_vars["batch_stats"], metrics)

  return loss_fn


def make_update_fn(model, tx, schedule, config):
  loss_fn = make_loss_fn(model, config)

  def update(state: TrainState, batch: dict):
    batch = frames_lib.model_inputs(batch)  # uint8 crops + draws -> augmented float frames
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (batch_stats, loss_metrics)), grads = grad_fn(
        state.params, state.batch_stats, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    bad = jnp.logical_and(state.nonfinite_step < 0, jnp.logical_not(jnp.isfinite(loss)))
    new_state = TrainState(
        step=step, params=params, batch_stats=batch_stats, opt_state=opt_state,
        rng=state.rng, nonfinite_step=jnp.where(bad, step, state.nonfinite_step))
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "lr": schedule(state.step),
               **loss_metrics}
    return new_state, metrics

  return update


def make_init_fn(model, tx, config):
  def init(rng):
    _, state_rng = jax.random.split(rng)
    variables = input_lib.init_variables(model, config.data, rng)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), rng=state_rng,
                      nonfinite_step=-jnp.ones((), jnp.int32))
  return init


@jax.jit
def all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def variables_of(state: TrainState) -> dict:
  return {"params": state.params, "batch_stats": state.batch_stats}


# ----------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------
def best_metric(config) -> str:
  """The evaluation metric (higher is better) whose best checkpoint is kept and
  loaded as "best"; workdirs saved before the key existed used AVC accuracy."""
  return config.checkpoint.get("best_metric", "avc_accuracy")


def make_checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
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
      preservation_policy=policy, best_fn=score, best_mode="max", create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               item_names=("state", "input"), options=options)


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """-> (state, input position dict), or (None, None) when there is nothing to resume."""
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None, None
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), input=ocp.args.JsonRestore()))
  return restored["state"], restored["input"]


def checkpoint_step(mngr: ocp.CheckpointManager, which: str) -> int:
  """"best" (highest config.checkpoint.best_metric; the latest if none was evaluated),
  "latest", or a step."""
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


def load_checkpoint(config, workdir: str, which: str = "best", mesh: Mesh | None = None):
  """-> (model, TrainState replicated over `mesh`, step) from a training workdir."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"{os.path.join(workdir, 'checkpoints')}: not found; train first")
  mesh = mesh or Mesh(np.asarray(jax.devices()), ("data",))
  fns = make_train_functions(config, mesh)
  mngr = make_checkpoint_manager(workdir, config)
  try:
    step = checkpoint_step(mngr, which)
    state, _ = restore_latest(mngr, abstract_with_shardings(fns.shapes, NamedSharding(mesh, P())),
                              step)
  finally:
    mngr.close()
  return fns.model, state, step


def abstract_with_shardings(shapes, sharding):
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


# ----------------------------------------------------------------------------
# Logging helpers
# ----------------------------------------------------------------------------
class SummaryWriter:
  """TensorBoard scalars from process 0 (tf.summary: TensorFlow is a dependency)."""

  def __init__(self, logdir: str):
    self.enabled = jax.process_index() == 0
    if self.enabled:
      import tensorflow as tf
      self._tf = tf
      self._writer = tf.summary.create_file_writer(logdir)

  def scalars(self, step: int, values: dict):
    if not self.enabled:
      return
    with self._writer.as_default():
      for k, v in values.items():
        self._tf.summary.scalar(k, float(v), step=step)
    self._writer.flush()

  def close(self):
    if self.enabled:
      self._writer.close()


def _progress(config, start: int):
  if not config.progress_bar or jax.process_index() != 0:
    return None
  from tqdm import tqdm
  return tqdm(total=config.total_steps, initial=start, unit="step", dynamic_ncols=True)


def check_finite_step(state: TrainState) -> None:
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    raise NonFiniteError(f"loss became NaN or Inf at step {bad}; stopping without saving a "
                         "checkpoint. Lower config.optimizer.lr or set config.optimizer.grad_clip_norm.")


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainFunctions:
  model: nn.Module
  shapes: Any            # TrainState of ShapeDtypeStructs
  init: Callable         # rng -> TrainState, replicated over the mesh
  update: Callable       # (state, global batch) -> (state, metrics); donates state


def make_train_functions(config, mesh: Mesh) -> TrainFunctions:
  """Infers the state's shapes, then jits init and update with their shardings."""
  repl = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))
  model = models.build(config.model)
  schedule = make_schedule(config)
  tx = make_optimizer(config, schedule)
  init_fn = make_init_fn(model, tx, config)
  shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  state_sharding = jax.tree.map(lambda _: repl, shapes)
  init = jax.jit(init_fn, out_shardings=state_sharding)
  update = jax.jit(make_update_fn(model, tx, schedule, config),
                   in_shardings=(state_sharding, data_sharding),
                   out_shardings=(state_sharding, repl), donate_argnums=0)
  return TrainFunctions(model=model, shapes=shapes, init=init, update=update)


def train_and_evaluate(config, workdir: str, *, step_hook: Callable[[int], None] | None = None) -> dict:
  """Trains per `config`, resuming from `workdir` if it holds a checkpoint.

  Returns the last evaluation's metrics. `step_hook(step)` runs after each step.
  """
  # --- Logging ---------------------------------------------------------------
  os.makedirs(workdir, exist_ok=True)
  writer = SummaryWriter(workdir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1))

  # --- Mesh ------------------------------------------------------------------
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  repl = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))
  if config.batch_size % mesh.size:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by "
                     f"{mesh.size} devices")

  # --- Input -----------------------------------------------------------------
  train_reader = input_lib.make_reader(config.data, config.data.train_split,
                                       global_batch=config.batch_size, seed=config.seed)

  # --- Model, init and update ---------------------------------------------------
  fns = make_train_functions(config, mesh)
  model, shapes, update = fns.model, fns.shapes, fns.update

  # --- Checkpoint: always try to resume first ---------------------------------
  mngr = make_checkpoint_manager(workdir, config)
  state, position = restore_latest(mngr, abstract_with_shardings(shapes, repl))
  if state is None:
    state = fns.init(jax.random.PRNGKey(config.seed))
    start = 0
  else:
    start = int(jax.device_get(state.step))
    if position["step"] != start:
      raise ValueError(f"checkpoint {start}: input position {position} does not match the step")
    log.info("resumed from step %d in %s", start, workdir)
    print(f"resumed from step {start}", flush=True)

  # --- Evals -----------------------------------------------------------------
  evals = evaluators.build_all(evaluators.enabled(config.evals), config, model=model, mesh=mesh)

  def run_evals(step: int) -> dict:
    out = {}
    for name, ev in evals.items():
      out.update(ev.run(variables_of(state)))
    writer.scalars(step, {f"val/{k}": v for k, v in out.items()})
    return out

  def save(step: int, metrics: dict | None):
    check_finite_step(state)
    if not bool(all_finite(state.params)):
      raise NonFiniteError(f"parameters hold NaN or Inf at step {step}; not saving")
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        input=ocp.args.JsonSave({"step": step, "examples": step * config.batch_size})),
        metrics=metrics, force=True)

  # --- Loop ------------------------------------------------------------------
  batches = train_reader.train_iterator(start_step=start)
  bar = _progress(config, start)
  last_metrics: dict = {}
  t_last, step_last = time.perf_counter(), start
  for step in range(start + 1, config.total_steps + 1):
    batch = input_lib.to_global(next(batches), data_sharding)
    state, metrics = update(state, batch)
    if step_hook is not None:
      step_hook(step)

    if step % config.log_every == 0 or step == config.total_steps:
      m = jax.device_get(metrics)
      check_finite_step(state)
      now = time.perf_counter()
      m["examples_per_sec"] = (step - step_last) * config.batch_size / (now - t_last)
      t_last, step_last = now, step
      writer.scalars(step, {f"train/{k}": v for k, v in m.items()})
      if bar is not None:
        acc = {"acc": f"{m['accuracy']:.2f}"} if "accuracy" in m else {}
        bar.set_postfix(loss=f"{m['loss']:.3f}", **acc, ex_s=f"{m['examples_per_sec']:.0f}",
                        refresh=False)

    eval_metrics = None
    if (any(step % cfg.every == 0 for cfg in evaluators.enabled(config.evals).values())
        or step == config.total_steps):
      eval_metrics = run_evals(step)
      last_metrics = eval_metrics
      msg = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in eval_metrics.items())
      (bar.write if bar is not None else functools.partial(print, flush=True))(
          f"step {step}: {msg}")

    if step % config.checkpoint.every == 0 or step == config.total_steps:
      save(step, eval_metrics)
    if mngr.reached_preemption(step):
      save(step, eval_metrics)
      mngr.wait_until_finished()
      log.warning("preempted at step %d; checkpoint written", step)
      break
    if bar is not None:
      bar.update(1)

  if bar is not None:
    bar.close()
  if not last_metrics:  # resumed at the end: evaluate what was restored
    last_metrics = run_evals(int(jax.device_get(state.step)))
  mngr.wait_until_finished()
  mngr.close()
  writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump(last_metrics, f, indent=1)
  return last_metrics
