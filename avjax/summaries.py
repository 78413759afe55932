"""TensorBoard scalars, written by process 0.

Events go through TensorBoard's own event-file writer, so that a resumed run can
open its file with a "session start" at the step it resumed from: TensorBoard
then drops what the previous attempt logged after that step (the steps the
crash lost and this attempt logs again) instead of showing both.
"""
from __future__ import annotations

import time

import jax


class SummaryWriter:

  def __init__(self, logdir: str, *, resumed_at: int | None = None):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    self._pb, self._summary_pb = event_pb2, summary_pb2
    self._writer = EventFileWriter(logdir)
    if resumed_at is not None:  # TensorBoard purges earlier files' events from this step on
      self._writer.add_event(event_pb2.Event(
          step=resumed_at, wall_time=time.time(),
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def scalars(self, step: int, values: dict):
    if not self.enabled:
      return
    summary = self._summary_pb.Summary(value=[
        self._summary_pb.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
    self._writer.add_event(self._pb.Event(step=step, wall_time=time.time(), summary=summary))
    self._writer.flush()

  def close(self):
    if self.enabled:
      self._writer.close()
