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

import contextlib
import gc
import os
import re
import sys
import tempfile
import time
import types
from typing import Any

import jax
import orbax.checkpoint as ocp

from data_pipelines import fs

STATE, INPUT = "state", "input"
VARIABLES = ("params", "batch_stats")  # the TrainState fields inference needs
# Files whose absence orbax reports misleadingly (a "pytree structure error").
REQUIRED = (f"{STATE}/_METADATA",)


def best_metric(config) -> str:
  """The evaluation metric (higher is better) whose best checkpoint is kept and
  loaded as "best"; workdirs saved before the key existed used AVC accuracy."""
  return config.checkpoint.get("best_metric", "avc_accuracy")


def directory(workdir: str) -> str:
  return fs.join(fs.absolute(workdir), "checkpoints")


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
      preservation_policy=policy, best_fn=score, best_mode="max", create=create,
      # Saves a kill interrupted leave *.orbax-checkpoint-tmp folders: removed on start.
      cleanup_tmp_directories=create)
  return ocp.CheckpointManager(directory(workdir), item_names=(STATE, INPUT), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, *, batch_size: int,
         metrics: dict | None) -> None:
  """Saves `state` at `step` with its input position; `metrics` must be those of
  an evaluation of this very state (they rank it for "best"), or None."""
  mngr.save(step, args=ocp.args.Composite(**{
      STATE: ocp.args.StandardSave(state),
      INPUT: ocp.args.JsonSave({"step": step, "examples": step * batch_size})}),
      metrics=metrics, force=True)


class CheckpointError(Exception):
  """No checkpoint of a workdir could be read."""


def restore_step(mngr: ocp.CheckpointManager, abstract_state, step: int):
  """-> (state, input position) of `step`; raises whatever makes it unreadable."""
  missing = [f for f in REQUIRED if not fs.exists(fs.join(str(mngr.directory), str(step), f))]
  if missing:
    raise FileNotFoundError(f"{', '.join(missing)} missing")
  restored = mngr.restore(step, args=ocp.args.Composite(**{
      STATE: ocp.args.StandardRestore(abstract_state), INPUT: ocp.args.JsonRestore()}))
  position = restored[INPUT]
  if position["step"] != step:
    raise ValueError(f"input position {position} does not match the step")
  return restored[STATE], position


def first_line(e: BaseException, limit: int = 160) -> str:
  """An exception as one line; TensorStore's read errors as the array they failed on."""
  text = str(e)
  arrays = [p for p in re.findall(r"'path': '([^'/][^']*)/?'", text)]
  if "TensorStore" in text and arrays:
    return f"cannot read array {arrays[-1].rstrip('/')}"
  text = " ".join(text.split())
  return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def move_aside(mngr: ocp.CheckpointManager, step: int) -> str:
  """Moves an unreadable step out of the manager's sight, next to its folder."""
  dest_dir = f"{mngr.directory}.unreadable"
  fs.makedirs(dest_dir)
  dest = fs.join(dest_dir, f"{step}.{time.strftime('%Y%m%d-%H%M%S')}")
  fs.rename(fs.join(str(mngr.directory), str(step)), dest)
  mngr.reload()
  return dest


