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
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from avjax import checkpoint as checkpoint_lib
from avjax import config_check
from avjax import evaluators
from avjax import input as input_lib
from avjax import losses as losses_lib
from avjax import mesh as mesh_lib
from avjax import models
from avjax import predict
from avjax import step_inputs
from avjax import summaries
from avjax import tracing
from avjax import workdir as workdir_lib
from data_pipelines import contract
from data_pipelines import fs

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
def make_loss_fn(model: nn.Module, config) -> Callable:
  # Names and weights were checked with the config (config_check.check_training).
  weights = {k: float(v) for k, v in config.losses.items() if float(v) != 0.0}
  kwargs = {k: dict(v) for k, v in config.loss_kwargs.items()}
  audio, frames = models.audio_input(model), models.frame_input(model)

  def loss_fn(params, batch_stats, batch, rng):
    outputs, new_vars = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch[frames], batch[audio],
        train=True, mutable=["batch_stats"], rngs={"dropout": rng})
    parts = {name: losses_lib.get(name)(outputs=outputs, batch=batch, **kwargs.get(name, {}))
             for name in weights}
    total = sum(w * parts[name] for name, w in weights.items())
    metrics = {f"loss_{k}": v for k, v in parts.items()}
    if model.correspondence:
      predicted = losses_lib.avc_predictions(outputs, model.correspondence)
      metrics["accuracy"] = jnp.mean(predicted == batch["label"])
    return total, (new_vars["batch_stats"], metrics)

  return loss_fn


def make_update_fn(model, tx, schedule, config):
  loss_fn = make_loss_fn(model, config)
  spectrogram = input_lib.spectrogram_spec(config.data)

  def update(state: TrainState, batch: dict):
    # uint8 crops, |STFT| and their draws -> augmented float frames, log-spectrograms
    batch = step_inputs.model_inputs(batch, spectrogram, both_examples=config.data.both_examples)
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


def make_init_fn(model_init: Callable, tx):
  def init(rng):
    variables = model_init(rng)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), rng=predict.init_rngs(rng)[1],
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
# Logging helpers
# ----------------------------------------------------------------------------
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
  model_fns: predict.ModelFns  # what evaluators and inference call
  shapes: Any            # TrainState of ShapeDtypeStructs
  init: Callable         # rng -> TrainState, replicated over the mesh
  update: Callable       # (state, global batch) -> (state, metrics); donates state


def make_train_functions(config, mesh: Mesh) -> TrainFunctions:
  """Infers the state's shapes, then jits init and update with their shardings."""
  repl = mesh_lib.replicated(mesh)
  model = models.build(config.model)
  model_fns = predict.model_fns(model, config.data)
  schedule = make_schedule(config)
  tx = make_optimizer(config, schedule)
  init_fn = make_init_fn(model_fns.init, tx)
  shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  state_sharding = jax.tree.map(lambda _: repl, shapes)
  init = predict.jit_once(init_fn, out_shardings=state_sharding)
  update = jax.jit(make_update_fn(model, tx, schedule, config),
                   in_shardings=(state_sharding, mesh_lib.batch_sharding(mesh)),
                   out_shardings=(state_sharding, repl), donate_argnums=0)
  return TrainFunctions(model=model, model_fns=model_fns, shapes=shapes, init=init, update=update)


def teacher_annotate_fn(config, mesh: Mesh) -> Callable[[dict], dict]:
  """global batch -> the batch with each frozen teacher's `teacher_probs` for
  distillation (avjax/teacher.py); the identity when the config has no teachers."""
  if not config.get("teachers"):
    return lambda batch: batch
  from avjax import teacher as teacher_lib
  teachers = teacher_lib.load_all(config, sharding=mesh_lib.replicated(mesh))
  for t in teachers:
    print(f"teacher {t.name}: {t.output} of {config.teachers[t.name].workdir} at step {t.step}",
          flush=True)
  annotate = teacher_lib.make_annotate_fn(teachers)
  variables = [t.variables for t in teachers]
  return lambda batch: annotate(variables, batch)


def due_evaluators(evals_config, step: int, total_steps: int) -> list[str]:
  """The enabled evaluators whose own `every` divides `step`; all of them at the end."""
  return [name for name, cfg in evaluators.enabled(evals_config).items()
          if step % cfg.every == 0 or step == total_steps]


def train_and_evaluate(config, workdir: str, *, step_hook: Callable[[int], None] | None = None,
                       config_changes_ok: bool = False) -> dict:
  """Trains per `config`, resuming from `workdir` if it holds a checkpoint.

  Returns the latest value of every evaluation metric. `step_hook(step)` runs
  after each step. The workdir is this job's while it runs (avjax/workdir.py);
  a config unlike the one it started with is refused unless `config_changes_ok`.
  """
  config_check.check(config)
  input_lib.ensure_data(config)  # the default dataset, on each host's own cache
  # Missing data is refused before the workdir records this config, so that the
  # corrected command is not taken for a changed one.
  input_lib.data_files(config.data, config.data.train_split)
  workdir_lib.make_writable(workdir)
  lock = workdir_lib.take(workdir, config.to_json_best_effort(indent=1),
                          changes_ok=config_changes_ok)
  try:
    return _train(config, workdir, lock, step_hook)
  finally:
    if lock is not None:
      lock.release()


