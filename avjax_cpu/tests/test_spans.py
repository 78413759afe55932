"""The TFRecord span source (avjax_cpu/spans.py, config.data.records="spans")
against TFRecordDataset: the same records in the same order, and damaged shards
named by file and record."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import reader as reader_lib
from avjax_cpu import spans as spans_lib
from data_pipelines import tfrecord
from tests.test_reader import BATCH, assert_same, make_reader, take

from tests.conftest import ROOT
# Lengths around the CRC's 8-byte steps, an empty record, and one over 64 KB.
PAYLOADS = [b"", b"a", bytes(range(7)), bytes(range(8)), bytes(range(9)) * 3,
            np.random.default_rng(0).bytes(70_001)]


@pytest.fixture(autouse=True)
def _needs_ops():
  # Built on first use with the C++ compiler that CI has.
  spans_lib._ops()


def write(path, payloads):
  with open(path, "wb") as f:
    for p in payloads:
      tfrecord.write_record(f, p)
  return str(path)


def read_all(spans):
  return [spans_lib.read(*s).numpy() for s in spans]


def span_records(path):
  return read_all(spans_lib.spans(tf.constant(str(path))))


def test_spans_read_what_tfrecord_dataset_reads(tmp_path, data_dir):
  path = write(tmp_path / "edge.tfrecord", PAYLOADS)
  assert span_records(path) == PAYLOADS
  assert span_records(write(tmp_path / "empty.tfrecord", [])) == []
  for shard in reader_lib.resolve_files(str(data_dir), "train"):
    assert span_records(shard) == [r.numpy() for r in tf.data.TFRecordDataset(shard)]


def test_a_corrupted_record_is_named_by_file_and_byte(tmp_path):
  path = write(tmp_path / "bad.tfrecord", PAYLOADS)
  raw = bytearray(open(path, "rb").read())
  start = 16 * 4 + sum(map(len, PAYLOADS[:4]))  # where record 4 begins
  raw[start + 12 + 5] ^= 1
  open(path, "wb").write(bytes(raw))
  spans = list(spans_lib.spans(tf.constant(path)))  # the framing is whole
  assert read_all(spans[:4]) == PAYLOADS[:4]
  with pytest.raises(tf.errors.DataLossError,
                     match=f"{path}: record at byte {start}: corrupted \\(CRC mismatch\\)"):
    spans_lib.read(*spans[4])


def test_a_truncated_or_misframed_file_is_named_by_file_and_record(tmp_path):
  path = write(tmp_path / "cut.tfrecord", PAYLOADS)
  size = os.path.getsize(path)
  os.truncate(path, size - 100)
  with pytest.raises(tf.errors.DataLossError,
                     match=f"{path}: record 5 at byte {size - 16 - 70_001}: truncated"):
    list(spans_lib.spans(tf.constant(path)))
  path = write(tmp_path / "header.tfrecord", PAYLOADS)
  raw = bytearray(open(path, "rb").read())
  raw[16 + 3] ^= 0x40  # record 1's length
  open(path, "wb").write(bytes(raw))
  with pytest.raises(tf.errors.DataLossError, match=f"{path}: record 1 at byte 16: corrupted length"):
    list(spans_lib.spans(tf.constant(path)))


def test_a_record_read_after_its_file_shrank_is_truncated(tmp_path):
  path = write(tmp_path / "shrunk.tfrecord", PAYLOADS)
  spans = list(spans_lib.spans(tf.constant(path)))
  os.truncate(path, os.path.getsize(path) - 10)
  with pytest.raises(tf.errors.DataLossError, match=f"{path}: record at byte .*: truncated record"):
    spans_lib.read(*spans[-1])


def test_reader_batches_are_the_same_either_way(data_dir):
  """Spans shuffle and read to the very batches TFRecordDataset's records give,
  across an epoch boundary (24 clips) and from a restored position."""
  for per_clip in (1, 3):
    def batches(records):
      make = lambda: make_reader(data_dir, examples_per_clip=per_clip, records=records)
      return take(make().train_iterator(), 5) + take(make().train_iterator(start_step=3), 2)
    spans, plain = batches("spans"), batches("tfrecord")
    for x, y in zip(spans, plain):
      assert_same(x, y)
  assert len(spans[0]["frames"]) == BATCH


def test_the_reader_names_a_corrupted_shard(data_dir, tmp_path):
  data = tmp_path / "data"
  shutil.copytree(data_dir, data)
  shard = sorted((data / "train").glob("*.tfrecord"))[0]
  raw = bytearray(shard.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  shard.write_bytes(bytes(raw))
  reader = make_reader(data, records="spans")
  with pytest.raises(reader_lib.DataError, match=f"^{shard}: record .*corrupted"):
    take(reader.train_iterator(), 10)


def test_the_portable_crc_agrees(tmp_path):
  """record_spans.cc built without the CPU's CRC32C instruction (as on CPUs that
  lack it) reads the same records and still refuses a corrupted one. In a
  subprocess: one process cannot load two libraries that register the same ops."""
  path = write(tmp_path / "edge.tfrecord", PAYLOADS)
  raw = bytearray(open(path, "rb").read())
  raw[-10] ^= 1  # inside the last record
  bad = tmp_path / "bad.tfrecord"
  bad.write_bytes(bytes(raw))
  script = f"""
import tensorflow as tf
from avjax_cpu import spans as spans_lib
lib = tf.load_op_library(str(spans_lib.library_path(("-mno-sse4.2", "-mno-crc32"))))
def records(p):
  offsets, lengths = lib.avjax_record_spans(p)
  return [lib.avjax_read_record(p, o, n).numpy() for o, n in zip(offsets, lengths)]
assert records({str(path)!r}) == [r.numpy() for r in tf.data.TFRecordDataset({str(path)!r})]
try:
  records({str(bad)!r})
  raise SystemExit("the corrupted record was read")
except tf.errors.DataLossError as e:
  assert "CRC mismatch" in e.message, e.message
"""
  (tmp_path / "portable.py").write_text(script)
  run = subprocess.run([sys.executable, str(tmp_path / "portable.py")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
