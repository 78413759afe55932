"""`config.data.records="spans"`: local TFRecord shards read record by record
from their byte spans (record_spans.cc), a `data_pipelines.records.Source`.

Each shard's framing is scanned once per epoch (`spans`, a 12-byte read per
record), the epoch's shuffle permutes spans instead of holding records, and each
record is read when its turn comes (`read`), straight into the output string and
checked against its CRC32C with the CPU's instruction, where
tf.data.TFRecordDataset checks it in software and copies each record through a
buffer. benchmarks/pipeline.py measures both. The records, and their order, are
the same.

The ops are a TensorFlow custom-op library compiled on first use against the
headers the TensorFlow wheel ships (avjax_cpu/build.py). Shards in a bucket are
left to TFRecordDataset: a span scan would make one request per record.
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import tensorflow as tf

from avjax_cpu import build
from data_pipelines import fs

CC_SOURCE = Path(__file__).with_name("record_spans.cc")


def library_path(extra_flags=()) -> Path:
  """The op library compiled from record_spans.cc against this TensorFlow's
  headers (built first where the cache lacks it), `extra_flags` after the usual
  ones; build.compiled's errors where it cannot be had."""
  flags = (*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags(),
           "-Wno-deprecated-declarations", *extra_flags)
  return build.compiled((CC_SOURCE,), flags=flags, name="record_spans",
                        toolchain=f"tensorflow {tf.__version__}")


@functools.cache
def _ops():
  """The loaded op library; RuntimeError, in one line saying why, where it
  cannot be had."""
  try:
    return tf.load_op_library(str(library_path()))
  except (OSError, RuntimeError, subprocess.SubprocessError, tf.errors.OpError) as e:
    raise RuntimeError(f"the TFRecord span reader cannot be built here ({e}); use "
                       "config.data.records='tfrecord'") from None


def spans(path) -> tf.data.Dataset:
  """(path, offset, length) of each record of the file at `path` (a string
  tensor), in file order; a damaged framing fails naming the file and record."""
  offsets, lengths = _ops().avjax_record_spans(path)
  return tf.data.Dataset.from_tensor_slices((tf.fill(tf.shape(offsets), path), offsets, lengths))


def read(path, offset, length):
  """The record at a span: its bytes, CRC-checked; DataLossError names the file
  and the byte where the record starts."""
  return _ops().avjax_read_record(path, offset, length)


class SpanSource:
  opens_in_parallel = False  # a scan of a file's framing is cheap: one thread opens them all

  def __init__(self):
    _ops()  # chosen where it cannot be built: the one-line error comes now, not mid-run

  def serves(self, files) -> str:
    remote = [f for f in files if fs.is_url(f)]
    return f"{len(remote)} shard(s) in a bucket" if remote else ""

  def items(self, path) -> tf.data.Dataset:
    return spans(path)

  def read(self, item):
    return read(*item)
