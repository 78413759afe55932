"""A jax.profiler trace of chosen training steps (config.profile), as big_vision
takes one: every step runs inside a StepTraceAnnotation (free when no trace is
being taken), and the trace covers steps start_step .. start_step + num_steps - 1.
TensorBoard's profile plugin or Perfetto opens what it writes:
DIR/plugins/profile/<run>/<host>.xplane.pb, one file per host.
"""
from __future__ import annotations

import contextlib

import jax

from data_pipelines import fs


def profile_dir(profile, workdir: str) -> str:
  return profile.dir or fs.join(workdir, "profile")


class StepProfiler:
  """Starts the trace before `start_step` and stops it once step
  start_step + num_steps - 1 has finished on the device. num_steps 0: off."""

  def __init__(self, profile, workdir: str):
    self.on = bool(profile) and int(profile.num_steps) > 0  # None: a config from before the key
    self.first = int(profile.start_step) if self.on else 0
    self.last = self.first + int(profile.num_steps) - 1 if self.on else -1
    self.dir = profile_dir(profile, workdir) if self.on else ""
    self.tracing = False

  @contextlib.contextmanager
  def step(self, step: int):
    """Around one training step; yields, and after the step is dispatched
    `finish(outputs)` must be called with what the step returned."""
    if self.on and step == self.first:
      jax.profiler.start_trace(self.dir)
      self.tracing = True
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      yield

  def finish(self, step: int, outputs) -> None:
    if self.tracing and step >= self.last:
      jax.block_until_ready(outputs)  # the trace holds the last step's device work
      self.stop()

  def stop(self) -> None:
    if self.tracing:
      jax.profiler.stop_trace()
      self.tracing = False
