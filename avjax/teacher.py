"""Frozen teachers for distillation (SoundNet): trained avjax checkpoints whose
models give class logits for frames.

`config.teachers` names each teacher's training workdir, the model output to
distil and the checkpoint. The trainer loads them once; inside jit,
`teacher_probs` runs each on the batch's frames under the student's output
steps (`frame_stack`, else the one centred frame) and adds the softmaxes to the
batch as `teacher_probs`, a list of [B, steps, classes] in config order.
Teachers see the frames normalised but not augmented.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from avjax import input as input_lib


@dataclasses.dataclass(frozen=True)
class Teacher:
  name: str
  predict: Callable   # predict.ModelFns.predict of the teacher's model
  variables: Any      # its params and batch_stats, replicated
  output: str         # the output key whose softmax is the target
  classes: int
  step: int           # the checkpoint step loaded


def load(name: str, teacher_config, *, crop: int, sharding=None) -> Teacher:
  """One teacher from `config.teachers.<name>` (workdir, output, checkpoint)."""
  from avjax import checkpoint as checkpoint_lib
  from avjax import cli, models, predict
  where = f"config.teachers.{name}"
  if not teacher_config.workdir:
    raise ValueError(f"{where}.workdir: empty; train a teacher first (configs/frame_classifier.py) "
                     "and name its workdir")
  config = cli.load_workdir_config(teacher_config.workdir)
  teacher_crop = input_lib.reader_spec(config.data).crop
  if teacher_crop != crop:
    raise ValueError(f"{where}: the teacher in {teacher_config.workdir} was trained on "
                     f"{teacher_crop} px crops, the student's frames are {crop} px")
  fns = predict.model_fns(models.build(config.model), config.data)
  shapes = fns.output_shapes()
  if teacher_config.output not in shapes:
    raise ValueError(f"{where}.output: the model in {teacher_config.workdir} gives no "
                     f"{teacher_config.output!r} (outputs: {sorted(shapes)})")
  variables, step = checkpoint_lib.load_variables(
      teacher_config.workdir, config, fns.init, which=teacher_config.checkpoint, sharding=sharding)
  return Teacher(name=name, predict=fns.predict, variables=variables,
                 output=teacher_config.output, classes=shapes[teacher_config.output].shape[-1],
                 step=step)


def load_all(config, *, sharding=None) -> list[Teacher]:
  """config.teachers in order, checked against the student's heads."""
  crop = input_lib.reader_spec(config.data).crop
  teachers = [load(name, t, crop=crop, sharding=sharding)
              for name, t in config.teachers.items()]
  heads = tuple(config.model.get("head_classes", ()))
  classes = tuple(t.classes for t in teachers)
  if heads != classes:
    raise ValueError(f"config.model.head_classes={heads}: the teachers "
                     f"({', '.join(t.name for t in teachers)}) give {classes} classes")
  return teachers


def teacher_frames(batch: dict):
  """[B, steps, H, W, 3]: the frame stack, else the single frame as one step."""
  return batch["frame_stack"] if "frame_stack" in batch else batch["frames"][:, None]


def teacher_probs(teachers, variables, batch: dict) -> list:
  """Each teacher's class posteriors for the batch's step frames (inside jit):
  [B, steps, classes] per teacher. `variables`: the teachers' variables, in order."""
  frames = teacher_frames(batch)
  b, steps = frames.shape[:2]
  flat = frames.reshape(b * steps, *frames.shape[2:])
  out = []
  for t, v in zip(teachers, variables):
    logits = t.predict(v, flat, None)[t.output].astype(jnp.float32)
    out.append(jax.lax.stop_gradient(jax.nn.softmax(logits, axis=-1)).reshape(b, steps, -1))
  return out


def make_annotate_fn(teachers) -> Callable:
  """-> jitted (teacher variables, batch) -> the batch with `teacher_probs`."""
  @jax.jit
  def annotate(variables, batch):
    return {**batch, "teacher_probs": teacher_probs(teachers, variables, batch)}
  return annotate
