"""TensorBoard scalars, written by process 0 (tf.summary: TensorFlow is a dependency)."""
from __future__ import annotations

import jax


class SummaryWriter:

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
