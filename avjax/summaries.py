"""TensorBoard scalars, written by process 0.

Events are written with TensorBoard's record writer into a file of the
workdir (local or a bucket, through data_pipelines.fs), so that a resumed run can
open its file with a "session start" at the step it resumed from: TensorBoard
then drops what the previous attempt logged after that step (the steps the
crash lost and this attempt logs again) instead of showing both.
"""
from __future__ import annotations

import os
import socket
import time
import uuid

import jax

from data_pipelines import fs


class SummaryWriter:

  def __init__(self, logdir: str, *, resumed_at: int | None = None):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter
    self._pb, self._summary_pb = event_pb2, summary_pb2
    fs.makedirs(logdir)
    # TensorBoard's naming (it reads the files of a folder in name order).
    name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{uuid.uuid4().hex[:8]}")
    self._writer = RecordWriter(fs.open(fs.join(logdir, name), "wb"))  # a bucket URL too
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    if resumed_at is not None:  # TensorBoard purges earlier files' events from this step on
      self._write(event_pb2.Event(
          step=resumed_at, wall_time=time.time(),
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def _write(self, event) -> None:
    self._writer.write(event.SerializeToString())
    self._writer.flush()

  def scalars(self, step: int, values: dict):
    if not self.enabled:
      return
    summary = self._summary_pb.Summary(value=[
        self._summary_pb.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
    self._write(self._pb.Event(step=step, wall_time=time.time(), summary=summary))

  def close(self):
    if self.enabled:
      self._writer.close()  # closes the file: a remote one is uploaded now
