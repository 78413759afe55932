"""TFRecord shards read record by record from their byte spans (record_ops.cc).

The training reader's record stream: each shard's framing is scanned once per
epoch (`spans`, a 12-byte read per record), the epoch's shuffle permutes spans
instead of holding records, and each record is read when its turn comes
(`read`), straight into the output string and checked against its CRC32C with
the CPU's instruction.

Against `tf.data.TFRecordDataset`, which checks CRC32C in software and copies
each record through a 256 KB buffer: 140-185 us of wall time per 1 MB record
against 370-400 on the development VM (benchmarks/pipeline.py has the reader's
figures). The records, and their order, are the same.

The ops are a TensorFlow custom-op library compiled on first use against the
headers the TensorFlow wheel ships (avjax/native_build.py). Where that cannot
happen, `available()` says False once in the log and the reader keeps
TFRecordDataset. Remote shards (gs://) keep TFRecordDataset too: a span scan
would make one request per record.
"""
from __future__ import annotations

import functools
import logging
import subprocess
from pathlib import Path

import tensorflow as tf

from avjax import native_build
from data_pipelines import fs

SOURCE = Path(__file__).with_name("record_ops.cc")


def library_path(extra_flags=()) -> Path:
  """The op library compiled from record_ops.cc against this TensorFlow's
  headers (built first where the cache lacks it), `extra_flags` after the usual
  ones; native_build.compiled's errors where it cannot be had."""
  flags = (*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags(),
           "-Wno-deprecated-declarations", *extra_flags)
  return native_build.compiled((SOURCE,), flags=flags, name="record_ops",
                               toolchain=f"tensorflow {tf.__version__}")


@functools.cache
def _ops():
  """The loaded op library, or None (one log line saying why)."""
  try:
    return tf.load_op_library(str(library_path()))
  except (OSError, RuntimeError, subprocess.SubprocessError, tf.errors.OpError) as e:
    logging.getLogger(__name__).warning(
        "avjax: the TFRecord span reader is unavailable (%s); training reads shards with "
        "tf.data.TFRecordDataset, which checks CRCs in software", e)
    return None


def available() -> bool:
  return _ops() is not None


def reads(files) -> bool:
  """Whether the span reader serves these shards: local files, ops built."""
  return all(not fs.is_url(f) for f in files) and available()


def spans(path) -> tf.data.Dataset:
  """(path, offset, length) of each record of the file at `path` (a string
  tensor), in file order; a damaged framing fails naming the file and record."""
  offsets, lengths = _ops().avjax_record_spans(path)
  return tf.data.Dataset.from_tensor_slices((tf.fill(tf.shape(offsets), path), offsets, lengths))


def read(path, offset, length):
  """The record at a span: its bytes, CRC-checked; DataLossError names the file
  and the byte where the record starts."""
  return _ops().avjax_read_record(path, offset, length)