def _train(config, workdir: str, lock, step_hook) -> dict:
  # --- Mesh ------------------------------------------------------------------
  mesh = mesh_lib.make_mesh(config)
  data_sharding = mesh_lib.batch_sharding(mesh)
  rows = contract.frame_rows(config.batch_size, config.data.both_examples)
  if rows % mesh.size:
    what = (f"its {rows} clips (data.both_examples: two examples each) are"
            if config.data.both_examples else "it is")
    raise ValueError(f"config.batch_size={config.batch_size}: {what} not divisible by "
                     f"{mesh.size} devices")

  # --- Input -----------------------------------------------------------------
  train_reader = input_lib.make_reader(config.data, config.data.train_split,
                                       global_batch=config.batch_size, seed=config.seed)

  classes = config.model.get("classifier_classes", 0)
  if classes and classes != train_reader.num_classes:
    raise ValueError(f"config.model.classifier_classes={classes}: the training data has "
                     f"{train_reader.num_classes} classes")

  # --- Model, init and update ---------------------------------------------------
  fns = make_train_functions(config, mesh)
  annotate = teacher_annotate_fn(config, mesh)

  # --- Checkpoint: always try to resume first ---------------------------------
  mngr = checkpoint_lib.make_manager(workdir, config)
  state, _ = checkpoint_lib.restore(
      mngr, checkpoint_lib.with_sharding(fns.shapes, mesh_lib.replicated(mesh)),
      say=functools.partial(print, flush=True))
  if state is None:
    state = fns.init(jax.random.PRNGKey(config.seed))
    start = 0
    if config.init_from.workdir:
      variables, step = checkpoint_lib.warm_start(variables_of(state), config.init_from,
                                                  sharding=mesh_lib.replicated(mesh))
      state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
      print(f"{config.init_from.modules} from {config.init_from.workdir} (its step {step})",
            flush=True)
  else:
    start = int(jax.device_get(state.step))
    print(f"resumed from step {start}", flush=True)

  # --- Logging ---------------------------------------------------------------
  # A resumed run's events start at start + 1: TensorBoard then drops what the
  # lost attempt logged from there on.
  writer = summaries.SummaryWriter(workdir, resumed_at=start + 1 if start else None)

  # --- Evals -----------------------------------------------------------------
  evals = evaluators.build_all(evaluators.enabled(config.evals), config, fns=fns.model_fns,
                               mesh=mesh)

  def run_evals(step: int, names) -> dict:
    out = {}
    for name in names:
      out.update(evals[name].run(variables_of(state)))
    writer.scalars(step, {f"val/{k}": v for k, v in out.items()})
    return out

  def save(step: int, metrics: dict | None):
    check_finite_step(state)
    if not bool(all_finite(state.params)):
      raise NonFiniteError(f"parameters hold NaN or Inf at step {step}; not saving")
    checkpoint_lib.save(mngr, step, state, batch_size=config.batch_size, metrics=metrics)

  # --- Loop ------------------------------------------------------------------
  batches = train_reader.train_iterator(start_step=start)
  profiler = tracing.StepProfiler(config.get("profile"), workdir)
  bar = _progress(config, start)
  latest: dict = {}  # the latest value of each evaluation metric
  t_last, step_last = time.perf_counter(), start
  try:
    for step in range(start + 1, config.total_steps + 1):
      with profiler.step(step):
        batch = annotate(input_lib.to_global(next(batches), data_sharding))
        state, metrics = fns.update(state, batch)
      profiler.finish(step, metrics)
      if step_hook is not None:
        step_hook(step)

      if step % config.log_every == 0 or step == config.total_steps:
        if lock is not None:
          lock.check()
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

      # Each evaluation saves the state it evaluated, with its metrics, so that
      # "best" is ranked at every evaluation, not only where saves happen to fall.
      eval_metrics = None
      due = due_evaluators(config.evals, step, config.total_steps)
      if due:
        eval_metrics = run_evals(step, due)
        latest.update(eval_metrics)
        msg = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in eval_metrics.items())
        (bar.write if bar is not None else functools.partial(print, flush=True))(
            f"step {step}: {msg}")

      saved = bool(step % config.checkpoint.every == 0 or step == config.total_steps or due)
      if saved:
        save(step, eval_metrics)
      if mngr.reached_preemption(step):
        if not saved:
          save(step, eval_metrics)
        log.warning("preempted at step %d; checkpoint written", step)
        break
      if bar is not None:
        bar.update(1)
  finally:
    # Whatever stopped the loop, the save in flight completes before the process ends.
    profiler.stop()
    if bar is not None:
      bar.close()
    mngr.wait_until_finished()

  if not latest:  # resumed at the end: evaluate what was restored
    latest = run_evals(int(jax.device_get(state.step)), list(evals))
  mngr.close()
  writer.close()
  if jax.process_index() == 0:
    fs.write_text(fs.join(workdir, "final_metrics.json"), json.dumps(latest, indent=1))
  return latest