def restore(mngr: ocp.CheckpointManager, abstract_state, *, say=print):
  """-> (state, input position) of the newest readable checkpoint, or (None, None)
  when there is none to resume.

  A checkpoint that cannot be read (truncated arrays, lost metadata) is moved
  aside to checkpoints.unreadable/ (never deleted) with one line through `say`,
  and the previous one is tried; what the libraries printed about it goes to
  restore_errors.txt beside it. If none is readable, CheckpointError.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  for step in steps:
    with captured_stderr() as captured:
      try:
        result = restore_step(mngr, abstract_state, step)
      except Exception as e:  # anything that makes this step unreadable
        result, error = None, e
        close_abandoned_reads()
      printed = captured.text()
    if result is not None:
      sys.stderr.write(printed)
      return result
    moved = move_aside(mngr, step)
    fs.write_text(fs.join(moved, "restore_errors.txt"), f"{first_line(error, 10**6)}\n{printed}")
    say(f"checkpoint {step} is unreadable ({first_line(error)}); moved it to {moved}")
  if steps:
    raise CheckpointError(f"{mngr.directory}: none of the checkpoints {steps} could be read; "
                          f"they are in {mngr.directory}.unreadable. Run again to start afresh.")
  return None, None


def close_abandoned_reads() -> None:
  """After a failed restore, orbax leaves array-read coroutines that were never
  finished; closed now, they release their memory reservations here instead of
  printing a traceback each when the interpreter exits."""
  time.sleep(0.2)  # TensorStore callbacks of the failed read land meanwhile
  gc.collect()
  for obj in gc.get_objects():
    # type(), not isinstance(): the heap holds weak proxies to dead objects too.
    if type(obj) is types.CoroutineType and "orbax" in obj.cr_code.co_filename:
      with contextlib.suppress(Exception):
        obj.close()
  gc.collect()


class _Captured:
  def __init__(self, file):
    self._file = file

  def text(self) -> str:
    self._file.seek(0)
    return self._file.read().decode(errors="replace")


@contextlib.contextmanager
def captured_stderr():
  """Everything written to file descriptor 2 (Python, C++ threads) goes to a
  temporary file while inside: a failed orbax/TensorStore read prints dozens of
  tracebacks from its callbacks, where one line says what matters."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield _Captured(tmp)
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def is_choice(which) -> bool:
  """Whether `which` names a checkpoint: "best", "latest" or a step number."""
  return str(which) in ("best", "latest") or str(which).isdigit()


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
  if not is_choice(which) or int(which) not in steps:
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
  if not fs.isdir(directory(workdir)):
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


def parse_modules(value: str) -> dict[str, str]:
  """config.init_from.modules ("vision", or "theirs:ours,...") -> {theirs: ours}
  (warm_start also takes "*": every submodule)."""
  out = {}
  for part in filter(None, (p.strip() for p in value.split(","))):
    theirs, _, ours = part.partition(":")
    out[theirs.strip()] = (ours or theirs).strip()
  if not out:
    raise ValueError("config.init_from.modules: empty; name the submodules to copy, e.g. vision")
  return out


def warm_start(variables: dict, init_from, *, sharding=None) -> tuple[dict, int]:
  """big_vision's model_init: `variables` ({"params", "batch_stats"}, at step 0)
  with the submodules config.init_from.modules copied from the checkpoint of
  another training workdir (config.init_from.workdir), e.g. a frame tower trained
  audio-visually. Each copied subtree must have this model's shapes. -> (the
  variables, the step loaded)."""
  from avjax import cli, models, predict  # pylint: disable=g-import-not-at-top
  where = "config.init_from"
  theirs_config = cli.load_workdir_config(init_from.workdir)
  fns = predict.model_fns(models.build(theirs_config.model), theirs_config.data)
  theirs, step = load_variables(init_from.workdir, theirs_config, fns.init,
                                which=init_from.checkpoint, sharding=sharding)
  out = {k: dict(v) for k, v in variables.items()}
  # "*": every submodule, a whole model trained elsewhere (the same architecture).
  modules = ({m: m for m in out["params"]} if init_from.modules.strip() == "*" else
             parse_modules(init_from.modules))
  for src, dst in modules.items():
    if src not in theirs["params"]:
      raise ValueError(f"{where}.modules: the model in {init_from.workdir} has no submodule "
                       f"{src!r} (it has {sorted(theirs['params'])})")
    if dst not in out["params"]:
      raise ValueError(f"{where}.modules: this model has no submodule {dst!r} "
                       f"(it has {sorted(out['params'])})")
    for collection in VARIABLES:
      if dst not in out.get(collection, {}):
        continue
      mine, given = out[collection][dst], theirs.get(collection, {}).get(src)
      same = given is not None and jax.tree.structure(mine) == jax.tree.structure(given) and all(
          a.shape == b.shape for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(given)))
      if not same:
        raise ValueError(f"{where}: {collection} of {src!r} in {init_from.workdir} do not have "
                         f"the shapes of this model's {dst!r} (widths or inputs differ)")
      out[collection][dst] = given
  return out, step
